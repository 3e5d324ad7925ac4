"""Benchmark rotated NMS: the CPU path (and the Triton path when CUDA is available) against a shapely greedy NMS.

Scene: a dense car park (rows of parked cars, the whole lot turned by 30 degrees so that neighbours' axis-aligned
bounds overlap), each vehicle with several jittered candidate boxes and random scores, as a detector emits them
before NMS. One run prints, for N = 1k, 5k and 20k candidates, the median time of each path, the reference
time (N = 1k and 5k; the reference is quadratic) and the speed-up, and checks that the keep sets agree. It
also times the CPU path in one pass over all ranks (``first_chunk=N``: every overlapping pair tested) to show
what the doubling blocks of ranks save; ``--per-vehicle 16`` gives the candidate density of a trained
detector's output (many low-scoring copies per vehicle), where that saving is largest.

Run: ``.venv/bin/python bench/nms.py`` (about a minute on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import shapely  # noqa: E402
import torch  # noqa: E402

from obbdet.boxes import xywha_to_poly  # noqa: E402
from obbdet.nms import nms_rotated  # noqa: E402
from obbdet.nms_cpu import nms_rotated_numpy  # noqa: E402

CAR_LENGTH_PX, CAR_WIDTH_PX = 45.0, 19.0  # a 4.5 m x 1.9 m car at 10 cm ground sampling distance
SLOT_PITCH_PX, ROW_PITCH_PX, AISLE_PX = 25.0, 50.0, 60.0  # 2.5 m slots, rows of 5 m, 6 m aisles every 2 rows
LOT_ANGLE = math.radians(30.0)
CANDIDATES_PER_VEHICLE = 4
IOU_THRESHOLD = 0.5


def car_park_candidates(n_boxes: int, seed: int = 0, per_vehicle: int = CANDIDATES_PER_VEHICLE
                        ) -> tuple[np.ndarray, np.ndarray]:
    """``n_boxes`` candidate boxes ``[N, 5]`` (xywha, float32) and scores ``[N]`` over a dense car park."""
    rng = np.random.default_rng(seed)
    n_vehicles = math.ceil(n_boxes / per_vehicle)
    slots_per_row = max(1, int(round(math.sqrt(n_vehicles * ROW_PITCH_PX / SLOT_PITCH_PX))))
    k = np.arange(n_vehicles)
    slot, row = k % slots_per_row, k // slots_per_row
    along = slot * SLOT_PITCH_PX
    across = row * ROW_PITCH_PX + (row // 2) * AISLE_PX
    cos_l, sin_l = math.cos(LOT_ANGLE), math.sin(LOT_ANGLE)
    cx = 500.0 + along * cos_l - across * sin_l
    cy = 500.0 + along * sin_l + across * cos_l
    # cars park across the row (long side perpendicular to it), a few degrees off, nose in either direction
    heading = LOT_ANGLE + math.pi / 2 + rng.normal(0.0, math.radians(4.0), n_vehicles)
    vehicles = np.column_stack([cx + rng.normal(0, 1.5, n_vehicles), cy + rng.normal(0, 1.5, n_vehicles),
                                CAR_LENGTH_PX * rng.uniform(0.9, 1.1, n_vehicles),
                                CAR_WIDTH_PX * rng.uniform(0.9, 1.1, n_vehicles), heading])
    owner = np.repeat(np.arange(n_vehicles), per_vehicle)[:n_boxes]
    boxes = vehicles[owner].copy()
    boxes[:, :2] += rng.normal(0.0, 2.0, (n_boxes, 2))
    boxes[:, 2:4] *= rng.uniform(0.92, 1.08, (n_boxes, 2))
    boxes[:, 4] += rng.normal(0.0, math.radians(3.0), n_boxes)
    boxes[:, 4] = (boxes[:, 4] + math.pi / 2) % math.pi - math.pi / 2
    scores = rng.uniform(0.05, 1.0, n_boxes)
    return boxes.astype(np.float32), scores.astype(np.float32)


def shapely_greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS with shapely polygon IoU: each kept box against all remaining candidates (vectorized shapely)."""
    order = np.argsort(-scores, kind="stable")
    polys = shapely.polygons(xywha_to_poly(boxes.astype(np.float64)))
    areas = shapely.area(polys)
    keep = []
    remaining = order
    while len(remaining):
        best, rest = remaining[0], remaining[1:]
        keep.append(best)
        inter = shapely.area(shapely.intersection(polys[best], polys[rest]))
        union = areas[best] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
        remaining = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def _times(fn, repeats: int, sync=None) -> tuple[float, float, object]:
    """(median seconds, best seconds, last output) of ``repeats`` calls of ``fn``."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--reference-max", type=int, default=5000, help="largest N timed with the reference")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=IOU_THRESHOLD)
    parser.add_argument("--per-vehicle", type=int, default=CANDIDATES_PER_VEHICLE, help="candidates per vehicle")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    cuda = torch.cuda.is_available()
    print(f"rotated NMS, dense car park, {args.per_vehicle} candidates/vehicle, IoU > {args.threshold}, "
          f"torch threads {torch.get_num_threads()}, cuda {'yes: ' + torch.cuda.get_device_name() if cuda else 'no'}")
    for n in args.sizes:
        boxes_np, scores_np = car_park_candidates(n, per_vehicle=args.per_vehicle)
        boxes, scores = torch.from_numpy(boxes_np), torch.from_numpy(scores_np)
        nms_rotated(boxes, scores, args.threshold)  # warm-up
        cpu_s, cpu_best, keep = _times(lambda: nms_rotated(boxes, scores, args.threshold), args.repeats)
        line = f"N={n:6d} kept={len(keep):6d}  cpu median {cpu_s * 1e3:7.2f} ms (best {cpu_best * 1e3:7.2f})"
        boxes64 = boxes_np.astype(np.float64)
        one_s, _, one_keep = _times(lambda: nms_rotated_numpy(boxes64, scores_np, args.threshold, first_chunk=n,
                                                              tol_rel=1e-5), args.repeats)
        line += f"  one-pass {one_s * 1e3:7.2f} ms (blocks x{one_s / cpu_s:4.2f}, same {np.array_equal(one_keep, keep.numpy())})"
        if n <= args.reference_max:
            ref_s, _, ref_keep = _times(lambda: shapely_greedy_nms(boxes_np, scores_np, args.threshold), 1)
            same = np.array_equal(ref_keep, keep.numpy())
            line += f"  shapely-greedy {ref_s * 1e3:8.1f} ms  speed-up x{ref_s / cpu_s:6.1f}  same-keep {same}"
        if cuda:
            boxes_gpu, scores_gpu = boxes.cuda(), scores.cuda()
            nms_rotated(boxes_gpu, scores_gpu, args.threshold)  # compile + warm-up
            gpu_s, gpu_best, gpu_keep = _times(lambda: nms_rotated(boxes_gpu, scores_gpu, args.threshold),
                                               max(args.repeats, 20), sync=torch.cuda.synchronize)
            same_gpu = np.array_equal(gpu_keep.cpu().numpy(), keep.numpy())
            line += (f"  triton median {gpu_s * 1e3:6.3f} ms (best {gpu_best * 1e3:6.3f})  "
                     f"same-keep-as-cpu {same_gpu}")
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
