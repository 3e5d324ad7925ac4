"""Label and detection file formats shared by eval, the dataset registry, infer and the tools.

Every reader returns an :class:`obbdet.structures.ImageLabels` with boxes in xywha le90 (radians, pixels).
Every parse error is a :class:`LabelFormatError` naming the file and the line (or object index) and the
offending text. Numpy only: importing this module never imports torch. This module is the one place to
import them from; obb_json is implemented in :mod:`obbdet.formats_obb_json`, the shared pieces in
:mod:`obbdet.formats_common`.

Formats
- ``obb_json``: one JSON file per image (architecture notes). Objects give ``cx, cy, length, width, angle``
  (degrees, ``[-90, 90)``) or ``poly`` (4 corners). ``heading``, when present, is in degrees too. Sizes must
  be positive; zero is accepted only on ``difficult`` objects (zero-area DOTA labels written back).
- ``dota``: ``x1 y1 x2 y2 x3 y3 x4 y4 class difficult`` (ground truth) or ``... class score`` (detections);
  lines with fewer than 9 tokens are ``key:value`` headers (``imagesource:``, ``gsd:``); a missing difficult is
  0; difficult 2 (cut by the DOTA splitter) counts as difficult. Zero-area polygons (the splitter leaves some on
  patch edges) are kept as zero-size boxes and marked difficult, with a warning naming file and line: they can
  be neither learned nor matched, and dropping them would change the object count.
- ``dota_task1``: the DOTA devkit's per-class detection files ``Task1_<class>.txt``, lines
  ``image_id score x1 y1 .. x4 y4``.
- ``yolo_obb``: ``class_index x1 y1 .. x4 y4`` with corners normalized to [0, 1] (ultralytics).
- ``xywh`` / ``xyrb``: Object-Detection-Metrics text; GT ``cls x y w h``, detections ``cls score x y w h``
  (``xyrb``: left top right bottom). Relative coordinates (``coords='rel'``) are ``cx cy w h`` normalized by
  the image size, as in Object-Detection-Metrics.

Folders hold one file per image, keyed by the file stem (``dota_task1``: per-class files). Every folder read
(eval, the tools) lists with :func:`list_label_files` and reads with :func:`read_label_files`; obb_json
folders take :func:`obbdet.formats_obb_json.read_obb_json_files`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from obbdet.boxes import BOX_DIM, CORNERS, POINT_DIM, aabb_to_xywha, xywha_to_aabb, xywha_to_poly
from obbdet.formats_common import (AABB_COORDS, POLY_COORDS, LabelFormatError, fit_polys, labels_from_lists,
                                   load_json_document, parse_floats, read_lines)
from obbdet.formats_obb_json import (OBB_JSON_GEOMETRY_KEYS, OBB_JSON_KNOWN_KEYS, ErrorHandler, Progress,
                                     obb_json_dict, read_obb_json, read_obb_json_files, write_obb_json)
from obbdet.io_utils import atomic_write_text
from obbdet.structures import ImageLabels

__all__ = [
    "AABB_COORDS", "IMAGE_EXTENSIONS", "LABEL_FORMATS", "OBB_JSON_GEOMETRY_KEYS", "OBB_JSON_KNOWN_KEYS",
    "OVERLAY_DIR", "POLY_COORDS", "LabelFiles", "LabelFormatError", "describe_read_error", "label_extension",
    "labels_to_aabb", "list_label_files", "load_json_document", "obb_json_dict", "read_dota", "read_dota_task1",
    "read_label_file", "read_label_files", "read_label_folder", "read_obb_json", "read_obb_json_files",
    "read_odm_text", "read_yolo_obb", "write_dota", "write_obb_json", "write_yolo_obb",
]

logger = logging.getLogger(__name__)

LABEL_FORMATS = ("obb_json", "dota", "dota_task1", "yolo_obb", "xywh", "xyrb")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
# infer.py --draw writes overlay images to this subfolder of its detections folder (eval does not report it)
OVERLAY_DIR = "overlays"


def _warn_degenerate(path, line_numbers: list[int]) -> None:
    if line_numbers:
        shown = ", ".join(str(n) for n in line_numbers[:10])
        logger.warning("%s: %d zero-area polygon(s) kept as zero-size difficult boxes (lines %s)",
                       path, len(line_numbers), shown)


# ---------------------------------------------------------------------------------------------------
# DOTA
# ---------------------------------------------------------------------------------------------------

def _is_dota_header(tokens: list[str]) -> bool:
    return len(tokens) == 1 and ":" in tokens[0] or (len(tokens) >= 1 and tokens[0].endswith(":"))


def read_dota(path, *, detections: bool = False) -> ImageLabels:
    """Read a DOTA label file (ground truth) or a per-image DOTA detection file (``detections=True``)."""
    polys, classes, scores, difficult, zero_lines, line_numbers = [], [], [], [], [], []
    for line_no, line in enumerate(read_lines(path), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < POLY_COORDS + 1:
            if _is_dota_header(tokens):
                continue
            raise LabelFormatError(path, f"expected {POLY_COORDS} coordinates and a class", line=line_no, text=line)
        if len(tokens) > POLY_COORDS + 2:
            raise LabelFormatError(path, f"too many tokens ({len(tokens)})", line=line_no, text=line)
        polys.append(parse_floats(tokens[:POLY_COORDS], path, line_no, line, "coordinates"))
        classes.append(tokens[POLY_COORDS])
        extra = tokens[POLY_COORDS + 1] if len(tokens) == POLY_COORDS + 2 else None
        if detections:
            if extra is None:
                raise LabelFormatError(path, "detection line needs a score after the class", line=line_no, text=line)
            scores.append(parse_floats([extra], path, line_no, line, "score")[0])
            difficult.append(False)
        else:
            difficult.append(_parse_dota_difficult(extra, path, line_no, line))
        line_numbers.append(line_no)
    boxes, zero_area = fit_polys(polys)
    for k in np.flatnonzero(zero_area):
        if not detections:
            difficult[k] = True
        zero_lines.append(line_numbers[k])
    _warn_degenerate(path, zero_lines)
    return labels_from_lists(boxes, classes, scores=scores if detections else None, difficult=difficult)


def _parse_dota_difficult(token: str | None, path, line_no: int, line: str) -> bool:
    if token is None:
        return False
    if token not in ("0", "1", "2"):
        raise LabelFormatError(path, "difficult must be 0, 1 or 2", line=line_no, text=line)
    return token != "0"


def _fmt(v: float) -> str:
    return repr(float(v)) if not float(v).is_integer() else str(int(v)) if abs(v) < 1e15 else repr(float(v))


def write_dota(path, labels: ImageLabels) -> None:
    """Write ``labels`` as DOTA lines atomically: ``x1 y1 .. x4 y4 class difficult`` (or ``class score``)."""
    polys = xywha_to_poly(labels.boxes) if len(labels) else np.zeros((0, CORNERS, POINT_DIM))
    lines = []
    for i in range(len(labels)):
        coords = " ".join(_fmt(v) for v in polys[i].reshape(-1))
        tail = f"{float(labels.scores[i])!r}" if labels.scores is not None else str(int(bool(labels.difficult[i])))
        lines.append(f"{coords} {labels.classes[i]} {tail}")
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def read_dota_task1(folder) -> dict[str, ImageLabels]:
    """Read the DOTA devkit's per-class detection files ``Task1_<class>.txt`` into per-image detections."""
    folder = Path(folder)
    per_image: dict[str, dict[str, list]] = {}
    files = sorted(folder.glob("Task1_*.txt"))
    if not files:
        raise LabelFormatError(folder, "no Task1_<class>.txt files in folder")
    for path in files:
        class_name = path.stem[len("Task1_"):]
        for line_no, line in enumerate(read_lines(path), start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != POLY_COORDS + 2:
                raise LabelFormatError(path, f"expected image_id, score and {POLY_COORDS} coordinates",
                                       line=line_no, text=line)
            values = parse_floats(tokens[1:], path, line_no, line, "score and coordinates")
            entry = per_image.setdefault(tokens[0], {"polys": [], "scores": [], "classes": []})
            entry["polys"].append(values[1:])
            entry["scores"].append(values[0])
            entry["classes"].append(class_name)
    out = {}
    for image_id in sorted(per_image):
        entry = per_image[image_id]
        boxes, _ = fit_polys(entry["polys"])
        out[image_id] = labels_from_lists(boxes, entry["classes"], scores=entry["scores"])
    return out


# ---------------------------------------------------------------------------------------------------
# YOLO OBB (ultralytics)
# ---------------------------------------------------------------------------------------------------

def read_yolo_obb(path, image_size: tuple[int, int], class_names: list[str], *, detections: bool = False
                  ) -> ImageLabels:
    """Read ultralytics OBB labels ``class_index x1 y1 .. x4 y4`` (normalized corners; ``... score`` appended
    for detections). ``image_size`` is ``(width, height)`` in pixels."""
    width, height = image_size
    polys, classes, scores = [], [], []
    expected = 1 + POLY_COORDS + (1 if detections else 0)
    for line_no, line in enumerate(read_lines(path), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != expected:
            raise LabelFormatError(path, f"expected {expected} tokens (class index, {POLY_COORDS} coordinates"
                                   f"{', score' if detections else ''})", line=line_no, text=line)
        if not tokens[0].isdigit() or int(tokens[0]) >= len(class_names):
            raise LabelFormatError(path, f"class index must be an integer in [0, {len(class_names)})",
                                   line=line_no, text=line)
        values = parse_floats(tokens[1:], path, line_no, line, "coordinates")
        coords = np.asarray(values[:POLY_COORDS]).reshape(CORNERS, POINT_DIM) * (width, height)
        polys.append(coords.reshape(-1).tolist())
        classes.append(class_names[int(tokens[0])])
        if detections:
            scores.append(values[POLY_COORDS])
    boxes, zero_area = fit_polys(polys)
    if zero_area.any():
        k = int(np.flatnonzero(zero_area)[0])
        raise LabelFormatError(path, "polygon has zero area", obj_index=k)
    return labels_from_lists(boxes, classes, scores=scores if detections else None, width=width, height=height)


def write_yolo_obb(path, labels: ImageLabels, image_size: tuple[int, int], class_names: list[str]) -> None:
    """Write ultralytics OBB labels atomically (corners normalized by ``image_size = (width, height)``)."""
    width, height = image_size
    index = {name: i for i, name in enumerate(class_names)}
    polys = xywha_to_poly(labels.boxes) / (width, height) if len(labels) else np.zeros((0, CORNERS, POINT_DIM))
    lines = []
    for i in range(len(labels)):
        if labels.classes[i] not in index:
            raise ValueError(f"{path}: class {labels.classes[i]!r} is not in the class list {class_names}")
        coords = " ".join(repr(float(v)) for v in polys[i].reshape(-1))
        score = f" {float(labels.scores[i])!r}" if labels.scores is not None else ""
        lines.append(f"{index[labels.classes[i]]} {coords}{score}")
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


# ---------------------------------------------------------------------------------------------------
# Object-Detection-Metrics text (axis-aligned)
# ---------------------------------------------------------------------------------------------------

def _odm_aabb(values: list[float], box_format: str, coords: str, image_size) -> list[float]:
    a, b, c, d = values
    if coords == "rel":
        width, height = image_size
        cx, cy, w, h = a * width, b * height, c * width, d * height
        return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    if box_format == "xywh":
        return [a, b, a + c, b + d]
    return [a, b, c, d]


def read_odm_text(path, *, box_format: str = "xywh", coords: str = "abs", image_size=None,
                  detections: bool = False) -> ImageLabels:
    """Read Object-Detection-Metrics text: GT ``cls x y w h``, detections ``cls score x y w h``.

    ``box_format='xyrb'`` reads ``left top right bottom``; ``coords='rel'`` reads normalized ``cx cy w h`` and
    needs ``image_size = (width, height)``. Fills ``aabb`` exactly as given and fits xywha boxes (a = 0).
    """
    if box_format not in ("xywh", "xyrb"):
        raise ValueError(f"box_format must be 'xywh' or 'xyrb', got {box_format!r}")
    if coords not in ("abs", "rel"):
        raise ValueError(f"coords must be 'abs' or 'rel', got {coords!r}")
    if coords == "rel" and image_size is None:
        raise ValueError("relative coordinates need image_size=(width, height)")
    n_numbers = AABB_COORDS + (1 if detections else 0)
    aabbs, classes, scores = [], [], []
    for line_no, line in enumerate(read_lines(path), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 1 + n_numbers:
            raise LabelFormatError(path, f"expected class{' score' if detections else ''} and 4 box numbers",
                                   line=line_no, text=line)
        values = parse_floats(tokens[1:], path, line_no, line, "box values")
        box = _odm_aabb(values[-AABB_COORDS:], box_format, coords, image_size)
        if box[2] < box[0] or box[3] < box[1]:
            raise LabelFormatError(path, "box has negative width or height", line=line_no, text=line)
        aabbs.append(box)
        classes.append(tokens[0])
        if detections:
            scores.append(values[0])
    aabb = np.asarray(aabbs, dtype=np.float64).reshape(-1, AABB_COORDS)
    boxes = aabb_to_xywha(aabb) if len(aabb) else np.zeros((0, BOX_DIM))
    return labels_from_lists(boxes, classes, scores=scores if detections else None, aabb=aabb)


# ---------------------------------------------------------------------------------------------------
# Folders
# ---------------------------------------------------------------------------------------------------

# An image's (width, height), or a function of the label file's path that gives it (or raises the caller's
# own error when it cannot): yolo_obb and relative coordinates need one per image.
ImageSize = tuple[int, int] | Callable[[Path], tuple[int, int]] | None


def label_extension(fmt: str) -> str:
    """The file extension of one image's label file in format ``fmt``."""
    return ".json" if fmt == "obb_json" else ".txt"


@dataclass(frozen=True)
class LabelFiles:
    """A folder's label files of one format.

    files: ``(stem, path)`` pairs in sorted name order (the stem is the image key). others: names of the
    entries without the format's extension, hidden entries and infer's overlay folder not counted (a caller
    may report them: many usually mean a wrong format flag).
    """

    folder: Path
    files: list[tuple[str, Path]]
    others: list[str]


def list_label_files(folder, fmt: str) -> LabelFiles:
    """The label files of ``folder`` for a per-image format (every LABEL_FORMATS entry but ``dota_task1``).

    Raises FileNotFoundError when ``folder`` is not a folder, ValueError for an unknown format.
    """
    if fmt not in LABEL_FORMATS or fmt == "dota_task1":
        raise ValueError(f"not a per-image label format: {fmt!r}; valid formats: "
                         f"{', '.join(f for f in LABEL_FORMATS if f != 'dota_task1')}")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    ext = label_extension(fmt)
    names, others = [], []
    with os.scandir(folder) as entries:  # no stat per file, which matters on folders of 100k labels
        for entry in entries:
            name = entry.name
            if len(name) > len(ext) and name.lower().endswith(ext) and entry.is_file():
                names.append(name)
            elif not name.startswith(".") and not (name == OVERLAY_DIR and entry.is_dir()):
                others.append(name)
    names.sort()
    return LabelFiles(folder, [(name[:-len(ext)], folder / name) for name in names], sorted(others))


def describe_read_error(path, exc: Exception) -> str:
    """One line naming the file for a read error: a LabelFormatError's own text, else ``path: cannot read``."""
    if isinstance(exc, OSError):
        return f"{path}: cannot read ({exc.strerror or exc})"
    return str(exc)


def read_label_file(path, fmt: str, *, detections: bool = False, image_size=None, class_names=None,
                    coords: str = "abs") -> ImageLabels:
    """Read one image's labels in format ``fmt`` (any of LABEL_FORMATS but ``dota_task1``)."""
    if fmt == "obb_json":
        return read_obb_json(path, detections=detections)
    if fmt == "dota":
        return read_dota(path, detections=detections)
    if fmt == "yolo_obb":
        if image_size is None or class_names is None:
            raise ValueError("yolo_obb needs image_size=(width, height) and class_names")
        return read_yolo_obb(path, image_size, class_names, detections=detections)
    if fmt in ("xywh", "xyrb"):
        return read_odm_text(path, box_format=fmt, coords=coords, image_size=image_size, detections=detections)
    raise ValueError(f"unknown label format {fmt!r}; valid formats: {', '.join(LABEL_FORMATS)}")


def read_label_files(files: list[tuple[str, Path]], fmt: str, *, detections: bool = False,
                     image_size: ImageSize = None, class_names=None, coords: str = "abs",
                     progress: Progress | None = None, on_error: ErrorHandler | None = None
                     ) -> dict[str, ImageLabels]:
    """Read listed label files (``(stem, path)`` pairs, as :func:`list_label_files` gives) in format ``fmt``.

    Returns ImageLabels by stem, in the order given. A file that cannot be read (LabelFormatError or
    OSError) raises, or with ``on_error`` is reported through it and left out. ``image_size`` is used
    where the format needs it (yolo_obb, ``coords='rel'``); ``progress`` wraps the list (a progress bar).
    """
    if fmt == "obb_json":
        read = read_obb_json_files([path for _, path in files], detections, progress=progress, on_error=on_error)
        return {stem: labels for (stem, _), labels in zip(files, read) if labels is not None}
    needs_size = fmt == "yolo_obb" or coords == "rel"
    out = {}
    for stem, path in progress(files) if progress else files:
        try:
            size = (image_size(path) if callable(image_size) else image_size) if needs_size else None
            out[stem] = read_label_file(path, fmt, detections=detections, image_size=size, class_names=class_names,
                                        coords=coords)
        except (LabelFormatError, OSError) as exc:
            if on_error is None:
                raise
            on_error(path, exc)
    return out


def read_label_folder(folder, fmt: str, *, detections: bool = False, image_size: ImageSize = None,
                      class_names=None, coords: str = "abs", progress: Progress | None = None,
                      on_error: ErrorHandler | None = None) -> dict[str, ImageLabels]:
    """Read every label file of ``folder`` in format ``fmt``; keys are file stems, in sorted name order.

    Options as :func:`read_label_files`. Raises FileNotFoundError for a missing folder, ValueError for an
    unknown format.
    """
    if fmt not in LABEL_FORMATS:
        raise ValueError(f"unknown label format {fmt!r}; valid formats: {', '.join(LABEL_FORMATS)}")
    if fmt == "dota_task1":
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"{folder}: no such folder")
        return read_dota_task1(folder)
    return read_label_files(list_label_files(folder, fmt).files, fmt, detections=detections, image_size=image_size,
                            class_names=class_names, coords=coords, progress=progress, on_error=on_error)


def labels_to_aabb(labels: ImageLabels) -> np.ndarray:
    """The axis-aligned boxes ``[N, 4]`` of ``labels``: exact ones where the format had them, else bounds."""
    if labels.aabb is not None:
        return labels.aabb
    return xywha_to_aabb(labels.boxes) if len(labels) else np.zeros((0, AABB_COORDS))
