"""What every label reader shares: the one-line parse error, and building ImageLabels from parsed values.

The format readers live in :mod:`obbdet.formats` (text formats, folders) and :mod:`obbdet.formats_obb_json`;
both import from here, so neither depends on the other. Numpy only: importing this module never imports torch.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from obbdet.boxes import BOX_DIM, CORNERS, POINT_DIM, poly_to_xywha
from obbdet.structures import ImageLabels

POLY_COORDS = CORNERS * POINT_DIM  # 8 numbers per polygon
AABB_COORDS = 4  # x_min y_min x_max y_max


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


def labels_from_lists(boxes, classes, *, scores=None, difficult=None, ignore=None, heading=None, aabb=None,
                      extras=None, image=None, width=None, height=None) -> ImageLabels:
    """ImageLabels from per-object lists (or arrays); flags left None are all False."""
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


def parse_floats(tokens, path, line_no: int, line: str, what: str) -> list[float]:
    """``tokens`` as finite floats; a LabelFormatError naming ``path:line_no`` otherwise."""
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        raise LabelFormatError(path, f"{what} must be numbers", line=line_no, text=line) from None
    if not all(math.isfinite(v) for v in values):
        raise LabelFormatError(path, f"{what} must be finite (got NaN or inf)", line=line_no, text=line)
    return values


def read_lines(path) -> list[str]:
    """The lines of a UTF-8 text file (a byte-order mark, as Windows editors write, is dropped)."""
    try:
        return Path(path).read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise LabelFormatError(path, f"not a UTF-8 text file ({exc.reason})") from None


def fit_polys(polys: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Fit xywha boxes to flat 8-number polygons. Returns (boxes [N,5] float64, zero-area mask [N])."""
    if not polys:
        return np.zeros((0, BOX_DIM)), np.zeros(0, bool)
    arr = np.asarray(polys, dtype=np.float64).reshape(-1, CORNERS, POINT_DIM)
    boxes = poly_to_xywha(arr, warn=False)
    zero_area = boxes[:, 3] <= 1e-12 * np.maximum(boxes[:, 2], 1.0)
    return boxes, zero_area


def load_json_document(path, list_key: str, what: str) -> dict:
    """Parse a JSON file that must be an object holding a list under ``list_key``.

    Raises LabelFormatError naming the file (and the line of a syntax error). A byte-order mark is dropped,
    as ``json.loads`` does for bytes (the batched obb_json reader reads bytes: both must accept the same files).
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelFormatError(path, f"not a UTF-8 text file ({exc.reason})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelFormatError(path, f"malformed JSON ({exc.msg}, column {exc.colno})", line=exc.lineno) from None
    if not isinstance(data, dict) or not isinstance(data.get(list_key), list):
        raise LabelFormatError(path, f"expected {what} with an {list_key!r} list")
    return data
