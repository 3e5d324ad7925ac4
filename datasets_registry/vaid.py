"""VAID importer (Pascal VOC, axis-aligned boxes only).

Layout: ``<root>/JPEGImages/NNNNNN.jpg`` + ``<root>/Annotations/NNNNNN.xml`` (1137x640); with ``image_set``
only the ids listed in ``<root>/ImageSets/Main/<image_set>.txt`` are imported.
``<name>`` holds a digit: 1 sedan, 2 minibus, 3 truck, 4 pickup truck, 5 bus, 6 cement truck, 7 trailer
(``class_ids`` replaces the table; a name that is not in it is kept as written).

The labels carry no angle, so every object has ``angle_known`` False (the angle loss is masked for it, never
faked as 0); boxes are the axis-aligned rectangles as le90 xywha and the exact ``[x_min, y_min, x_max, y_max]`` are
kept in ``meta['obj_aabb']``. ``<difficult>1`` marks difficult objects.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from obbdet.boxes import aabb_to_xywha
from obbdet.formats import LabelFormatError

from .common import (
    ImageFolder, ImportSummary, SampleBuilder, list_files, progress, read_image_size, resolve_image,
)
from .label_text import XmlDoc

VAID_CLASS_IDS = {"1": "sedan", "2": "minibus", "3": "truck", "4": "pickup_truck", "5": "bus", "6": "cement_truck",
                  "7": "trailer"}
DEFAULT_CLASS_MAP = {"sedan": "car", "minibus": "van", "truck": "truck", "pickup_truck": "car", "bus": "bus",
                     "cement_truck": "truck", "trailer": "truck"}
BNDBOX_TAGS = ("xmin", "ymin", "xmax", "ymax")


def load_vaid(root, *, images_dir: str = "JPEGImages", labels_dir: str = "Annotations", image_set: str | None = None,
              class_ids: dict | None = None, strict: bool = True, summary: ImportSummary | None = None) -> list:
    """Import VAID (or any VOC-layout axis-aligned vehicle set) as ``aabb_only`` samples."""
    summary = summary if summary is not None else ImportSummary(dataset="vaid")
    root = Path(root)
    table = {str(k): v for k, v in (VAID_CLASS_IDS if class_ids is None else class_ids).items()}
    images = ImageFolder(root / images_dir, summary)
    label_files = list_files(root / labels_dir, (".xml",), summary)
    if image_set is not None:
        label_files = _select(label_files, root / "ImageSets" / "Main" / f"{image_set}.txt", summary)
    builder = SampleBuilder("vaid", summary, tuple(dict.fromkeys(table.values())))
    for label_path in progress(label_files, "vaid"):
        image_path = resolve_image(images, label_path.stem, label_path, summary, strict)
        if image_path is None:
            continue
        summary.track_file(label_path)
        try:
            _add_image(builder, label_path, image_path, table, strict, summary)
        except LabelFormatError as err:
            summary.error(err, strict, reason="unreadable files")
    return builder.finish()


def _select(label_files: list[Path], list_path: Path, summary: ImportSummary) -> list[Path]:
    if not list_path.is_file():
        raise FileNotFoundError(f"vaid: image set list {list_path} not found")
    summary.track_file(list_path)
    wanted = {line.split()[0] for line in list_path.read_text(encoding="utf-8-sig").splitlines() if line.strip()}
    by_stem = {p.stem: p for p in label_files}
    missing = sorted(wanted - set(by_stem))
    if missing:
        raise FileNotFoundError(f"vaid: {len(missing)} ids of {list_path} have no label file, e.g. {missing[:3]}")
    return [by_stem[stem] for stem in sorted(wanted)]


def _add_image(builder: SampleBuilder, label_path: Path, image_path: Path, table: dict, strict: bool,
               summary: ImportSummary) -> None:
    doc = XmlDoc(label_path)
    size = doc.image_size() or read_image_size(image_path, summary, strict)
    if size is None:
        return
    aabbs, names, difficult = [], [], []
    for index, obj in enumerate(doc.root.iter("object")):
        try:
            name = doc.text(obj, "name", index)
            aabbs.append(_object_aabb(doc, obj, index))
        except LabelFormatError as err:
            summary.error(err, strict)
            continue
        names.append(table.get(name, name))
        difficult.append(doc.flag(obj, "difficult"))
    aabb = np.asarray(aabbs, np.float64).reshape(-1, 4)
    zero_area = (aabb[:, 2] <= aabb[:, 0]) | (aabb[:, 3] <= aabb[:, 1])
    if zero_area.any():
        summary.note("zero-area boxes kept as difficult", f"{label_path}: {int(zero_area.sum())} zero-area box(es) "
                     "kept as zero-size difficult boxes", count=int(zero_area.sum()))
    builder.add(image_path, size[0], size[1], aabb_to_xywha(aabb), names,
                difficult=np.asarray(difficult, bool) | zero_area, aabb_only=True,
                meta={"label_path": str(label_path), "obj_aabb": aabb.astype(np.float32)})


def _object_aabb(doc: XmlDoc, obj, index: int) -> list[float]:
    bndbox = obj.find("bndbox")
    if bndbox is None:
        raise doc.error(obj, "no <bndbox>", index)
    x0, y0, x1, y1 = doc.numbers(bndbox, BNDBOX_TAGS, index)
    if x1 < x0 or y1 < y0:
        raise doc.error(bndbox, "xmax/ymax below xmin/ymin", index)
    return [x0, y0, x1, y1]
