"""CARPK / PUCPR+ importer (axis-aligned car boxes).

Layout: ``<root>/Images/*.png|jpg`` + ``<root>/Annotations/*.txt``; ``image_set`` (``train`` / ``test``)
restricts to the stems listed in ``<root>/ImageSets/<image_set>.txt``. Lines ``x1 y1 x2 y2 cls`` in pixels
(``cls`` 1 is ``car``; ``class_ids`` replaces the table, other ids become ``class_<id>``).

The boxes are axis-aligned rectangles around cars parked at any angle, so their angle is unknown: every
object has ``angle_known`` False (the angle loss is masked) and the exact boxes are kept in ``meta['obj_aabb']``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from obbdet.boxes import aabb_to_xywha
from obbdet.formats import LabelFormatError

from .common import (
    ImageFolder, ImportSummary, SampleBuilder, list_files, progress, read_image_size, resolve_image,
)

CARPK_CLASS_IDS = {1: "car"}
DEFAULT_CLASS_MAP = {"car": "car"}
COLUMNS = 5


def load_carpk(root, *, images_dir: str = "Images", labels_dir: str = "Annotations", image_set: str | None = None,
               class_ids: dict | None = None, strict: bool = True, summary: ImportSummary | None = None) -> list:
    """Import CARPK or PUCPR+ as ``aabb_only`` samples with native names in ``meta['classes']``."""
    summary = summary if summary is not None else ImportSummary(dataset="carpk")
    root = Path(root)
    table = {int(k): v for k, v in (CARPK_CLASS_IDS if class_ids is None else class_ids).items()}
    images = ImageFolder(root / images_dir, summary)
    label_files = list_files(root / labels_dir, (".txt",), summary)
    if image_set is not None:
        label_files = _select(label_files, root / "ImageSets" / f"{image_set}.txt", summary)
    builder = SampleBuilder("carpk", summary, tuple(dict.fromkeys(table.values())))
    for label_path in progress(label_files, "carpk"):
        image_path = resolve_image(images, label_path.stem, label_path, summary, strict)
        if image_path is None:
            continue
        size = read_image_size(image_path, summary, strict)
        if size is None:
            continue
        summary.track_file(label_path)
        aabb, names = _read_file(label_path, table, strict, summary)
        meta = {"label_path": str(label_path), "obj_aabb": aabb.astype(np.float32)}
        builder.add(image_path, size[0], size[1], aabb_to_xywha(aabb), names,
                    difficult=_zero_area(aabb, summary, label_path), aabb_only=True, meta=meta)
    return builder.finish()


def _select(label_files: list[Path], list_path: Path, summary: ImportSummary) -> list[Path]:
    if not list_path.is_file():
        raise FileNotFoundError(f"carpk: image set list {list_path} not found")
    summary.track_file(list_path)
    wanted = {line.strip() for line in list_path.read_text(encoding="utf-8-sig").splitlines() if line.strip()}
    return [p for p in label_files if p.stem in wanted]


def _read_file(path: Path, table: dict, strict: bool, summary: ImportSummary) -> tuple[np.ndarray, list[str]]:
    aabbs, names = [], []
    with open(path, encoding="utf-8-sig", errors="replace") as handle:  # bad bytes fail as numbers
        for line_no, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                box, class_id = _parse_line(path, line_no, text)
            except LabelFormatError as err:
                summary.error(err, strict)
                continue
            aabbs.append(box)
            names.append(table.get(class_id, f"class_{class_id}"))
    return np.asarray(aabbs, np.float64).reshape(-1, 4), names


def _parse_line(path: Path, line_no: int, text: str) -> tuple[list[float], int]:
    tokens = text.split()
    if len(tokens) != COLUMNS:
        raise LabelFormatError(path, f"expected {COLUMNS} columns (x1 y1 x2 y2 cls), got {len(tokens)}",
                               line=line_no, text=text)
    try:
        box = [float(t) for t in tokens[:4]]
        class_id = int(tokens[4])
    except ValueError:
        raise LabelFormatError(path, "coordinates must be numbers and cls an integer", line=line_no,
                               text=text) from None
    if not all(math.isfinite(v) for v in box):
        raise LabelFormatError(path, "coordinates must be finite", line=line_no, text=text)
    if box[2] < box[0] or box[3] < box[1]:
        raise LabelFormatError(path, "x2/y2 below x1/y1", line=line_no, text=text)
    return box, class_id


def _zero_area(aabb: np.ndarray, summary: ImportSummary, path: Path) -> np.ndarray:
    zero = (aabb[:, 2] <= aabb[:, 0]) | (aabb[:, 3] <= aabb[:, 1])
    if zero.any():
        summary.note("zero-area boxes kept as difficult", f"{path}: {int(zero.sum())} zero-area box(es) kept as "
                     "zero-size difficult boxes", count=int(zero.sum()))
    return zero
