"""Reading ground-truth and detection folders for evaluation.

Folders hold one file per image (key = file stem), except ``dota_task1`` (per-class ``Task1_<class>.txt``
detection files). Parsing is done by ``obbdet.formats``; obb_json files take a fast path here that builds
the arrays with a few list comprehensions per file instead of per-object validation in Python, and falls
back to ``obbdet.formats.read_obb_json`` for any file it cannot take (polygon objects, anything unusual), so
malformed files get exactly the reader's one-line error.
"""
from __future__ import annotations

import gc
import json
import math
import os
from contextlib import contextmanager
from itertools import chain
from pathlib import Path

import numpy as np

from obbdet.boxes import BOX_DIM, normalize_xywha
from obbdet.formats import (
    LABEL_FORMATS, OVERLAY_DIR, LabelFormatError, label_extension, read_dota_task1, read_label_file, read_obb_json,
)
from obbdet.structures import ImageLabels

from .errors import EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_USAGE, EvalInputError, WarningLog

_NUMBER_TYPES = {int, float}
_DEG_TO_RAD = math.pi / 180.0
PROGRESS_MIN_FILES = 2000  # folders at least this big get a progress bar (on a terminal)


def _progress(items: list, desc: str):
    """``items`` wrapped in a tqdm bar for big folders (tqdm is imported only then; hidden off a terminal)."""
    if len(items) < PROGRESS_MIN_FILES:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="file", disable=None, leave=False)


def _reject_constant(name: str):
    raise ValueError(name)  # NaN / Infinity literals: leave them to the full reader's error


class _ObbJsonBatch:
    """Fast path for obb_json folders: parse every file into shared Python lists, convert once.

    Files whose objects all give ``cx, cy, length, width, angle`` as numbers are parsed with a few list
    comprehensions; their numbers become one array, validated (types, finite, positive sizes) and normalized
    to le90 in one call for the whole folder. Any file that does not fit, or that fails a check, is read
    by ``obbdet.formats.read_obb_json`` instead, which raises the precise one-line error (or handles the
    case, e.g. polygon objects). The boxes equal the reader's (degrees -> radians, ``normalize_xywha``);
    ``extras`` and ``heading`` are not kept (evaluation uses neither).
    """

    def __init__(self, detections: bool):
        self.detections = detections
        self.geometry: list[tuple] = []
        self.classes: list[str] = []
        self.scores: list = []
        self.difficult: list[bool] = []
        self.ignore: list[bool] = []
        self.files: list[tuple[int, int, dict]] = []  # (caller's index, object count, image fields)

    def add(self, index: int, path) -> bool:
        """Parse one file into the batch; False if it needs the full reader."""
        try:
            data = json.loads(path.read_bytes(), parse_constant=_reject_constant)
            objects = data["objects"]
            if not isinstance(objects, list):
                return False
            geometry = [(o["cx"], o["cy"], o["length"], o["width"], o["angle"]) for o in objects]
            classes = [o["class"] for o in objects]
            scores = [o["score"] for o in objects] if self.detections else None
            difficult = [bool(o.get("difficult", False)) for o in objects]
            ignore = [bool(o.get("ignore", False)) for o in objects]
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            return False
        if classes and (not set(map(type, classes)) <= {str} or "" in classes):
            return False
        self.geometry.extend(geometry)
        self.classes.extend(classes)
        if scores is not None:
            self.scores.extend(scores)
        self.difficult.extend(difficult)
        self.ignore.extend(ignore)
        self.files.append((index, len(objects), {k: data.get(k) for k in ("image", "width", "height")}))
        return True

    def _numbers_ok(self, start: int, stop: int) -> bool:
        values = chain.from_iterable(self.geometry[start:stop])
        if not set(map(type, values)) <= _NUMBER_TYPES:
            return False
        return not self.detections or set(map(type, self.scores[start:stop])) <= _NUMBER_TYPES

    def labels(self, paths: list) -> dict[int, ImageLabels]:
        """ImageLabels per index of the batch's files (files failing a check are read by the full reader)."""
        counts = np.array([n for _, n, _ in self.files], dtype=np.int64)
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
            full_raw = np.full((len(keep), BOX_DIM), np.nan)  # rows of bad files: NaN, replaced below
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
        out = {}
        for k, (index, n, meta) in enumerate(self.files):
            if bad[k] or n == 0:
                out[index] = read_obb_json(paths[index], detections=self.detections) if bad[k] else ImageLabels(
                    image=meta["image"], width=meta["width"], height=meta["height"],
                    scores=np.zeros(0) if self.detections else None)
                continue
            s, e = int(starts[k]), int(ends[k])
            out[index] = ImageLabels(image=meta["image"], width=meta["width"], height=meta["height"],
                                    boxes=boxes[s:e], classes=self.classes[s:e],
                                    scores=None if score_array is None else score_array[s:e],
                                    difficult=difficult[s:e], ignore=ignore[s:e])
        return out


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


def read_obb_json_files(paths: list, detections: bool, desc: str = "reading") -> list[ImageLabels]:
    """Read many obb_json files fast (see :class:`_ObbJsonBatch`); same boxes as ``read_obb_json``.

    Returns one ImageLabels per path, in the order given.
    """
    batch = _ObbJsonBatch(detections)
    with _gc_paused():
        slow = [i for i, path in enumerate(_progress(paths, desc)) if not batch.add(i, path)]
    out = batch.labels(paths)
    for i in slow:
        out[i] = read_obb_json(paths[i], detections=detections)
    return [out[i] for i in range(len(paths))]


def fast_read_obb_json(path, detections: bool) -> ImageLabels:
    """One obb_json file through the fast path (falls back to ``read_obb_json``)."""
    return read_obb_json_files([Path(path)], detections)[0]


def _label_files(folder: Path, ext: str, warnings: WarningLog) -> list[tuple[str, Path]]:
    """(stem, path) of the label files of ``folder`` in sorted name order (os.scandir: no stat per file)."""
    names, others = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.lower().endswith(ext) and entry.is_file():
                names.append(entry.name)
            elif not entry.name.startswith(".") and not (entry.name == OVERLAY_DIR and entry.is_dir()):
                others.append(entry.name)
    if others and not names:
        raise EvalInputError(f"{folder}: no {ext} files, but {len(others)} other entries (e.g. {sorted(others)[0]}): "
                             f"wrong format flag?", EXIT_USAGE)
    if others:
        warnings.add(f"other-files-{folder}", f"{folder}: {len(others)} entries without the {ext} extension "
                     f"skipped (e.g. {sorted(others)[0]})", count=1)
    names.sort()
    return [(name[:-len(ext)], folder / name) for name in names]


def check_folder(folder, what: str) -> Path:
    folder = Path(folder)
    if not folder.exists():
        raise EvalInputError(f"{folder}: {what} folder does not exist", EXIT_NOT_FOUND)
    if not folder.is_dir():
        raise EvalInputError(f"{folder}: {what} path is not a folder", EXIT_NOT_FOUND)
    return folder


def load_folder(folder, fmt: str, *, detections: bool, warnings: WarningLog, coords: str = "abs",
                image_size: tuple[int, int] | None = None, image_sizes: dict | None = None,
                class_names: list[str] | None = None) -> tuple[dict[str, ImageLabels], dict[str, Path]]:
    """Read every label file of ``folder`` in format ``fmt``. Returns (labels by image key, file by key).

    coords: ``'abs'`` or ``'rel'`` (xywh/xyrb only). image_size: ``(width, height)`` for all images (relative
    coordinates, yolo_obb); image_sizes: per-image sizes used where ``image_size`` is None (yolo_obb).
    class_names: class list of yolo_obb indices. Raises :class:`EvalInputError` with the file and line.
    """
    what = "detection" if detections else "ground-truth"
    if fmt not in LABEL_FORMATS:
        raise EvalInputError(f"unknown {what} format {fmt!r}; valid: {', '.join(LABEL_FORMATS)}", EXIT_USAGE)
    folder = check_folder(folder, what)
    if coords == "rel" and fmt not in ("xywh", "xyrb"):
        raise EvalInputError(f"relative coordinates apply to the xywh and xyrb formats, not {fmt}", EXIT_USAGE)
    if fmt == "dota_task1":
        if not detections:
            raise EvalInputError("dota_task1 holds detections only; use -gtformat dota for DOTA labels", EXIT_USAGE)
        try:
            labels = read_dota_task1(folder)
        except LabelFormatError as exc:
            raise EvalInputError(str(exc), EXIT_BAD_INPUT) from None
        return labels, {key: folder for key in labels}
    if fmt == "yolo_obb" and not class_names:
        raise EvalInputError("yolo_obb needs the class names (--classes a,b,c in index order)", EXIT_USAGE)
    if coords == "rel" and image_size is None:
        raise EvalInputError("relative coordinates need the image size (-imgsize W,H)", EXIT_USAGE)
    files = _label_files(folder, label_extension(fmt), warnings)
    if not files:
        warnings.add(f"empty-{folder}", f"{folder}: no {what} files ({label_extension(fmt)}) found")
    if fmt == "obb_json":
        try:
            read = read_obb_json_files([p for _, p in files], detections, desc=f"reading {what} files")
        except LabelFormatError as exc:
            raise EvalInputError(str(exc), EXIT_BAD_INPUT) from None
        except OSError as exc:
            raise EvalInputError(f"{exc.filename}: cannot read ({exc.strerror or exc})", EXIT_BAD_INPUT) from None
        return {stem: labels for (stem, _), labels in zip(files, read)}, dict(files)
    labels = {}
    for stem, path in _progress(files, f"reading {what} files"):
        labels[stem] = _read_one(path, fmt, detections, coords, image_size, image_sizes, class_names)
    return labels, dict(files)


def _read_one(path: Path, fmt: str, detections: bool, coords: str, image_size, image_sizes, class_names
              ) -> ImageLabels:
    try:
        size = image_size
        if fmt == "yolo_obb" and size is None:
            size = (image_sizes or {}).get(path.name[:-len(".txt")])
            if size is None:
                raise EvalInputError(f"{path}: yolo_obb needs the image size (-imgsize W,H, or width/height in "
                                     f"obb_json ground truth)", EXIT_USAGE)
        return read_label_file(path, fmt, detections=detections, image_size=size, class_names=class_names,
                               coords=coords)
    except LabelFormatError as exc:
        raise EvalInputError(str(exc), EXIT_BAD_INPUT) from None
    except OSError as exc:
        raise EvalInputError(f"{path}: cannot read ({exc.strerror or exc})", EXIT_BAD_INPUT) from None
