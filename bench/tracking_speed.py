"""Tracker speed: milliseconds per frame with ~300 vehicles in view, against a naive association measured in the
same run on the same detections.

The scene: parked vehicles in rows (side by side, a few pixels apart) and vehicles driving along lanes through
them, in a 4000 x 3000 image; detections jittered (centre, sides, angle), a few missed, some low-score clutter.
The tracker (:class:`obbdet.tracking.Tracker`, everything: prediction, gating, exact IoU of candidate pairs,
assignment, Kalman update, headings) is timed per frame. The baseline is the association step alone of a naive
IoU tracker: the dense all-pairs :func:`obbdet.iou.box_iou_rotated` between the previous frame's tracked boxes
and the new detections, then ``linear_sum_assignment`` on the full ``1 - IoU`` matrix. Also printed: how many
track ids each true vehicle got (1.0 is perfect).

    .venv/bin/python bench/tracking_speed.py [--parked 150] [--moving 150] [--frames 100] [--seed 0]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from obbdet.boxes import normalize_xywha  # noqa: E402
from obbdet.iou import box_iou_rotated  # noqa: E402
from obbdet.tracking import Tracker  # noqa: E402

IMAGE = np.array([4000.0, 3000.0])


def scene(rng, n_parked: int, n_moving: int, n_frames: int):
    """True boxes per frame ``[n_frames, V, 5]`` (le90) and a parked flag ``[V]``."""
    parked = []
    while len(parked) < n_parked:
        along = rng.uniform(-math.pi, math.pi)
        start = rng.uniform(0.1, 0.9, 2) * IMAGE
        count = int(rng.integers(5, 25))
        steps = np.arange(count) * rng.uniform(22.0, 26.0)
        length = rng.uniform(38.0, 48.0, count)
        parked.extend(np.column_stack([start[0] + steps * math.cos(along), start[1] + steps * math.sin(along),
                                       length, length * rng.uniform(0.4, 0.47, count),
                                       np.full(count, along + math.pi / 2)]))
    parked = np.array(parked[:n_parked])
    frames = np.arange(n_frames)[:, None]
    direction = rng.uniform(-math.pi, math.pi, n_moving)
    speed = rng.uniform(1.0, 8.0, n_moving)
    start = rng.uniform(0.05, 0.95, (n_moving, 2)) * IMAGE
    length = rng.uniform(38.0, 55.0, n_moving)
    moving = np.zeros((n_frames, n_moving, 5))
    moving[..., 0] = start[:, 0] + frames * speed * np.cos(direction)
    moving[..., 1] = start[:, 1] + frames * speed * np.sin(direction)
    moving[..., 2] = length
    moving[..., 3] = length * 0.42
    moving[..., 4] = direction
    boxes = np.concatenate([np.broadcast_to(parked, (n_frames, *parked.shape)), moving], axis=1)
    return normalize_xywha(boxes), np.arange(boxes.shape[1]) < n_parked


def detections(rng, truth: np.ndarray):
    """Jittered, 3% missed, plus 5% low-score clutter: (boxes, scores, true vehicle index or -1)."""
    keep = rng.random(len(truth)) > 0.03
    det = truth[keep].copy()
    det[:, :2] += rng.normal(0.0, 1.0, (len(det), 2))
    det[:, 2:4] *= rng.normal(1.0, 0.03, (len(det), 2))
    det[:, 4] += rng.normal(0.0, math.radians(2.0), len(det))
    clutter = truth[rng.random(len(truth)) < 0.05].copy()
    clutter[:, :2] += rng.normal(0.0, 30.0, (len(clutter), 2))
    boxes = normalize_xywha(np.concatenate([det, clutter]))
    scores = np.concatenate([rng.uniform(0.55, 0.99, len(det)), rng.uniform(0.1, 0.4, len(clutter))])
    owner = np.concatenate([np.flatnonzero(keep), np.full(len(clutter), -1)])
    return boxes, scores, owner


def naive_association(previous: np.ndarray, boxes: np.ndarray, min_iou: float = 0.1):
    """Dense all-pairs IoU and Hungarian assignment on the full matrix."""
    iou = box_iou_rotated(previous, boxes)
    rows, cols = linear_sum_assignment(1.0 - iou)
    good = iou[rows, cols] >= min_iou
    return rows[good], cols[good]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parked", type=int, default=150)
    parser.add_argument("--moving", type=int, default=150)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    truth, _ = scene(rng, args.parked, args.moving, args.frames)
    data = [detections(rng, truth[f]) for f in range(args.frames)]
    tracker = Tracker()
    ours, naive, in_view = [], [], []
    ids_of = {}
    previous = None
    for f, (boxes, scores, owner) in enumerate(data):
        labels = np.zeros(len(boxes), np.int64)
        start = time.perf_counter()
        out = tracker.update(boxes, scores, labels, frame=f)
        ours.append(time.perf_counter() - start)
        in_view.append(len(out))
        for track_id, row in zip(out.track_ids, out.detection_index):
            if owner[row] >= 0:
                ids_of.setdefault(int(owner[row]), set()).add(int(track_id))
        if previous is not None:
            start = time.perf_counter()
            naive_association(previous, boxes)
            naive.append(time.perf_counter() - start)
        previous = out.boxes
    skip = min(5, args.frames // 2)  # start-up frames (first tracks, caches)
    ours_ms = 1000 * np.median(ours[skip:])
    naive_ms = 1000 * np.median(naive[skip:])
    print(f"{args.parked} parked + {args.moving} moving vehicles, {args.frames} frames, "
          f"{np.mean(in_view[skip:]):.0f} tracks output per frame, {np.mean([len(d[0]) for d in data]):.0f} "
          "detections per frame")
    mean_ms = 1000 * np.mean(ours[skip:])
    print(f"tracker (full update)             : {ours_ms:7.2f} ms/frame (median; mean {mean_ms:.2f})")
    print(f"naive dense IoU + Hungarian (only): {naive_ms:7.2f} ms/frame (median)")
    print(f"track ids per true vehicle        : {np.mean([len(v) for v in ids_of.values()]):.3f}")


if __name__ == "__main__":
    main()
