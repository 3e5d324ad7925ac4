"""UAV-ROD importer (roLabelImg XML).

Layout: ``<root>/<split>/{images,annotations}/DJI_0006_000000.{jpg,xml}`` (``<root>`` may also be the split
folder). Objects: ``<robndbox><cx/><cy/><w/><h/><angle/></robndbox>`` with the angle in **radians**,
clockwise on screen, the rotation of the ``w`` edge from +x (converted by
:func:`obbdet.boxes.rolabelimg_to_xywha`); roLabelImg's axis-aligned ``<bndbox>`` objects are accepted as
the object's bounds, without a heading and with ``angle_known`` False (the angle loss must not learn 0 for
them). One class, ``car``.

*Unconfirmed*: the UAV-ROD README calls the angle the car's heading, increasing clockwise, but whether values
span ``[0, 2pi)`` is not documented. ``heading="auto"`` (default) keeps it as ``sample.heading`` (wrapped to
``[-pi, pi)``) for the whole dataset when any angle exceeds pi (evidence of a full-circle heading), and drops
it otherwise; ``"always"`` / ``"never"`` force the choice. The box angle is always le90.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from obbdet.boxes import BOX_DIM, rolabelimg_to_xywha
from obbdet.formats import LabelFormatError

from .common import (
    ImageFolder, ImportSummary, SampleBuilder, list_files, progress, read_image_size, resolve_image,
)
from .label_text import XmlDoc

UAV_ROD_CLASSES = ("car",)
DEFAULT_CLASS_MAP = {"car": "car"}
ROBNDBOX_TAGS = ("cx", "cy", "w", "h", "angle")
BNDBOX_TAGS = ("xmin", "ymin", "xmax", "ymax")
HEADING_MODES = ("auto", "always", "never")


def load_uav_rod(root, *, split: str | None = "train", heading: str = "auto", images_dir: str = "images",
                 labels_dir: str = "annotations", strict: bool = True, summary: ImportSummary | None = None) -> list:
    """Import one UAV-ROD split (``train`` / ``test``; None when ``root`` is the split folder).

    heading: ``auto``, ``always`` or ``never`` (module docstring). Returns samples with native names in
    ``meta['classes']`` and, when kept, ``heading`` ``[N]`` float32 radians in ``[-pi, pi)``.
    """
    if heading not in HEADING_MODES:
        raise ValueError(f"uav_rod: heading must be one of {HEADING_MODES}, got {heading!r}")
    summary = summary if summary is not None else ImportSummary(dataset="uav_rod")
    base = Path(root) / split if split and (Path(root) / split).is_dir() else Path(root)
    images = ImageFolder(base / images_dir, summary)
    parsed = []
    for label_path in progress(list_files(base / labels_dir, (".xml",), summary), "uav_rod"):
        image_path = resolve_image(images, label_path.stem, label_path, summary, strict)
        if image_path is None:
            continue
        summary.track_file(label_path)
        try:
            record = _read_image(label_path, image_path, strict, summary)
        except LabelFormatError as err:
            summary.error(err, strict, reason="unreadable files")
            continue
        if record is not None:
            parsed.append(record)
    keep_heading = _keep_heading(heading, parsed, summary)
    builder = SampleBuilder("uav_rod", summary, UAV_ROD_CLASSES)
    for image_path, (width, height), rows, names, difficult, rotated, label_path in parsed:
        boxes, headings = rolabelimg_to_xywha(rows)
        headings = np.where(rotated, headings, np.nan)  # an axis-aligned <bndbox> carries no heading
        builder.add(image_path, width, height, boxes, names, difficult=difficult, angle_known=rotated,
                    heading=headings if keep_heading else None, meta={"label_path": str(label_path)})
    return builder.finish()


def _keep_heading(mode: str, parsed: list, summary: ImportSummary) -> bool:
    if mode != "auto":
        return mode == "always"
    beyond_pi = any(len(record[2]) and float(record[2][:, 4].max()) > math.pi for record in parsed)
    summary.note("auto heading: " + ("kept (angles beyond pi found)" if beyond_pi else "dropped (no angle beyond pi)"))
    return beyond_pi


def _read_image(label_path: Path, image_path: Path, strict: bool, summary: ImportSummary):
    doc = XmlDoc(label_path)
    size = doc.image_size() or read_image_size(image_path, summary, strict)
    if size is None:
        return None
    rows, names, difficult, rotated = [], [], [], []
    for index, obj in enumerate(doc.root.iter("object")):
        try:
            name = doc.text(obj, "name", index)
            row, is_rotated = _object_row(doc, obj, index)
        except LabelFormatError as err:
            summary.error(err, strict)
            continue
        rows.append(row)
        rotated.append(is_rotated)
        names.append(name)
        difficult.append(doc.flag(obj, "difficult"))
    rows = np.asarray(rows, np.float64).reshape(-1, BOX_DIM)
    return image_path, size, rows, names, np.asarray(difficult, bool), np.asarray(rotated, bool), label_path


def _object_row(doc: XmlDoc, obj, index: int) -> tuple[list[float], bool]:
    """(``[cx, cy, w, h, angle_rad]`` in roLabelImg's convention, whether the object is a rotated box)."""
    robndbox = obj.find("robndbox")
    if robndbox is not None:
        row = doc.numbers(robndbox, ROBNDBOX_TAGS, index)
        if row[2] <= 0 or row[3] <= 0:
            raise doc.error(robndbox, "w and h must be > 0", index)
        return row, True
    bndbox = obj.find("bndbox")
    if bndbox is not None:
        x0, y0, x1, y1 = doc.numbers(bndbox, BNDBOX_TAGS, index)
        if x1 <= x0 or y1 <= y0:
            raise doc.error(bndbox, "xmax/ymax must exceed xmin/ymin", index)
        return [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, 0.0], False
    raise doc.error(obj, "no <robndbox> or <bndbox>", index)
