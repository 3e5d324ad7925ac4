"""VEDAI importer (``Vehicules1024`` / ``Vehicules512``).

Layout: images ``<root>/Vehicules<res>/<8-digit id>_co.png`` (RGB) and ``_ir.png`` (near infrared); labels
in ``<root>/Annotations<res>/`` (or ``<root>`` itself): per-image ``<id>.txt`` files, the combined
``annotation<res>.txt`` and the 10-fold lists ``foldNN.txt`` / ``foldNNtest.txt`` (one image id per line).

Label lines (the column count tells the form; both are accepted in any file):

* 14 columns (per-image files): ``cx cy angle class_id is_contained is_occluded x1 x2 x3 x4 y1 y2 y3 y4``;
* 15 columns (combined file): ``id cx cy angle x1 x2 x3 x4 y1 y2 y3 y4 class contained occluded``;
* 5 columns ``cx cy class contained occluded`` carry no geometry: skipped with a warning and counted.

Corners are **all four x, then all four y**; the box is the minimum-area fit of the four corners.
Coordinates of the 512 set are in 512-px units; images are ``res`` x ``res``.

*Unconfirmed* choices, each with an option:

* the ``angle`` column's unit and convention: not used for the box (``angle_column="ignore"``, raw values
  kept in ``meta['obj_angle_column']``); ``angle_column="heading"`` reads it as a heading in radians;
* the sparse class ids (``VEDAI_CLASS_IDS``; other sources swap some names): ``class_ids`` replaces the
  table; an id missing from the table becomes the native name ``class_<id>`` (the class map must place it);
* ``occluded_difficult`` / ``uncontained_difficult`` (default False) mark occluded / not fully contained
  objects difficult; the flags are always kept in ``meta['obj_occluded']`` / ``meta['obj_contained']``.
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from obbdet.boxes import wrap_angle
from obbdet.formats import LabelFormatError

from .common import ImageFolder, ImportSummary, SampleBuilder, fit_polygons, list_files, progress, unique_image

VEDAI_CLASS_IDS = {1: "car", 2: "truck", 4: "tractor", 5: "camping_car", 7: "motorcycle", 8: "bus", 9: "van",
                   10: "other", 11: "pickup", 23: "boat", 31: "plane"}
DEFAULT_CLASS_MAP = {"car": "car", "pickup": "car", "truck": "truck", "bus": "bus", "van": "van",
                     "camping_car": "other_vehicle", "tractor": "other_vehicle", "motorcycle": "other_vehicle",
                     "other": "other_vehicle", "boat": "ignore", "plane": "ignore"}
PER_IMAGE_COLUMNS = 14
COMBINED_COLUMNS = 15
NO_GEOMETRY_COLUMNS = 5
_ID_FILE = re.compile(r"^\d+\.txt$", re.IGNORECASE)


class _Object:
    """One parsed VEDAI line."""

    __slots__ = ("cx", "cy", "angle", "class_id", "contained", "occluded", "xs", "ys", "line_no")

    def __init__(self, values: list[float], per_image: bool, line_no: int):
        if per_image:  # cx cy angle class contained occluded x1..x4 y1..y4
            self.cx, self.cy, self.angle = values[0:3]
            self.class_id, self.contained, self.occluded = values[3:6]
            self.xs, self.ys = values[6:10], values[10:14]
        else:  # cx cy angle x1..x4 y1..y4 class contained occluded (id already removed)
            self.cx, self.cy, self.angle = values[0:3]
            self.xs, self.ys = values[3:7], values[7:11]
            self.class_id, self.contained, self.occluded = values[11:14]
        self.line_no = line_no


def load_vedai(root, *, resolution: int = 1024, modality: str = "co", annotations: str | None = None,
               fold: int | None = None, fold_part: str = "train", class_ids: dict | None = None,
               angle_column: str = "ignore", occluded_difficult: bool = False, uncontained_difficult: bool = False,
               images_dir: str | None = None, labels_dir: str | None = None, strict: bool = True,
               summary: ImportSummary | None = None) -> list:
    """Import VEDAI.

    resolution: 1024 or 512. modality: ``co`` (RGB) or ``ir``. annotations: ``per_image`` (the ``<id>.txt``
    files), ``combined`` (``annotation<res>.txt``) or None (per-image files when present).
    fold / fold_part: restrict to ``foldNN.txt`` (``train``) or ``foldNNtest.txt`` (``test``).
    Other options: see the module docstring. Returns samples with native names in ``meta['classes']``.
    """
    _check_options(resolution, modality, annotations, fold_part, angle_column)
    summary = summary if summary is not None else ImportSummary(dataset="vedai")
    root = Path(root)
    labels_folder = Path(labels_dir) if labels_dir else _default_dir(root, f"Annotations{resolution}")
    images = ImageFolder(Path(images_dir) if images_dir else _default_dir(root, f"Vehicules{resolution}"), summary)
    per_image = _per_image_files(labels_folder, summary)
    mode = annotations or ("per_image" if per_image else "combined")
    if mode == "per_image":
        objects_by_id = {_image_id(p.stem): _read_file(p, None, strict, summary) for p in per_image}
    else:
        objects_by_id = _read_file(labels_folder / f"annotation{resolution}.txt", "combined", strict, summary)
    ids = _fold_ids(labels_folder, fold, fold_part, summary) if fold is not None else sorted(objects_by_id)
    table = dict(VEDAI_CLASS_IDS if class_ids is None else class_ids)
    builder = SampleBuilder("vedai", summary, tuple(dict.fromkeys(table.values())))
    options = (angle_column, occluded_difficult, uncontained_difficult)
    for image_id in progress(ids, "vedai"):
        if image_id not in objects_by_id:
            summary.note("listed images without labels (imported with no objects)")
        _add_image(builder, images, image_id, modality, resolution, objects_by_id.get(image_id, []), table, options,
                   labels_folder, strict, summary)
    return builder.finish()


def _check_options(resolution, modality, annotations, fold_part, angle_column) -> None:
    checks = (("resolution", resolution, (512, 1024)), ("modality", modality, ("co", "ir")),
              ("annotations", annotations, (None, "per_image", "combined")),
              ("fold_part", fold_part, ("train", "test")), ("angle_column", angle_column, ("ignore", "heading")))
    for name, value, valid in checks:
        if value not in valid:
            raise ValueError(f"vedai: {name} must be one of {valid}, got {value!r}")


def _default_dir(root: Path, name: str) -> Path:
    return root / name if (root / name).is_dir() else root


def _image_id(text: str) -> str:
    return text.strip().zfill(8)


def _per_image_files(folder: Path, summary: ImportSummary) -> list[Path]:
    return [p for p in list_files(folder, (".txt",), summary) if _ID_FILE.match(p.name)]


def _read_file(path: Path, form: str | None, strict: bool, summary: ImportSummary):
    """Objects of one per-image file (a list), or of the combined file (a dict id -> list)."""
    summary.track_file(path)
    by_id: dict[str, list[_Object]] = defaultdict(list)
    objects: list[_Object] = []
    with open(path, encoding="utf-8-sig", errors="replace") as handle:  # bad bytes fail as numbers
        for line_no, line in enumerate(handle, start=1):
            try:
                parsed = _parse_line(path, line_no, line.rstrip("\n"), form, summary)
            except LabelFormatError as err:
                summary.error(err, strict)
                continue
            if parsed is None:
                continue
            image_id, obj = parsed
            if form == "combined":
                by_id[image_id].append(obj)
            elif image_id is not None and image_id != _image_id(path.stem):
                summary.error(LabelFormatError(path, f"line belongs to image {image_id}", line=line_no, text=line),
                              strict)
            else:
                objects.append(obj)
    return dict(by_id) if form == "combined" else objects


def _parse_line(path, line_no: int, line: str, form: str | None, summary: ImportSummary):
    """``(image_id or None, _Object)``, or None for blank and geometry-less lines."""
    tokens = line.split()
    if not tokens:
        return None
    if len(tokens) == NO_GEOMETRY_COLUMNS:
        summary.skip("lines without geometry", f"{path}:{line_no}: 5-column line has no geometry, skipped: {line!r}")
        return None
    if len(tokens) == PER_IMAGE_COLUMNS and form != "combined":
        return None, _Object(_floats(tokens, path, line_no, line), True, line_no)
    if len(tokens) == COMBINED_COLUMNS:
        values = _floats(tokens, path, line_no, line)
        return _image_id(tokens[0]), _Object(values[1:], False, line_no)
    expected = "15" if form == "combined" else "14 or 15"
    raise LabelFormatError(path, f"expected {expected} columns, got {len(tokens)}", line=line_no, text=line)


def _floats(tokens, path, line_no: int, line: str) -> list[float]:
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        raise LabelFormatError(path, "columns must be numbers", line=line_no, text=line) from None
    if not all(math.isfinite(v) for v in values):
        raise LabelFormatError(path, "columns must be finite", line=line_no, text=line)
    return values


def _fold_ids(folder: Path, fold: int, part: str, summary: ImportSummary) -> list[str]:
    path = folder / f"fold{fold:02d}{'test' if part == 'test' else ''}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"vedai: fold list {path} not found")
    summary.track_file(path)
    return [_image_id(line) for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]


def _add_image(builder: SampleBuilder, images: ImageFolder, image_id: str, modality: str, resolution: int,
               objects: list[_Object], table: dict, options: tuple, labels_folder: Path, strict: bool,
               summary: ImportSummary) -> None:
    angle_column, occluded_difficult, uncontained_difficult = options
    image_path = unique_image(images, f"{image_id}_{modality}", labels_folder, summary, strict)
    if image_path is None and len(images.candidates(f"{image_id}_{modality}")) > 1:
        return  # several files for one image id: reported (strict: raised) by unique_image
    if image_path is None:
        summary.error(LabelFormatError(labels_folder, f"image {image_id}: no '{image_id}_{modality}.*' in "
                                       f"{images.folder}"), strict, reason="files without image")
        return
    polys = np.asarray([[o.xs, o.ys] for o in objects], np.float64).reshape(-1, 2, 4).transpose(0, 2, 1)
    boxes, zero_area = fit_polygons(polys, summary, f"vedai image {image_id}")
    names = [_class_name(o.class_id, table, summary) for o in objects]
    occluded = np.asarray([o.occluded != 0 for o in objects], bool)
    contained = np.asarray([o.contained != 0 for o in objects], bool)
    difficult = zero_area.copy()
    if occluded_difficult:
        difficult |= occluded
    if uncontained_difficult:
        difficult |= ~contained
    angles = np.asarray([o.angle for o in objects], np.float64)
    heading = wrap_angle(angles, low=-math.pi, period=2 * math.pi) if angle_column == "heading" else None
    meta = {"obj_angle_column": angles.astype(np.float32), "obj_occluded": occluded, "obj_contained": contained}
    builder.add(image_path, resolution, resolution, boxes, names, difficult=difficult, heading=heading, meta=meta)


def _class_name(class_id: float, table: dict, summary: ImportSummary) -> str:
    key = int(class_id) if float(class_id).is_integer() else class_id
    name = table.get(key)
    if name is None:
        name = f"class_{key}"
        summary.note(f"objects with class id {key} outside the class table")
    return name
