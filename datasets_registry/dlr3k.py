"""DLR 3K Munich vehicle importer (``.samp`` files).

Layout: ``<root>/<split>/<name>.JPG`` (``split`` ``Train`` or ``Test``; 5616x3744) and one file per class
per image, ``<name>_<class>.samp`` with ``<class>`` one of ``pkw, bus, truck, cam, pkw_trail, truck_trail,
van_trail`` (the native class name). Images without any ``.samp`` file are imported with no objects.

Lines starting with ``@`` or ``#`` are headers; object lines are ``id type center.x center.y size.width
size.height angle``, where the sizes are **half-extents** (corners at centre +- size) and the angle is in
degrees (converted by :func:`obbdet.boxes.dlr3k_to_xywha`). Type 110 (``dashed_line``) is not a vehicle:
such lines are skipped and counted (``skip_types``). The type codes are kept in ``meta['obj_type']``.

*Unconfirmed*: the sign of the angle in y-down pixels. ``angle_sign=-1`` (default) rotates by ``-angle``, as
two public loaders do; ``angle_sign=1`` uses the angle as written.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from obbdet.boxes import BOX_DIM, dlr3k_to_xywha
from obbdet.formats import LabelFormatError

from .common import (
    ImageFolder, ImportSummary, SampleBuilder, list_files, progress, read_image_size, unique_image,
)

DLR3K_CLASSES = ("pkw", "bus", "truck", "cam", "pkw_trail", "truck_trail", "van_trail")
DEFAULT_CLASS_MAP = {"pkw": "car", "bus": "bus", "truck": "truck", "cam": "other_vehicle", "pkw_trail": "car",
                     "truck_trail": "truck", "van_trail": "van"}
SKIP_TYPES = (110,)
OBJECT_COLUMNS = 7
HEADER_PREFIXES = ("@", "#")


def load_dlr3k(root, *, split: str | None = "Train", angle_sign: float = -1.0, skip_types=SKIP_TYPES,
               image_extensions=(".jpg", ".jpeg", ".png", ".tif"), strict: bool = True,
               summary: ImportSummary | None = None) -> list:
    """Import one DLR-3K split (``Train`` / ``Test``; None when ``root`` is the split folder).

    angle_sign: -1 (default) or 1, see the module docstring. skip_types: type codes that are not vehicles.
    Returns samples with native names (the ``.samp`` suffixes) in ``meta['classes']``.
    """
    if angle_sign not in (-1, 1, -1.0, 1.0):
        raise ValueError(f"dlr3k: angle_sign must be -1 or 1, got {angle_sign!r}")
    summary = summary if summary is not None else ImportSummary(dataset="dlr3k")
    base = Path(root) / split if split and (Path(root) / split).is_dir() else Path(root)
    images = ImageFolder(base, summary, extensions=image_extensions)
    by_image = _group_samp_files(list_files(base, (".samp",), summary), images, strict, summary)
    builder = SampleBuilder("dlr3k", summary, DLR3K_CLASSES)
    for stem in progress(images.stems(), "dlr3k"):
        samp_files = sorted(by_image.get(stem, {}).values())
        image_path = unique_image(images, stem, samp_files[0] if samp_files else images.folder / stem, summary,
                                  strict)
        if image_path is None:
            continue
        size = read_image_size(image_path, summary, strict)
        if size is None:
            continue
        rows, names, types = [], [], []
        for class_name, samp_path in sorted(by_image.get(stem, {}).items()):
            _read_samp(samp_path, class_name, set(skip_types), rows, names, types, strict, summary)
        if stem not in by_image:
            summary.note("images without .samp files (imported with no objects)")
        boxes = dlr3k_to_xywha(np.asarray(rows, np.float64).reshape(-1, BOX_DIM), angle_sign=float(angle_sign))
        zero_area = boxes[:, 3] <= 0
        if zero_area.any():
            summary.note("zero-area boxes kept as difficult", f"{image_path}: {int(zero_area.sum())} zero-size "
                         "box(es) kept as difficult", count=int(zero_area.sum()))
        builder.add(image_path, size[0], size[1], boxes, names, difficult=zero_area,
                    meta={"obj_type": np.asarray(types, np.int64)})
    return builder.finish()


def _group_samp_files(samp_files: list[Path], images: ImageFolder, strict: bool,
                      summary: ImportSummary) -> dict[str, dict[str, Path]]:
    """``{image stem: {class name: .samp path}}``; the longest image stem that prefixes the file name wins."""
    stems = sorted(images.stems(), key=len, reverse=True)
    grouped: dict[str, dict[str, Path]] = defaultdict(dict)
    for path in samp_files:
        stem = next((s for s in stems if path.stem.startswith(s + "_")), None)
        if stem is None:
            summary.error(LabelFormatError(path, f"no image '<name>.*' in {images.folder} for this .samp file"),
                          strict, reason="files without image")
            continue
        class_name = path.stem[len(stem) + 1:]
        if class_name not in DLR3K_CLASSES:
            summary.note(f"objects in .samp files of unknown class '{class_name}' (kept)")
        grouped[stem][class_name] = path
    return grouped


def _read_samp(path: Path, class_name: str, skip_types: set, rows: list, names: list, types: list, strict: bool,
               summary: ImportSummary) -> None:
    summary.track_file(path)
    with open(path, encoding="utf-8-sig", errors="replace") as handle:  # bad bytes fail as numbers
        for line_no, line in enumerate(handle, start=1):
            text = line.strip()
            if not text or text.startswith(HEADER_PREFIXES):
                continue
            try:
                type_code, row = _parse_object(path, line_no, text)
            except LabelFormatError as err:
                summary.error(err, strict)
                continue
            if type_code in skip_types:
                summary.skip(f"non-vehicle lines (type {type_code})", f"{path}:{line_no}: type {type_code} is not a "
                             f"vehicle, skipped: {text!r}")
                continue
            rows.append(row)
            names.append(class_name)
            types.append(type_code)


def _parse_object(path: Path, line_no: int, text: str) -> tuple[int, list[float]]:
    """(type code, ``[cx, cy, half_w, half_h, angle_deg]``) of one object line."""
    tokens = text.split()
    if len(tokens) != OBJECT_COLUMNS:
        raise LabelFormatError(path, f"expected {OBJECT_COLUMNS} columns (id type cx cy half_w half_h angle), got "
                               f"{len(tokens)}", line=line_no, text=text)
    try:
        type_code = int(tokens[1])
        values = [float(t) for t in tokens[2:]]
    except ValueError:
        raise LabelFormatError(path, "type must be an integer and geometry numbers", line=line_no, text=text) from None
    if not all(math.isfinite(v) for v in values):
        raise LabelFormatError(path, "geometry must be finite", line=line_no, text=text)
    if values[2] < 0 or values[3] < 0:
        raise LabelFormatError(path, "half extents must be >= 0", line=line_no, text=text)
    return type_code, values
