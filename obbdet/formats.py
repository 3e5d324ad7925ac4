"""Label and detection file formats shared by eval, the dataset registry, infer and the tools.

Every reader returns an :class:`obbdet.structures.ImageLabels` with boxes in xywha le90 (radians, pixels).
Every parse error is a :class:`LabelFormatError` naming the file and the line (or object index) and the
offending text. Numpy only: importing this module never imports torch.

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
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from obbdet.boxes import BOX_DIM, CORNERS, POINT_DIM, aabb_to_xywha, poly_to_xywha, xywha_to_aabb, xywha_to_poly
from obbdet.io_utils import atomic_write_text
from obbdet.structures import ImageLabels

logger = logging.getLogger(__name__)

POLY_COORDS = CORNERS * POINT_DIM  # 8 numbers per polygon
AABB_COORDS = 4  # x_min y_min x_max y_max
OBB_JSON_GEOMETRY_KEYS = ("cx", "cy", "length", "width", "angle")
OBB_JSON_KNOWN_KEYS = frozenset(OBB_JSON_GEOMETRY_KEYS + ("class", "poly", "score", "difficult", "ignore", "heading"))
LABEL_FORMATS = ("obb_json", "dota", "dota_task1", "yolo_obb", "xywh", "xyrb")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
# infer.py --draw writes overlay images to this subfolder of its detections folder (eval does not report it)
OVERLAY_DIR = "overlays"


class LabelFormatError(ValueError):
    """A malformed label or detection record. ``str()`` is one line: ``path:line: reason: 'text'``."""

    def __init__(self, path, reason: str, *, line: int | None = None, obj_index: int | None = None,
                 text: str | None = None):
        self.path = str(path)
        self.reason = reason
        self.line = line
        self.obj_index = obj_index
        self.text = text
        where = self.path
        if line is not None:
            where += f":{line}"
        if obj_index is not None:
            where += f": object #{obj_index}"
        message = f"{where}: {reason}"
        if text is not None:
            shown = text if len(text) <= 120 else text[:117] + "..."
            message += f": {shown!r}"
        super().__init__(message)


# ---------------------------------------------------------------------------------------------------
# Building ImageLabels
# ---------------------------------------------------------------------------------------------------

def _labels_from_lists(boxes, classes, *, scores=None, difficult=None, ignore=None, heading=None, aabb=None,
                       extras=None, image=None, width=None, height=None) -> ImageLabels:
    n = len(classes)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(n, BOX_DIM)
    return ImageLabels(
        image=image, width=width, height=height, boxes=boxes, classes=list(classes),
        scores=None if scores is None else np.asarray(scores, dtype=np.float64).reshape(n),
        difficult=np.zeros(n, bool) if difficult is None else np.asarray(difficult, dtype=bool).reshape(n),
        ignore=np.zeros(n, bool) if ignore is None else np.asarray(ignore, dtype=bool).reshape(n),
        heading=None if heading is None else np.asarray(heading, dtype=np.float64).reshape(n),
        aabb=None if aabb is None else np.asarray(aabb, dtype=np.float64).reshape(n, AABB_COORDS),
        extras=extras,
    )


def _parse_floats(tokens, path, line_no: int, line: str, what: str) -> list[float]:
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        raise LabelFormatError(path, f"{what} must be numbers", line=line_no, text=line) from None
    if not all(math.isfinite(v) for v in values):
        raise LabelFormatError(path, f"{what} must be finite (got NaN or inf)", line=line_no, text=line)
    return values


def _read_lines(path) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise LabelFormatError(path, f"not a UTF-8 text file ({exc.reason})") from None


def _warn_degenerate(path, line_numbers: list[int]) -> None:
    if line_numbers:
        shown = ", ".join(str(n) for n in line_numbers[:10])
        logger.warning("%s: %d zero-area polygon(s) kept as zero-size difficult boxes (lines %s)",
                       path, len(line_numbers), shown)


def _fit_polys(polys: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Fit xywha boxes to flat 8-number polygons. Returns (boxes [N,5] float64, zero-area mask [N])."""
    if not polys:
        return np.zeros((0, BOX_DIM)), np.zeros(0, bool)
    arr = np.asarray(polys, dtype=np.float64).reshape(-1, CORNERS, POINT_DIM)
    boxes = poly_to_xywha(arr, warn=False)
    zero_area = boxes[:, 3] <= 1e-12 * np.maximum(boxes[:, 2], 1.0)
    return boxes, zero_area


# ---------------------------------------------------------------------------------------------------
# obb_json
# ---------------------------------------------------------------------------------------------------

def load_json_document(path, list_key: str, what: str) -> dict:
    """Parse a JSON file that must be an object holding a list under ``list_key``.

    Raises LabelFormatError naming the file (and the line of a syntax error).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise LabelFormatError(path, f"not a UTF-8 text file ({exc.reason})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelFormatError(path, f"malformed JSON ({exc.msg}, column {exc.colno})", line=exc.lineno) from None
    if not isinstance(data, dict) or not isinstance(data.get(list_key), list):
        raise LabelFormatError(path, f"expected {what} with an {list_key!r} list")
    return data


def _load_json(path) -> dict:
    return load_json_document(path, "objects", "a JSON object")


def _obb_json_object_box(obj: dict, path, index: int) -> tuple[list[float], bool]:
    """One object's ``[cx, cy, w, h, a]`` (radians) and whether it came from a polygon."""
    if all(k in obj for k in OBB_JSON_GEOMETRY_KEYS):
        values = [obj[k] for k in OBB_JSON_GEOMETRY_KEYS]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise LabelFormatError(path, "cx, cy, length, width, angle must be numbers", obj_index=index,
                                   text=json.dumps(obj))
        cx, cy, length, width, angle_deg = (float(v) for v in values)
        return [cx, cy, length, width, math.radians(angle_deg)], False
    if "poly" in obj:
        poly = obj["poly"]
        flat = [c for point in poly for c in point] if isinstance(poly, list) and all(
            isinstance(p, (list, tuple)) and len(p) == POINT_DIM for p in poly) else None
        if flat is None or len(poly) != CORNERS or not all(
                isinstance(c, (int, float)) and not isinstance(c, bool) for c in flat):
            raise LabelFormatError(path, "'poly' must be 4 [x, y] number pairs", obj_index=index,
                                   text=json.dumps(obj))
        return [float(c) for c in flat], True
    missing = [k for k in OBB_JSON_GEOMETRY_KEYS if k not in obj]
    raise LabelFormatError(path, f"object needs cx, cy, length, width, angle or poly (missing {', '.join(missing)})",
                           obj_index=index, text=json.dumps(obj))


def _check_obb_json_object(obj, path, index: int, detections: bool) -> None:
    if not isinstance(obj, dict):
        raise LabelFormatError(path, "object must be a JSON object", obj_index=index, text=json.dumps(obj))
    if not isinstance(obj.get("class"), str) or not obj["class"]:
        raise LabelFormatError(path, "object needs a non-empty string 'class'", obj_index=index, text=json.dumps(obj))
    if detections:
        score = obj.get("score")
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            raise LabelFormatError(path, "detection needs a numeric 'score'", obj_index=index, text=json.dumps(obj))
        if not math.isfinite(score):
            raise LabelFormatError(path, "score must be finite", obj_index=index, text=json.dumps(obj))


def read_obb_json(path, *, detections: bool = False) -> ImageLabels:
    """Read one obb_json file. ``detections=True`` requires a finite ``score`` on every object.

    Raises LabelFormatError (file + object index) for malformed JSON, missing keys, NaN/inf, and zero or
    negative sizes. Unknown keys are kept in ``extras``.
    """
    data = _load_json(path)
    objects = data["objects"]
    classes, rows, from_poly, scores, difficult, ignore, heading, extras = [], [], [], [], [], [], [], []
    for index, obj in enumerate(objects):
        _check_obb_json_object(obj, path, index, detections)
        geometry, is_poly = _obb_json_object_box(obj, path, index)
        if not all(math.isfinite(v) for v in geometry):
            raise LabelFormatError(path, "geometry must be finite (got NaN or inf)", obj_index=index,
                                   text=json.dumps(obj))
        classes.append(obj["class"])
        rows.append(geometry)
        from_poly.append(is_poly)
        scores.append(float(obj.get("score", 0.0)) if detections else 0.0)
        difficult.append(bool(obj.get("difficult", False)))
        ignore.append(bool(obj.get("ignore", False)))
        head = obj.get("heading")
        heading.append(math.radians(head) if isinstance(head, (int, float)) and not isinstance(head, bool) else math.nan)
        extra = {k: v for k, v in obj.items() if k not in OBB_JSON_KNOWN_KEYS}
        extras.append(extra)
    boxes = _obb_json_boxes(rows, from_poly, objects, path)
    labels = _labels_from_lists(
        boxes, classes, scores=scores if detections else None, difficult=difficult, ignore=ignore,
        heading=heading if not all(math.isnan(h) for h in heading) else None,
        extras=extras if any(extras) else None, image=data.get("image"),
        width=data.get("width"), height=data.get("height"))
    return labels


def _obb_json_boxes(rows, from_poly, objects, path) -> np.ndarray:
    boxes = np.zeros((len(rows), BOX_DIM), np.float64)
    poly_idx = [i for i, p in enumerate(from_poly) if p]
    xywha_idx = [i for i, p in enumerate(from_poly) if not p]
    if xywha_idx:
        raw = np.asarray([rows[i] for i in xywha_idx], dtype=np.float64)
        # zero size is valid only on difficult ground truth (DOTA's zero-area patch-edge objects, written back)
        difficult = np.asarray([objects[i].get("difficult", False) is True for i in xywha_idx])
        bad = np.flatnonzero((raw[:, 2] < 0) | (raw[:, 3] < 0) | (((raw[:, 2] == 0) | (raw[:, 3] == 0)) & ~difficult))
        if len(bad):
            i = xywha_idx[bad[0]]
            reason = "length and width must be > 0 (zero only on difficult objects)"
            raise LabelFormatError(path, reason, obj_index=i, text=json.dumps(objects[i]))
        from obbdet.boxes import normalize_xywha

        boxes[xywha_idx] = normalize_xywha(raw)
    if poly_idx:
        fitted, zero_area = _fit_polys([rows[i] for i in poly_idx])
        poly_difficult = np.asarray([objects[i].get("difficult", False) is True for i in poly_idx])
        if (zero_area & ~poly_difficult).any():
            i = poly_idx[int(np.flatnonzero(zero_area & ~poly_difficult)[0])]
            raise LabelFormatError(path, "polygon has zero area (allowed only on difficult objects)",
                                   obj_index=i, text=json.dumps(objects[i]))
        boxes[poly_idx] = fitted
    return boxes


def obb_json_dict(labels: ImageLabels, *, include_poly: bool = False) -> dict:
    """The obb_json document of ``labels`` (angles in degrees in ``[-90, 90)``, unknown keys preserved)."""
    from obbdet.boxes import normalize_xywha

    boxes = normalize_xywha(labels.boxes) if len(labels) else labels.boxes
    polys = xywha_to_poly(boxes) if include_poly and len(labels) else None
    objects = []
    for i in range(len(labels)):
        cx, cy, w, h, a = (float(v) for v in boxes[i])
        obj = {"class": labels.classes[i], "cx": cx, "cy": cy, "length": w, "width": h, "angle": math.degrees(a)}
        if labels.scores is not None:
            obj["score"] = float(labels.scores[i])
        if labels.difficult[i]:
            obj["difficult"] = True
        if labels.ignore[i]:
            obj["ignore"] = True
        if labels.heading is not None and not math.isnan(labels.heading[i]):
            obj["heading"] = math.degrees(float(labels.heading[i]))
        if polys is not None:
            obj["poly"] = polys[i].tolist()
        if labels.extras is not None and labels.extras[i]:
            obj.update({k: v for k, v in labels.extras[i].items() if k not in obj})
        objects.append(obj)
    doc = {}
    if labels.image is not None:
        doc["image"] = labels.image
    if labels.width is not None:
        doc["width"] = int(labels.width)
    if labels.height is not None:
        doc["height"] = int(labels.height)
    doc["objects"] = objects
    return doc


def write_obb_json(path, labels: ImageLabels, *, include_poly: bool = False) -> None:
    """Write ``labels`` as obb_json to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obb_json_dict(labels, include_poly=include_poly), indent=1) + "\n")


# ---------------------------------------------------------------------------------------------------
# DOTA
# ---------------------------------------------------------------------------------------------------

def _is_dota_header(tokens: list[str]) -> bool:
    return len(tokens) == 1 and ":" in tokens[0] or (len(tokens) >= 1 and tokens[0].endswith(":"))


def read_dota(path, *, detections: bool = False) -> ImageLabels:
    """Read a DOTA label file (ground truth) or a per-image DOTA detection file (``detections=True``)."""
    polys, classes, scores, difficult, zero_lines, line_numbers = [], [], [], [], [], []
    for line_no, line in enumerate(_read_lines(path), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < POLY_COORDS + 1:
            if _is_dota_header(tokens):
                continue
            raise LabelFormatError(path, f"expected {POLY_COORDS} coordinates and a class", line=line_no, text=line)
        if len(tokens) > POLY_COORDS + 2:
            raise LabelFormatError(path, f"too many tokens ({len(tokens)})", line=line_no, text=line)
        polys.append(_parse_floats(tokens[:POLY_COORDS], path, line_no, line, "coordinates"))
        classes.append(tokens[POLY_COORDS])
        extra = tokens[POLY_COORDS + 1] if len(tokens) == POLY_COORDS + 2 else None
        if detections:
            if extra is None:
                raise LabelFormatError(path, "detection line needs a score after the class", line=line_no, text=line)
            scores.append(_parse_floats([extra], path, line_no, line, "score")[0])
            difficult.append(False)
        else:
            difficult.append(_parse_dota_difficult(extra, path, line_no, line))
        line_numbers.append(line_no)
    boxes, zero_area = _fit_polys(polys)
    for k in np.flatnonzero(zero_area):
        if not detections:
            difficult[k] = True
        zero_lines.append(line_numbers[k])
    _warn_degenerate(path, zero_lines)
    return _labels_from_lists(boxes, classes, scores=scores if detections else None, difficult=difficult)


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
        for line_no, line in enumerate(_read_lines(path), start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != POLY_COORDS + 2:
                raise LabelFormatError(path, f"expected image_id, score and {POLY_COORDS} coordinates",
                                       line=line_no, text=line)
            values = _parse_floats(tokens[1:], path, line_no, line, "score and coordinates")
            entry = per_image.setdefault(tokens[0], {"polys": [], "scores": [], "classes": []})
            entry["polys"].append(values[1:])
            entry["scores"].append(values[0])
            entry["classes"].append(class_name)
    out = {}
    for image_id in sorted(per_image):
        entry = per_image[image_id]
        boxes, _ = _fit_polys(entry["polys"])
        out[image_id] = _labels_from_lists(boxes, entry["classes"], scores=entry["scores"])
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
    for line_no, line in enumerate(_read_lines(path), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != expected:
            raise LabelFormatError(path, f"expected {expected} tokens (class index, {POLY_COORDS} coordinates"
                                   f"{', score' if detections else ''})", line=line_no, text=line)
        if not tokens[0].isdigit() or int(tokens[0]) >= len(class_names):
            raise LabelFormatError(path, f"class index must be an integer in [0, {len(class_names)})",
                                   line=line_no, text=line)
        values = _parse_floats(tokens[1:], path, line_no, line, "coordinates")
        coords = np.asarray(values[:POLY_COORDS]).reshape(CORNERS, POINT_DIM) * (width, height)
        polys.append(coords.reshape(-1).tolist())
        classes.append(class_names[int(tokens[0])])
        if detections:
            scores.append(values[POLY_COORDS])
    boxes, zero_area = _fit_polys(polys)
    if zero_area.any():
        k = int(np.flatnonzero(zero_area)[0])
        raise LabelFormatError(path, "polygon has zero area", obj_index=k)
    return _labels_from_lists(boxes, classes, scores=scores if detections else None, width=width, height=height)


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
    for line_no, line in enumerate(_read_lines(path), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 1 + n_numbers:
            raise LabelFormatError(path, f"expected class{' score' if detections else ''} and 4 box numbers",
                                   line=line_no, text=line)
        values = _parse_floats(tokens[1:], path, line_no, line, "box values")
        box = _odm_aabb(values[-AABB_COORDS:], box_format, coords, image_size)
        if box[2] < box[0] or box[3] < box[1]:
            raise LabelFormatError(path, "box has negative width or height", line=line_no, text=line)
        aabbs.append(box)
        classes.append(tokens[0])
        if detections:
            scores.append(values[0])
    aabb = np.asarray(aabbs, dtype=np.float64).reshape(-1, AABB_COORDS)
    boxes = aabb_to_xywha(aabb) if len(aabb) else np.zeros((0, BOX_DIM))
    return _labels_from_lists(boxes, classes, scores=scores if detections else None, aabb=aabb)


# ---------------------------------------------------------------------------------------------------
# Folders
# ---------------------------------------------------------------------------------------------------

def label_extension(fmt: str) -> str:
    """The file extension of one image's label file in format ``fmt``."""
    return ".json" if fmt == "obb_json" else ".txt"


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


def read_label_folder(folder, fmt: str, *, detections: bool = False, **options) -> dict[str, ImageLabels]:
    """Read every label file of ``folder`` in format ``fmt``; keys are file stems, in sorted name order."""
    if fmt not in LABEL_FORMATS:
        raise ValueError(f"unknown label format {fmt!r}; valid formats: {', '.join(LABEL_FORMATS)}")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    if fmt == "dota_task1":
        return read_dota_task1(folder)
    ext = label_extension(fmt)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ext and p.is_file())
    return {p.stem: read_label_file(p, fmt, detections=detections, **options) for p in files}


def labels_to_aabb(labels: ImageLabels) -> np.ndarray:
    """The axis-aligned boxes ``[N, 4]`` of ``labels``: exact ones where the format had them, else bounds."""
    if labels.aabb is not None:
        return labels.aabb
    return xywha_to_aabb(labels.boxes) if len(labels) else np.zeros((0, AABB_COORDS))
