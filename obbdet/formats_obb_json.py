"""obb_json: the project's label and detection format, one JSON file per image.

Objects give ``cx, cy, length, width, angle`` (degrees, ``[-90, 90)``) or ``poly`` (4 corners); ``heading``,
when present, is in degrees too. Sizes must be positive; zero is accepted only on ``difficult`` objects
(zero-area DOTA labels written back). :func:`read_obb_json` reads one file with per-object checks;
:func:`read_obb_json_files` reads many files to the same result about twice as fast, and is the path every
folder read takes (``obbdet.formats.read_label_files``). Numpy only: importing this module never imports torch.
"""
from __future__ import annotations

import gc
import json
import math
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from obbdet.boxes import BOX_DIM, CORNERS, POINT_DIM, normalize_xywha, xywha_to_poly
from obbdet.formats_common import LabelFormatError, fit_polys, labels_from_lists, load_json_document
from obbdet.io_utils import atomic_write_text
from obbdet.structures import ImageLabels

OBB_JSON_GEOMETRY_KEYS = ("cx", "cy", "length", "width", "angle")
OBB_JSON_KNOWN_KEYS = frozenset(OBB_JSON_GEOMETRY_KEYS + ("class", "poly", "score", "difficult", "ignore", "heading"))

# Called with a file that could not be read and the LabelFormatError or OSError; the file is then skipped.
ErrorHandler = Callable[[Path, Exception], None]
Progress = Callable[[list], Iterable]


# ---------------------------------------------------------------------------------------------------
# One file
# ---------------------------------------------------------------------------------------------------

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
    data = load_json_document(path, "objects", "a JSON object")
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
    labels = labels_from_lists(
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
        boxes[xywha_idx] = normalize_xywha(raw)
    if poly_idx:
        fitted, zero_area = fit_polys([rows[i] for i in poly_idx])
        poly_difficult = np.asarray([objects[i].get("difficult", False) is True for i in poly_idx])
        if (zero_area & ~poly_difficult).any():
            i = poly_idx[int(np.flatnonzero(zero_area & ~poly_difficult)[0])]
            raise LabelFormatError(path, "polygon has zero area (allowed only on difficult objects)",
                                   obj_index=i, text=json.dumps(objects[i]))
        boxes[poly_idx] = fitted
    return boxes


def obb_json_dict(labels: ImageLabels, *, include_poly: bool = False) -> dict:
    """The obb_json document of ``labels`` (angles in degrees in ``[-90, 90)``, unknown keys preserved)."""
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
# Many files
# ---------------------------------------------------------------------------------------------------

_NUMBER_TYPES = frozenset({int, float})
_HEADING_TYPES = frozenset({int, float, type(None)})  # None (no heading) becomes NaN in a float array
_DEG_TO_RAD = math.pi / 180.0  # the factor math.radians multiplies by: same bits as read_obb_json


def _reject_constant(name: str):
    raise ValueError(name)  # NaN / Infinity literals: leave them to the full reader's error


class _ObbJsonBatch:
    """Parse many obb_json files into shared Python lists, then convert and check them in one go.

    Files whose objects all give ``cx, cy, length, width, angle`` as numbers are parsed with a few list
    comprehensions; their numbers become one array, validated (types, finite, positive sizes) and normalized
    to le90 in one call for all files. Files that do not fit (polygon objects, zero sizes, anything
    unusual), or fail a check, are left to :func:`read_obb_json`, which raises the precise one-line error or
    handles the case. The result equals ``read_obb_json``'s field for field, ``heading`` and ``extras`` included.
    """

    def __init__(self, detections: bool):
        self.detections = detections
        self.geometry: list[tuple] = []
        self.classes: list[str] = []
        self.scores: list = []
        self.difficult: list[bool] = []
        self.ignore: list[bool] = []
        self.heading: list = []  # degrees as given (None: absent)
        self.any_heading = False
        # per file: (caller's index, object count, image fields, extras or None)
        self.files: list[tuple[int, int, dict, list | None]] = []

    def add(self, index: int, path) -> bool:
        """Parse one file into the batch; False if it needs the full reader."""
        try:
            data = json.loads(Path(path).read_bytes(), parse_constant=_reject_constant)
            objects = data["objects"]
            if not isinstance(objects, list):
                return False
            geometry = [(o["cx"], o["cy"], o["length"], o["width"], o["angle"]) for o in objects]
            classes = [o["class"] for o in objects]
            scores = [o["score"] for o in objects] if self.detections else None
            difficult = [bool(o.get("difficult", False)) for o in objects]
            ignore = [bool(o.get("ignore", False)) for o in objects]
            heading = [o.get("heading") for o in objects]
            keys = set().union(*objects)
        except (ValueError, KeyError, TypeError, AttributeError, OSError):
            return False  # the full reader raises the error (OSError included) for this one file
        if classes and (not set(map(type, classes)) <= {str} or "" in classes):
            return False
        extras = None
        if not keys <= OBB_JSON_KNOWN_KEYS:
            extras = [{k: v for k, v in o.items() if k not in OBB_JSON_KNOWN_KEYS} for o in objects]
        self.geometry.extend(geometry)
        self.classes.extend(classes)
        if scores is not None:
            self.scores.extend(scores)
        self.difficult.extend(difficult)
        self.ignore.extend(ignore)
        self.heading.extend(heading)
        self.any_heading = self.any_heading or heading.count(None) != len(heading)
        self.files.append((index, len(objects), {k: data.get(k) for k in ("image", "width", "height")},
                           extras if extras and any(extras) else None))
        return True

    def _numbers_ok(self, start: int, stop: int) -> bool:
        values = chain.from_iterable(self.geometry[start:stop])
        if not set(map(type, values)) <= _NUMBER_TYPES:
            return False
        return not self.detections or set(map(type, self.scores[start:stop])) <= _NUMBER_TYPES

    def labels(self) -> tuple[dict[int, ImageLabels], list[int]]:
        """ImageLabels per caller's index, and the indices of the files that failed a check."""
        counts = np.array([n for _, n, _, _ in self.files], dtype=np.int64)
        ends = np.cumsum(counts)
        starts = ends - counts
        bad = np.zeros(len(self.files), bool)
        if not self._numbers_ok(0, len(self.geometry)):
            bad = np.array([not self._numbers_ok(s, e) for s, e in zip(starts.tolist(), ends.tolist())], bool)
            keep = np.repeat(~bad, counts)
            geometry = [g for g, k in zip(self.geometry, keep) if k]
            scores = [v for v, k in zip(self.scores, keep) if k] if self.detections else []
        else:
            keep, geometry, scores = None, self.geometry, self.scores
        raw = np.array(geometry, dtype=np.float64).reshape(-1, BOX_DIM)
        score_array = np.array(scores, dtype=np.float64).reshape(-1) if self.detections else None
        if keep is not None:
            full_raw = np.full((len(keep), BOX_DIM), np.nan)  # rows of bad files: NaN, never used
            full_raw[keep] = raw
            raw = full_raw
            if score_array is not None:
                full_scores = np.full(len(keep), np.nan)
                full_scores[keep] = score_array
                score_array = full_scores
        row_bad = ~np.isfinite(raw).all(1) | (raw[:, 2] <= 0) | (raw[:, 3] <= 0)
        if score_array is not None:
            row_bad |= ~np.isfinite(score_array)
        if row_bad.any():
            bad[np.searchsorted(ends, np.flatnonzero(row_bad), side="right")] = True
        raw[:, 4] *= _DEG_TO_RAD
        boxes = normalize_xywha(np.where(row_bad[:, None], 1.0, raw)) if len(raw) else raw
        difficult = np.array(self.difficult, dtype=bool)
        ignore = np.array(self.ignore, dtype=bool)
        heading, heading_known = None, np.zeros(len(self.files), bool)
        if self.any_heading:
            heading = _heading_radians(self.heading)
            known = np.concatenate([[0], np.cumsum(~np.isnan(heading))])
            heading_known = known[ends] > known[starts]  # read_obb_json: None when no object's is known
        out = {}
        for k, (index, n, meta, extras) in enumerate(self.files):
            if bad[k]:
                continue
            s, e = int(starts[k]), int(ends[k])
            out[index] = ImageLabels(image=meta["image"], width=meta["width"], height=meta["height"],
                                     boxes=boxes[s:e], classes=self.classes[s:e],
                                     scores=None if score_array is None else score_array[s:e],
                                     difficult=difficult[s:e], ignore=ignore[s:e],
                                     heading=heading[s:e] if heading_known[k] else None, extras=extras)
        return out, [int(self.files[k][0]) for k in np.flatnonzero(bad)]


def _heading_radians(values: list) -> np.ndarray:
    """Headings in degrees as radians, NaN where unknown (None or not a number, as read_obb_json has it)."""
    if set(map(type, values)) <= _HEADING_TYPES:
        heading = np.array(values, dtype=np.float64)
    else:
        heading = np.array([v if type(v) in _NUMBER_TYPES else math.nan for v in values], dtype=np.float64)
    heading *= _DEG_TO_RAD
    return heading


@contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector: parsing creates millions of small acyclic objects, and the
    collections they trigger cost up to a third of the reading time on large folders."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_obb_json_files(paths: list, detections: bool = False, *, progress: Progress | None = None,
                        on_error: ErrorHandler | None = None) -> list[ImageLabels | None]:
    """Read many obb_json files; each result equals ``read_obb_json(path, detections=...)``.

    Returns one ImageLabels per path, in the order given. A file that cannot be read (LabelFormatError or
    OSError) raises, or with ``on_error`` is reported through it and gives None. Files are read in order and
    errors arise in that order. ``progress`` wraps the list of paths (e.g. in a progress bar).
    """
    batch = _ObbJsonBatch(detections)
    with _gc_paused():
        slow = [i for i, path in enumerate(progress(paths) if progress else paths) if not batch.add(i, path)]
    out, bad = batch.labels()
    for i in sorted(slow + bad):
        try:
            out[i] = read_obb_json(paths[i], detections=detections)
        except (LabelFormatError, OSError) as exc:
            if on_error is None:
                raise
            on_error(Path(paths[i]), exc)
    return [out.get(i) for i in range(len(paths))]
