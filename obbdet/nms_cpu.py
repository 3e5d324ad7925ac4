"""Rotated non-maximum suppression on the CPU: float64 numpy, exact, sparse (the CPU path of :mod:`obbdet.nms`).

Candidate pairs come from a uniform grid over the axis-aligned bounds (:func:`obbdet.pairs.aabb_overlap_pairs`,
the class part of the grid key; no ``N x N`` matrix: 20k boxes stay sparse), cheap exact pre-tests drop pairs
whose IoU cannot exceed the threshold, the exact intersection is computed for the rest only, vectorized, and
the greedy pass walks the sparse suppression graph. Ranks are taken in blocks of doubling size, each tested
first against the boxes already kept, so the many low-scoring copies of a detection cost one test against
their kept neighbours, not one against each other. Numpy rather than torch ops: the per-call overhead of ~100
small array ops is what decides the 1k-box time, and this module imports no torch.

The areas come from the project's one rotated intersection, :func:`obbdet.iou.intersection_area_pairs`, at the
tolerance below, and the IoU from :func:`obbdet.iou.box_iou_rotated`'s formula: wherever the tolerance does not
act, the IoU compared for a pair (in rank order) is bit for bit the one ``box_iou_rotated`` reports (the one
the evaluation uses for rotated boxes), so a tie at the threshold is decided the same way everywhere. The GPU kernels
(:mod:`obbdet.nms_triton`) use the same tolerances and fall back to :func:`nms_rotated_numpy` when their
bitmask would not fit.
"""
from __future__ import annotations

import numpy as np

from obbdet.boxes import BOX_DIM, xywha_to_aabb
from obbdet.iou import intersection_area_pairs, trig_rows
from obbdet.pairs import aabb_overlap_pairs

__all__ = ["nms_rotated_numpy", "tolerance_for", "TOL_REL_FLOAT64", "TOL_REL_FLOAT32"]

# Geometric tolerance, relative to the largest half side of a pair (the intersection's ``tol_rel``): relative
# angles this close to a multiple of 90 degrees are that multiple, so boxes parallel at that resolution share
# their edges; intersections at most it times that half side squared are round-off. Float64 input is resolved
# at 1e-9. Lower-precision input is resolved at float32's resolution on every device (a float32 angle cannot
# tell pi/2 from its float32 neighbour, 4e-8 away), so the CPU path and the float32 GPU kernel return the same
# keep sets.
TOL_REL_FLOAT64 = 1e-9
TOL_REL_FLOAT32 = 1e-5
# Greedy NMS runs over blocks of ranks of doubling size starting here (nms_rotated_numpy): small enough that
# the first block holds few duplicates, large enough that ~log2(N / FIRST_CHUNK) blocks cover N boxes.
FIRST_CHUNK = 256


def tolerance_for(dtype) -> float:
    """The relative geometric tolerance for boxes of ``dtype`` (numpy or torch, named without importing torch):
    :data:`TOL_REL_FLOAT64` for float64, :data:`TOL_REL_FLOAT32` for every lower precision."""
    torch_dtype = type(dtype).__module__.startswith("torch")
    name = str(dtype).removeprefix("torch.") if torch_dtype else np.dtype(dtype).name
    return TOL_REL_FLOAT64 if name == "float64" else TOL_REL_FLOAT32


def _greedy_keep(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Keep mask ``[n]`` of greedy NMS over ranks ``0..n-1`` given edges ``src < dst`` (``IoU > threshold``).

    Rank ``r`` is kept unless an edge comes from a kept rank. Only ranks with outgoing edges are visited, in
    rank order, over plain Python lists: a tight loop of ~10^4 steps costs a few milliseconds, far less than
    a vectorized formulation with one array call per kept box.
    """
    removed = bytearray(n)
    if len(src):
        order = np.argsort(src, kind="stable")
        src, dst = src[order], dst[order]
        starts = np.flatnonzero(np.concatenate(([True], src[1:] != src[:-1])))
        ends = np.append(starts[1:], len(src))
        targets = dst.tolist()
        for head, start, end in zip(src[starts].tolist(), starts.tolist(), ends.tolist()):
            if not removed[head]:
                for j in targets[start:end]:
                    removed[j] = 1
    return np.frombuffer(bytes(removed), dtype=np.uint8) == 0


def _can_suppress(rows: np.ndarray, i: np.ndarray, j: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Cheap exact pre-tests of pairs ``(i [K], j [K])`` of :func:`obbdet.iou.trig_rows` rows: False where the IoU
    certainly cannot exceed the threshold, because the rectangles are separated along one of their four axes
    (separating-axis theorem) or because ``min(area) / max(area)`` (an upper bound of the IoU) is at most the
    threshold."""
    area = rows[:, 2] * rows[:, 3]
    small, large = np.minimum(area[i], area[j]), np.maximum(area[i], area[j])
    possible = small > iou_threshold * large * (1.0 - 1e-9)  # a margin: ties are left to the exact IoU
    i, j = i[possible], j[possible]
    cx, cy, w, h, cos_a, sin_a = rows.T
    ci, si, cj, sj = cos_a[i], sin_a[i], cos_a[j], sin_a[j]
    dx, dy = cx[j] - cx[i], cy[j] - cy[i]
    abs_cos = np.abs(ci * cj + si * sj)
    abs_sin = np.abs(si * cj - ci * sj)
    hwi, hhi, hwj, hhj = w[i] / 2, h[i] / 2, w[j] / 2, h[j] / 2
    separated = np.abs(ci * dx + si * dy) > hwi + hwj * abs_cos + hhj * abs_sin
    separated |= np.abs(ci * dy - si * dx) > hhi + hwj * abs_sin + hhj * abs_cos
    separated |= np.abs(cj * dx + sj * dy) > hwj + hwi * abs_cos + hhi * abs_sin
    separated |= np.abs(cj * dy - sj * dx) > hhj + hwi * abs_sin + hhi * abs_cos
    possible[possible] = ~separated
    return possible


def _suppressing_pairs(rows: np.ndarray, i: np.ndarray, j: np.ndarray, iou_threshold: float, tol_rel: float):
    """The pairs ``(i, j)`` (candidate index arrays into ``rows [N, 6]``) with ``IoU > iou_threshold``."""
    possible = _can_suppress(rows, i, j, iou_threshold)
    i, j = i[possible], j[possible]
    # the intersection of box_iou_rotated (and of the evaluation's rotated pairs): one value per pair
    inter = intersection_area_pairs(rows, rows, i, j, tol_rel=tol_rel)
    area = rows[:, 2] * rows[:, 3]
    union = area[i] + area[j] - inter  # > 0: both boxes have positive area
    # the IoU itself is compared (not inter > t * union), with box_iou_rotated's formula, so ties at the threshold
    # go as its values would; the GPU kernel compares the same way
    suppress = inter / union > iou_threshold
    return i[suppress], j[suppress]


def _suppressed_by(rows: np.ndarray, aabb: np.ndarray, labels, kept: np.ndarray, chunk: np.ndarray,
                   iou_threshold: float, tol_rel: float) -> np.ndarray:
    """Mask ``[len(chunk)]``: which ranks of ``chunk`` a box of ``kept`` (all of higher rank) suppresses."""
    suppressed = np.zeros(len(chunk), dtype=bool)
    if not len(kept) or not len(chunk):
        return suppressed
    # kept x chunk only: pairs among the kept boxes were settled before
    i, j = aabb_overlap_pairs(aabb[kept], aabb[chunk], None if labels is None else labels[kept],
                              None if labels is None else labels[chunk])
    i, j = kept[i], chunk[j]
    if len(i):
        _, j = _suppressing_pairs(rows, i, j, iou_threshold, tol_rel)
        suppressed[np.searchsorted(chunk, j)] = True
    return suppressed


def _greedy_within(rows: np.ndarray, aabb: np.ndarray, labels, ranks: np.ndarray, iou_threshold: float,
                   tol_rel: float) -> np.ndarray:
    """Greedy NMS among ``ranks`` (ascending, i.e. by descending score) alone: the kept ranks."""
    i, j = aabb_overlap_pairs(aabb[ranks], None, None if labels is None else labels[ranks])  # i < j: rank order
    if len(i):
        gi, gj = _suppressing_pairs(rows, ranks[i], ranks[j], iou_threshold, tol_rel)
        # back to local indices (ranks is sorted)
        i, j = np.searchsorted(ranks, gi), np.searchsorted(ranks, gj)
    return ranks[_greedy_keep(len(ranks), i, j)]


def nms_rotated_numpy(boxes, scores, iou_threshold: float, labels=None, max_output: int | None = None,
                      tol_rel: float = TOL_REL_FLOAT64, first_chunk: int = FIRST_CHUNK):
    """Greedy rotated NMS on the CPU (float64, exact). Inputs are assumed valid (:func:`obbdet.nms.nms_rotated`
    checks them).

    Args:
        boxes: ``[N, 5]`` xywha array-like; scores: ``[N]``; labels: optional ``[N]`` integer classes (pairs of
            different classes never suppress each other).
        iou_threshold: suppress when ``IoU > iou_threshold``.
        max_output: keep at most this many (the highest-scoring survivors).
        tol_rel: geometric tolerance (:data:`TOL_REL_FLOAT64`, or :data:`TOL_REL_FLOAT32` for boxes that were
            float32 or lower before conversion).
        first_chunk: size of the first block of ranks (see below); blocks double from there.

    Returns:
        ``[K]`` int64 numpy indices into ``boxes``, by descending score (stable for ties).

    Detector output is mostly low-scoring near-copies of a few good boxes. Testing every overlapping pair costs
    ``O(cluster size ** 2)`` exact intersections per object, although only pairs with a *kept* box can ever
    suppress anything. So the ranks are taken in blocks of doubling size: a block's boxes are first tested
    against the boxes kept so far (a suppressed box is out at once: a box only loses to a kept box of higher
    rank), then greedy NMS runs among the block's survivors. This is exactly the greedy result, with the exact
    work reduced to about ``N x (kept neighbours)`` pairs.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, BOX_DIM)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    ranked = boxes[order]
    ranked_labels = None
    if labels is not None:  # dense non-negative group ids for the grid keys
        ranked_labels = np.unique(np.asarray(labels).reshape(-1)[order], return_inverse=True)[1].astype(np.int64)
    # zero-area boxes have IoU 0 with everything: they are kept and never take part in a pair
    positive = (ranked[:, 2] > 0) & (ranked[:, 3] > 0)
    keep = ~positive
    active = np.flatnonzero(positive)
    aabb = xywha_to_aabb(ranked)
    rows = trig_rows(ranked)
    kept = np.zeros(0, dtype=np.int64)
    start, size = 0, max(int(first_chunk), 1)
    while start < len(active):
        chunk = active[start:start + size]
        chunk = chunk[~_suppressed_by(rows, aabb, ranked_labels, kept, chunk, iou_threshold, tol_rel)]
        kept = np.concatenate([kept, _greedy_within(rows, aabb, ranked_labels, chunk, iou_threshold, tol_rel)])
        start += size
        size *= 2
    keep[kept] = True
    keep = order[np.flatnonzero(keep)]
    return keep[:max_output] if max_output is not None else keep
