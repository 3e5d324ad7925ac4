"""Rotated non-maximum suppression with the exact IoU of rotated rectangles, on CPU and GPU.

Boxes are ``xywha`` rows ``[cx, cy, w, h, a]`` (pixels; ``a`` in radians from +x towards +y, clockwise on
screen). The le90 normalization is not required: any angle and either side order describe the same
rectangle, so a square box at ``a`` and at ``a + pi/2`` (or a box at +90 and at -90 degrees) is one box.

Semantics (shared by every path):

* Boxes are visited by descending score; ties keep the input order (a stable sort). A box is kept unless a
  kept box of higher rank overlaps it with ``IoU > iou_threshold`` (strictly greater, as in torchvision).
* ``iou_threshold = 1.0`` suppresses nothing: the IoU never exceeds 1, and exact duplicates have IoU exactly 1,
  so they are all kept. ``iou_threshold = 0.0`` suppresses every box that overlaps a kept box with positive
  area; boxes that only touch (shared edge or corner) have IoU 0 and are kept.
* Geometry is resolved to a relative tolerance: ``1e-9`` for float64 boxes, ``1e-5`` for float32 (and lower)
  boxes, on every device. Relative angles within it of a multiple of 90 degrees are that multiple (so float32
  boxes at +-pi/2 and at 0 have parallel edges), and intersections below it times the square of the pair's
  largest half side count as zero, so touching boxes never suppress each other through rounding noise.
* Zero-area boxes (``w == 0`` or ``h == 0``) have IoU 0 with everything: they are kept and never suppress.

Paths, dispatched on the boxes' device:

* CPU (:func:`nms_rotated_numpy`): float64, exact. Candidate pairs come from a uniform grid over the
  axis-aligned bounds (:func:`obbdet.pairs.aabb_overlap_pairs`, the class part of the grid key; no ``N x N``
  matrix: 20k boxes stay sparse), the exact intersection is computed for those pairs only, vectorized, and
  the greedy pass walks the sparse suppression graph. Ranks are taken in blocks of doubling size, each tested
  first against the boxes already kept, so the many low-scoring copies of a detection cost one test against
  their kept neighbours, not one against each other. Numpy rather than torch ops: the per-call overhead of
  ~100 small array ops is what decides the 1k-box time.
* CUDA (:mod:`obbdet.nms_triton`): a Triton kernel writes the suppression bitmask in blocks of boxes with
  an exact intersection in registers, at the same tolerances; a second single-program kernel runs the greedy
  reduction on the device, so the host syncs a fixed number of times per call, never once per box.

Why not torchvision/mmcv: torchvision's NMS is axis-aligned only; mmcv's rotated NMS is a compiled C++/CUDA
extension (not available here). The CPU path's areas come from the project's one rotated intersection,
:func:`obbdet.iou.intersection_area_pairs` (the tolerance above is its ``tol_rel``), and its IoU from
:func:`obbdet.iou.box_iou_rotated`'s formula: wherever the tolerance does not act, the IoU NMS compares for a
pair (in rank order) is bit for bit the one ``box_iou_rotated`` and the evaluation report, so a tie at the
threshold is decided the same way everywhere.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from obbdet.boxes import BOX_DIM, xywha_to_aabb
from obbdet.iou import intersection_area_pairs, trig_rows
from obbdet.pairs import aabb_overlap_pairs

logger = logging.getLogger(__name__)

__all__ = ["nms_rotated", "batched_nms_rotated", "nms_rotated_numpy"]

# Geometric tolerance, relative to the largest half side of a pair: relative angles this close to a multiple
# of 90 degrees and edges this close to each other make one shared edge; intersections below its square (times
# that half side squared) are round-off. Float64 input is resolved at 1e-9. Lower-precision input is resolved
# at float32's resolution on every device (a float32 angle cannot tell pi/2 from its float32 neighbour, 4e-8
# away), so the CPU path and the float32 GPU kernel return the same keep sets.
TOL_REL_FLOAT64 = 1e-9
TOL_REL_FLOAT32 = 1e-5
# Greedy NMS runs over blocks of ranks of doubling size starting here (nms_rotated_numpy): small enough that
# the first block holds few duplicates, large enough that ~log2(N / FIRST_CHUNK) blocks cover N boxes.
FIRST_CHUNK = 256
_MAX_REPORTED_INDICES = 5


# ---------------------------------------------------------------------------------------------------
# Input validation (shared by every path)
# ---------------------------------------------------------------------------------------------------

def _as_tensor(x, name: str, fn: str) -> torch.Tensor:
    if torch.is_tensor(x):
        return x
    try:
        return torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{fn}: {name} must be a tensor or array, got {type(x).__name__}") from exc


def _check_threshold(fn: str, iou_threshold) -> float:
    try:
        threshold = float(iou_threshold)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{fn}: iou_threshold must be a number in [0, 1], got {iou_threshold!r}") from exc
    if not 0.0 <= threshold <= 1.0:  # also rejects NaN
        raise ValueError(f"{fn}: iou_threshold must be in [0, 1], got {iou_threshold!r}")
    return threshold


def _check_max_output(fn: str, max_output):
    if max_output is None:
        return None
    if isinstance(max_output, bool) or not isinstance(max_output, (int, np.integer)) or max_output < 0:
        raise ValueError(f"{fn}: max_output must be None or a non-negative int, got {max_output!r}")
    return int(max_output)


def _validate(fn: str, boxes, scores, labels, iou_threshold, max_output):
    """Check shapes, dtypes, devices and arguments (no data is read). Returns the tensors and arguments."""
    boxes = _as_tensor(boxes, "boxes", fn)
    scores = _as_tensor(scores, "scores", fn)
    if boxes.ndim != 2 or boxes.shape[1] != BOX_DIM:
        raise ValueError(f"{fn}: boxes must have shape [N, {BOX_DIM}] (cx, cy, w, h, a), got {tuple(boxes.shape)}")
    n = boxes.shape[0]
    if scores.shape != (n,):
        raise ValueError(f"{fn}: scores must have shape [{n}] to match boxes, got {tuple(scores.shape)}")
    for name, t in (("boxes", boxes), ("scores", scores)):
        if t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"{fn}: {name} must be real numbers, got {t.dtype}")
    if labels is not None:
        labels = _as_tensor(labels, "labels", fn)
        if labels.shape != (n,):
            raise ValueError(f"{fn}: labels must have shape [{n}] to match boxes, got {tuple(labels.shape)}")
        if labels.is_floating_point() or labels.is_complex():
            raise ValueError(f"{fn}: labels must be integers, got {labels.dtype}")
    devices = {t.device for t in (boxes, scores, labels) if t is not None}
    if len(devices) > 1:
        raise ValueError(f"{fn}: boxes, scores and labels must be on one device, got {sorted(map(str, devices))}")
    return boxes, scores, labels, _check_threshold(fn, iou_threshold), _check_max_output(fn, max_output)


def _bad_rows_message(fn: str, bad: np.ndarray, what: str) -> str:
    idx = np.flatnonzero(bad)
    shown = ", ".join(str(i) for i in idx[:_MAX_REPORTED_INDICES].tolist())
    more = ", ..." if len(idx) > _MAX_REPORTED_INDICES else ""
    return f"{fn}: {len(idx)} {what} (indices [{shown}{more}]); nothing is dropped silently: fix or filter them first"


def _check_values_numpy(fn: str, boxes: np.ndarray, scores: np.ndarray) -> None:
    """NaN/inf boxes or scores and negative sizes are errors, reported with their count and indices."""
    bad_box = ~np.isfinite(boxes).all(axis=1)
    if bad_box.any():
        raise ValueError(_bad_rows_message(fn, bad_box, "box(es) with NaN or infinite coordinates"))
    bad_score = ~np.isfinite(scores)
    if bad_score.any():
        raise ValueError(_bad_rows_message(fn, bad_score, "NaN or infinite score(s)"))
    negative = (boxes[:, 2:4] < 0).any(axis=1)
    if negative.any():
        raise ValueError(_bad_rows_message(fn, negative, "box(es) with a negative width or height"))


def _check_values_torch(fn: str, boxes: torch.Tensor, scores: torch.Tensor) -> None:
    """:func:`_check_values_numpy` for device tensors, with one host sync when the input is valid."""
    boxes, scores = boxes.detach(), scores.detach()
    bad = (~torch.isfinite(boxes).all(dim=1)) | (~torch.isfinite(scores)) | (boxes[:, 2:4] < 0).any(dim=1)
    if bool(bad.any()):
        _check_values_numpy(fn, _to_numpy(boxes, np.float64), _to_numpy(scores, np.float64))


def _to_numpy(t: torch.Tensor, dtype) -> np.ndarray:
    """A host numpy copy (or view) of ``t`` in ``dtype``."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return np.asarray(t.numpy(), dtype=dtype)


# ---------------------------------------------------------------------------------------------------
# Greedy pass over the sparse suppression graph
# ---------------------------------------------------------------------------------------------------

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
    # the intersection of box_iou_rotated (and so of the evaluation): one implementation, one value per pair
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
    """Greedy rotated NMS on the CPU (float64, exact). Inputs are assumed valid (see :func:`nms_rotated`).

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
    n = len(boxes)
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


# ---------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------

def tolerance_for(dtype: torch.dtype) -> float:
    """The relative geometric tolerance for boxes of ``dtype`` (see the module notes)."""
    return TOL_REL_FLOAT64 if dtype == torch.float64 else TOL_REL_FLOAT32


def _dispatch(fn: str, boxes, scores, labels, iou_threshold, max_output) -> torch.Tensor:
    boxes, scores, labels, threshold, max_output = _validate(fn, boxes, scores, labels, iou_threshold, max_output)
    device = boxes.device
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    if device.type == "cuda":
        from obbdet.nms_triton import nms_rotated_triton, triton_available

        if triton_available():
            _check_values_torch(fn, boxes, scores)
            return nms_rotated_triton(boxes, scores, threshold, labels=labels, max_output=max_output)
        logger.warning("%s: triton is not importable; running the CPU path for CUDA tensors", fn)
    # CPU: checks and everything else in numpy (zero-copy for float64), free of torch's per-op overhead
    boxes_np, scores_np = _to_numpy(boxes, np.float64), _to_numpy(scores, np.float64)
    _check_values_numpy(fn, boxes_np, scores_np)
    labels_np = _to_numpy(labels, np.int64) if labels is not None else None
    keep = nms_rotated_numpy(boxes_np, scores_np, threshold, labels=labels_np, max_output=max_output,
                             tol_rel=tolerance_for(boxes.dtype))
    return torch.from_numpy(keep).to(device)


def nms_rotated(boxes, scores, iou_threshold: float, max_output: int | None = None) -> torch.Tensor:
    """Greedy non-maximum suppression of rotated boxes with the exact rotated IoU.

    Args:
        boxes: ``[N, 5]`` float tensor of ``xywha`` boxes ``[cx, cy, w, h, a]`` (pixels, radians from +x
            towards +y; any angle range). CPU or CUDA. Float64 boxes are resolved to a relative tolerance of
            1e-9, lower precisions to 1e-5 (module notes).
        scores: ``[N]`` real tensor on the same device.
        iou_threshold: in ``[0, 1]``; a box is suppressed when its IoU with a kept, higher-scoring box is
            strictly greater (``1.0`` suppresses nothing, ``0.0`` any positive-area overlap).
        max_output: keep at most this many boxes (the highest-scoring survivors); ``None`` keeps all.

    Returns:
        ``[K]`` int64 tensor of indices into ``boxes``, on the boxes' device, sorted by descending score
        (ties in input order).

    Raises:
        ValueError: wrong shapes or devices, NaN/infinite boxes or scores, negative sizes (with their count and
            indices), ``iou_threshold`` outside ``[0, 1]``, a negative ``max_output``.
    """
    return _dispatch("nms_rotated", boxes, scores, None, iou_threshold, max_output)


def batched_nms_rotated(boxes, scores, labels, iou_threshold: float, max_output: int | None = None) -> torch.Tensor:
    """Class-aware :func:`nms_rotated`: boxes of different ``labels`` never suppress each other.

    Args:
        boxes: ``[N, 5]`` xywha tensor; scores: ``[N]``; labels: ``[N]`` integer class ids (same device).
        iou_threshold, max_output: as in :func:`nms_rotated` (``max_output`` caps the total, over all classes).

    Returns:
        ``[K]`` int64 indices into ``boxes``, by descending score over all classes (ties in input order).

    The class condition is part of the pair test itself (no per-class coordinate offsets, which lose
    precision on large images).
    """
    if labels is None:
        raise ValueError("batched_nms_rotated: labels are required (use nms_rotated for class-agnostic NMS)")
    return _dispatch("batched_nms_rotated", boxes, scores, labels, iou_threshold, max_output)
