"""DroneVehicle (RGB + infrared) importer.

Layout: ``<root>/<split>/{<split>img, <split>imgr, <split>label, <split>labelr}/NNNNN.{jpg,xml}``
(``<root>`` may also be the split folder itself). ``modality`` picks the images (``rgb``: ``*img``,
``infrared``: ``*imgr``), ``label_set`` the labels (``*label`` or ``*labelr``; default: the modality's own).
The infrared labels are the more complete set (dark RGB frames leave vehicles unlabelled), and the image
pairs are registered, so ``label_set="infrared"`` is a sound choice for RGB training too.

VOC-like XML: ``<size>`` 840x712 and ``<object>`` with ``<name>`` and a ``<polygon>`` ``<x1>..<y4>``, or
an axis-aligned ``<bndbox>`` (accepted as the object's bounds with ``angle_known`` False: the angle loss
must not learn 0 for it); ``<point>`` objects are skipped and counted.

Every image has a 100 px white border: the content is 640x512 and coordinates include the border. With
``crop_border=True`` (default) ``border`` is subtracted from every coordinate, ``width``/``height`` are the
cropped size and ``meta['crop'] = (x0, y0, x1, y1)`` tells the loader to crop the decoded image to
``image[y0:y1, x0:x1]``. Objects entirely inside the border are skipped and counted.

Class names are normalized (``feright car``, ``feright_car``, ``feright``, ``freight car`` ->
``freight_car``; ``truvk`` -> ``truck``; ``*`` -> skipped and counted); ``name_fixes`` adds or overrides
spellings (map to None to skip).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from obbdet.boxes import xywha_to_aabb
from obbdet.formats import LabelFormatError

from .common import (
    ImageFolder, ImportSummary, SampleBuilder, fit_polygons, list_files, progress, read_image_size, resolve_image,
)
from .label_text import XmlDoc

DRONEVEHICLE_CLASSES = ("car", "freight_car", "truck", "bus", "van")
DEFAULT_CLASS_MAP = {"car": "car", "freight_car": "truck", "truck": "truck", "bus": "bus", "van": "van"}
NAME_FIXES = {"feright car": "freight_car", "feright_car": "freight_car", "feright": "freight_car",
              "freight car": "freight_car", "truvk": "truck", "*": None}
POLYGON_TAGS = ("x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4")
BNDBOX_TAGS = ("xmin", "ymin", "xmax", "ymax")
MODALITY_SUFFIX = {"rgb": "", "infrared": "r"}


def load_dronevehicle(root, *, split: str = "train", modality: str = "rgb", label_set: str | None = None,
                      crop_border: bool = True, border: int = 100, name_fixes: dict | None = None,
                      strict: bool = True, summary: ImportSummary | None = None) -> list:
    """Import one DroneVehicle split.

    split: ``train``, ``val`` or ``test``. modality: ``rgb`` or ``infrared`` images. label_set: ``rgb`` or
    ``infrared`` labels (None: same as ``modality``). crop_border / border: see the module docstring.
    Returns samples with native names (``car, freight_car, truck, bus, van``) in ``meta['classes']``.
    """
    for name, value in (("modality", modality), ("label_set", label_set or modality)):
        if value not in MODALITY_SUFFIX:
            raise ValueError(f"dronevehicle: {name} must be 'rgb' or 'infrared', got {value!r}")
    summary = summary if summary is not None else ImportSummary(dataset="dronevehicle")
    base = Path(root) / split if (Path(root) / split).is_dir() else Path(root)
    images = ImageFolder(base / f"{split}img{MODALITY_SUFFIX[modality]}", summary)
    labels_folder = base / f"{split}label{MODALITY_SUFFIX[label_set or modality]}"
    fixes = {**NAME_FIXES, **(name_fixes or {})}
    builder = SampleBuilder("dronevehicle", summary, DRONEVEHICLE_CLASSES)
    for label_path in progress(list_files(labels_folder, (".xml",), summary), "dronevehicle"):
        image_path = resolve_image(images, label_path.stem, label_path, summary, strict)
        if image_path is None:
            continue
        summary.track_file(label_path)
        try:
            _add_image(builder, label_path, image_path, crop_border, border, fixes, strict, summary)
        except LabelFormatError as err:  # an unreadable file (malformed XML, bad <size>)
            summary.error(err, strict, reason="unreadable files")
    return builder.finish()


def _add_image(builder: SampleBuilder, label_path: Path, image_path: Path, crop_border: bool, border: int,
               fixes: dict, strict: bool, summary: ImportSummary) -> None:
    doc = XmlDoc(label_path)
    size = doc.image_size() or read_image_size(image_path, summary, strict)
    if size is None:
        return
    width, height = size
    polys, names, difficult, angle_known = _read_objects(doc, fixes, strict, summary)
    boxes, zero_area = fit_polygons(polys, summary, str(label_path))
    difficult = np.asarray(difficult, bool) | zero_area
    meta = {"label_path": str(label_path)}
    if crop_border:
        if width <= 2 * border or height <= 2 * border:
            raise LabelFormatError(label_path, f"image {width}x{height} is too small for a {border} px border crop")
        boxes[:, :2] -= border
        meta["crop"] = (border, border, width - border, height - border)
        width, height = width - 2 * border, height - 2 * border
        inside = _inside(boxes, width, height)
        if not inside.all():
            summary.skip("objects inside the cropped border", f"{label_path}: {int((~inside).sum())} object(s) lie "
                         "entirely in the border and were skipped", count=int((~inside).sum()))
            boxes, difficult, angle_known = boxes[inside], difficult[inside], angle_known[inside]
            names = [n for n, k in zip(names, inside) if k]
    builder.add(image_path, width, height, boxes, names, difficult=difficult, angle_known=angle_known, meta=meta)


def _inside(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Mask ``[N]`` of boxes ``[N, 5]`` that overlap the ``width`` x ``height`` image (not all in the border)."""
    if len(boxes) == 0:
        return np.zeros(0, bool)
    aabb = xywha_to_aabb(boxes)
    return (aabb[:, 2] > 0) & (aabb[:, 3] > 0) & (aabb[:, 0] < width) & (aabb[:, 1] < height)


def _read_objects(doc: XmlDoc, fixes: dict, strict: bool, summary: ImportSummary):
    """Polygons ``[K, 4, 2]``, names, difficult flags and angle-known flags ``[K]`` of the usable objects."""
    polys, names, difficult, angle_known = [], [], [], []
    for index, obj in enumerate(doc.root.iter("object")):
        try:
            name = _clean_name(doc.text(obj, "name", index), fixes)
            if name is None:
                summary.skip("objects without a class ('*')", str(doc.error(obj, "class '*' skipped", index)))
                continue
            poly, rotated = _object_polygon(doc, obj, index)
        except LabelFormatError as err:
            summary.error(err, strict)
            continue
        if poly is None:
            summary.skip("<point> objects", str(doc.error(obj, "point object skipped", index)))
            continue
        polys.append(poly)
        names.append(name)
        difficult.append(doc.flag(obj, "difficult"))
        angle_known.append(rotated)
    return np.asarray(polys, np.float64).reshape(-1, 4, 2), names, difficult, np.asarray(angle_known, bool)


def _clean_name(raw: str, fixes: dict) -> str | None:
    key = " ".join(raw.strip().lower().split())
    return fixes.get(key, key)


def _object_polygon(doc: XmlDoc, obj, index: int) -> tuple[np.ndarray | None, bool]:
    """(the object's 4 corners ``[4, 2]``, whether they give its angle); corners None for a ``<point>``."""
    polygon = obj.find("polygon")
    if polygon is not None:
        return np.asarray(doc.numbers(polygon, POLYGON_TAGS, index), np.float64).reshape(4, 2), True
    bndbox = obj.find("bndbox")
    if bndbox is not None:
        x0, y0, x1, y1 = doc.numbers(bndbox, BNDBOX_TAGS, index)
        if x1 < x0 or y1 < y0:
            raise doc.error(bndbox, "xmax/ymax below xmin/ymin", index)
        return np.asarray([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64), False
    if obj.find("point") is not None:
        return None, False
    raise doc.error(obj, "no <polygon>, <bndbox> or <point>", index)

