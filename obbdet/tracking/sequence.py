"""Tracking whole sequences of obb_json detections, and the tracks CSV.

Tracks CSV: no header (MOTChallenge readers), one row per track per frame, comma separated::

    frame,id,bb_left,bb_top,bb_width,bb_height,conf,class,cx,cy,length,width,angle,heading,speed

``frame`` is the frame number + 1 (MOT is 1-based); ``id`` the track id (>= 1); ``bb_*`` the axis-aligned hull of
the oriented box (pixels); ``conf`` the matched detection's score; ``class`` the class name; ``cx, cy, length,
width, angle`` the filtered oriented box (le90, angle in degrees in ``[-90, 90)``); ``heading`` in degrees in
``[-180, 180)``, empty while unknown; ``speed`` in pixels per source frame.
"""
from __future__ import annotations

import csv
import io
import math
from typing import Iterable, Iterator

import numpy as np

from obbdet.boxes import xywha_to_aabb
from obbdet.formats_common import LabelFormatError
from obbdet.io_utils import atomic_write_text
from obbdet.structures import ImageLabels
from obbdet.tracking.options import TrackerOptions
from obbdet.tracking.tracker import Tracker

CSV_COLUMNS = ("frame", "id", "bb_left", "bb_top", "bb_width", "bb_height", "conf", "class", "cx", "cy", "length",
               "width", "angle", "heading", "speed")


def track_sequence(frames: Iterable[tuple[int, ImageLabels]], options: TrackerOptions | None = None,
                   class_names: list[str] | None = None) -> Iterator[tuple[int, ImageLabels]]:
    """Track one sequence: ``(frame number, detections)`` in increasing frame order -> ``(frame, tracks)``.

    Detections are ImageLabels (le90 boxes, ``scores``; ``heading`` radians with NaN unknown, optional); labels
    without scores (ground truth) count as detections of score 1. Class names are mapped to indices in order
    of appearance (after ``class_names``, when given; that list is extended in place). Each output holds the
    confirmed tracks matched in that frame: filtered boxes, the detection's score, ``heading`` (radians, NaN
    unknown) and extras ``track_id``, ``speed`` on top of the matched detection's own extras; ``image``,
    ``width`` and ``height`` are the input's.
    """
    tracker = Tracker(options)
    names = class_names if class_names is not None else []
    index = {name: i for i, name in enumerate(names)}
    for frame, labels in frames:
        for name in labels.classes:
            if name not in index:
                index[name] = len(names)
                names.append(name)
        n = len(labels)
        scores = labels.scores if labels.scores is not None else np.ones(n)
        class_idx = np.array([index[c] for c in labels.classes], dtype=np.int64)
        out = tracker.update(labels.boxes, scores, class_idx, labels.heading, frame=frame)
        tracked = out.to_labels(names, image=labels.image, width=labels.width, height=labels.height)
        if labels.extras is not None:
            tracked.extras = [{**labels.extras[d], **extra} for d, extra in zip(out.detection_index, tracked.extras)]
        tracked.difficult = labels.difficult[out.detection_index]
        yield frame, tracked


def _number(value: float) -> str:
    return f"{value:.4f}"


def tracks_csv_rows(frame: int, labels: ImageLabels) -> list[list[str]]:
    """CSV rows (module notes) of one frame's tracks: ``labels`` as :func:`track_sequence` yields them."""
    if not len(labels):
        return []
    aabb = xywha_to_aabb(labels.boxes)
    rows = []
    for i in range(len(labels)):
        cx, cy, w, h, a = labels.boxes[i]
        heading = labels.heading[i] if labels.heading is not None else math.nan
        extra = labels.extras[i]
        x0, y0, x1, y1 = aabb[i]
        score = labels.scores[i] if labels.scores is not None else 1.0
        heading_text = "" if math.isnan(heading) else _number(math.degrees(heading))
        rows.append([str(frame + 1), str(int(extra["track_id"])), _number(x0), _number(y0), _number(x1 - x0),
                     _number(y1 - y0), f"{score:.6f}", labels.classes[i], _number(cx), _number(cy), _number(w),
                     _number(h), _number(math.degrees(a)), heading_text, _number(float(extra["speed"]))])
    return rows


def write_tracks_csv(path, frames: Iterable[tuple[int, ImageLabels]]) -> int:
    """Write the tracks CSV of ``(frame, tracks)`` pairs to ``path`` atomically; returns the number of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    count = 0
    for frame, labels in frames:
        rows = tracks_csv_rows(frame, labels)
        writer.writerows(rows)
        count += len(rows)
    atomic_write_text(path, buffer.getvalue())
    return count


def _parse_row(row: list[str], path, line: int) -> tuple:
    if len(row) != len(CSV_COLUMNS):
        raise LabelFormatError(path, f"expected {len(CSV_COLUMNS)} columns, got {len(row)}", line=line,
                               text=",".join(row))
    try:
        frame, track_id = int(row[0]), int(row[1])
        conf, cx, cy, w, h, angle, speed = (float(row[k]) for k in (6, 8, 9, 10, 11, 12, 14))
        heading = float(row[13]) if row[13] else math.nan
    except ValueError as exc:
        raise LabelFormatError(path, f"not a number ({exc})", line=line, text=",".join(row)) from None
    if frame < 1 or track_id < 1:
        raise LabelFormatError(path, "frame and id must be >= 1", line=line, text=",".join(row))
    return frame - 1, track_id, conf, row[7], [cx, cy, w, h, math.radians(angle)], math.radians(heading), speed


def read_tracks_csv(path) -> dict[int, ImageLabels]:
    """Read a tracks CSV back: ``{frame number (0-based): ImageLabels}`` with scores, heading (radians, NaN
    unknown) and extras ``track_id``, ``speed``, in file order. Raises LabelFormatError naming file and line."""
    frames: dict[int, list[tuple]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if not row:
                continue
            parsed = _parse_row(row, path, line)
            frames.setdefault(parsed[0], []).append(parsed)
    out = {}
    for frame, rows in frames.items():
        out[frame] = ImageLabels(boxes=np.array([r[4] for r in rows]), classes=[r[3] for r in rows],
                                 scores=np.array([r[2] for r in rows]), heading=np.array([r[5] for r in rows]),
                                 extras=[{"track_id": r[1], "speed": r[6]} for r in rows])
    return out
