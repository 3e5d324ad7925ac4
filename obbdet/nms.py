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

Paths, dispatched on the boxes' device (this module validates the input and dispatches):

* CPU (:mod:`obbdet.nms_cpu`, :func:`~obbdet.nms_cpu.nms_rotated_numpy`): float64 numpy, exact and sparse:
  candidate pairs from a uniform grid over the axis-aligned bounds, the exact intersection for those pairs
  only, and a greedy pass over the sparse suppression graph in blocks of ranks of doubling size. Its areas come
  from the project's one rotated intersection (:func:`obbdet.iou.intersection_area_pairs`, the tolerance above
  being its ``tol_rel``) and its IoU from :func:`obbdet.iou.box_iou_rotated`'s formula, so wherever the
  tolerance does not act a tie at the threshold is decided as ``box_iou_rotated`` (and the evaluation) see it.
* CUDA (:mod:`obbdet.nms_triton`): a Triton kernel writes the suppression bitmask in blocks of boxes with
  an exact intersection in registers, at the same tolerances; a second single-program kernel runs the greedy
  reduction on the device, so the host syncs a fixed number of times per call, never once per box.

Why not torchvision/mmcv: torchvision's NMS is axis-aligned only; mmcv's rotated NMS is a compiled C++/CUDA
extension (not available here).

Module layout: this dispatcher imports :mod:`obbdet.nms_cpu` and, for CUDA tensors only, :mod:`obbdet.nms_triton`;
the Triton module imports the CPU one (tolerances, and its fallback for masks too large for the device) and
never this one, so the three form no import cycle.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from obbdet.boxes import BOX_DIM
from obbdet.nms_cpu import nms_rotated_numpy, tolerance_for

logger = logging.getLogger(__name__)

__all__ = ["nms_rotated", "batched_nms_rotated"]

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
# Public API
# ---------------------------------------------------------------------------------------------------

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
