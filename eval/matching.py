"""Pairing detections with ground truth: candidate pairs, IoU, and the matching rules.

Everything works on flat arrays over a whole data set (all images and classes at once), so evaluation cost
is a handful of numpy passes rather than a Python loop per detection:

- candidate pairs are every (gt, det) pair of the same group (image and class) whose axis-aligned bounds
  overlap or touch: :func:`obbdet.pairs.aabb_overlap_pairs` with ``touching=True`` (no ``N x M`` matrix; the
  same search NMS and the sparse IoU use).
- :func:`pair_iou` computes those pairs' IoU: exact rotated IoU (``obbdet.iou``, float64), exact box IoU for
  pairs of axis-aligned boxes, or Object-Detection-Metrics' "+1 pixel" box IoU.
- :func:`best_gt_per_det`: under the default rule each detection takes the GT of its image with the highest
  IoU (first on ties) whether or not that GT is already matched, so its best GT and IoU do not depend on the
  threshold or on other detections: computed once per box setting.
- :func:`greedy_flags`: for one threshold, a candidate (best IoU >= t, or > t) is a TP iff it is the first
  candidate of its GT in score order and the GT is not ignored (difficult); later candidates are FPs;
  candidates on ignored GT are ignored. Vectorized: O(D) per threshold.
- :func:`coco_match`: pycocotools' rule (best *unmatched* GT, non-ignored GT preferred), which depends on
  the matching state and so runs sequentially per image and class (vectorized over thresholds).

Boxes are ``xywha`` le90 ``[N, 5]`` float64 (pixels, radians); axis-aligned bounds ``[N, 4]`` are
``[x_min, y_min, x_max, y_max]``, NaN rows where a box is not axis-aligned.
"""
from __future__ import annotations

import math

import numpy as np

from obbdet.boxes import BOX_DIM, xywha_to_aabb

IOU_EXACT = "exact"
IOU_ODM = "aabb_plus1"  # Object-Detection-Metrics: (x2 - x1 + 1) * (y2 - y1 + 1)

# ---------------------------------------------------------------------------------------------------
# Axis-aligned bounds
# ---------------------------------------------------------------------------------------------------

def exact_axis_aligned_bounds(boxes: np.ndarray) -> np.ndarray:
    """``[N, 4]`` exact bounds of boxes ``[N, 5]`` whose angle is exactly 0 or -pi/2 (le90), NaN rows otherwise.

    Used so that IoU of axis-aligned boxes is computed with min/max arithmetic only (exact for the usual
    integer and half-integer coordinates, so an IoU of exactly 0.5 is 0.5, not 0.49999999999999994).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, BOX_DIM)
    cx, cy, w, h, a = (boxes[:, i] for i in range(BOX_DIM))
    flat = a == 0.0
    upright = a == -math.pi / 2
    half_x = np.where(flat, w / 2, np.where(upright, h / 2, np.nan))
    half_y = np.where(flat, h / 2, np.where(upright, w / 2, np.nan))
    return np.stack([cx - half_x, cy - half_y, cx + half_x, cy + half_y], axis=1)


def bounding_aabb(boxes: np.ndarray, exact: np.ndarray | None = None) -> np.ndarray:
    """Axis-aligned bounds ``[N, 4]`` of boxes ``[N, 5]`` for candidate search (``exact`` rows where given)."""
    bounds = xywha_to_aabb(boxes) if len(boxes) else np.zeros((0, 4))
    if exact is not None:
        known = ~np.isnan(exact[:, 0])
        bounds[known] = exact[known]
    return bounds


# ---------------------------------------------------------------------------------------------------
# IoU of pairs
# ---------------------------------------------------------------------------------------------------

def _aabb_pair_iou(a: np.ndarray, b: np.ndarray, plus_one: bool) -> np.ndarray:
    """IoU ``[K]`` of axis-aligned pairs ``a [K, 4]``, ``b [K, 4]``; ``plus_one``: ODM's pixel convention."""
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    if plus_one:
        # Object-Detection-Metrics: boxes intersect iff they overlap or touch; every length gets + 1
        intersects = (iw >= 0) & (ih >= 0)
        inter = np.where(intersects, (iw + 1) * (ih + 1), 0.0)
        area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
        area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    else:
        inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
        area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
        area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter
    positive = union > 0
    return np.where(positive, inter / np.where(positive, union, 1.0), 0.0)


def pair_iou(boxes1: np.ndarray, axis1: np.ndarray, boxes2: np.ndarray, axis2: np.ndarray,
             i: np.ndarray, j: np.ndarray, mode: str = IOU_EXACT) -> np.ndarray:
    """IoU ``[K]`` (float64) of pairs ``(boxes1[i], boxes2[j])``.

    boxes1 ``[N, 5]``, boxes2 ``[M, 5]``: xywha le90. axis1 ``[N, 4]``, axis2 ``[M, 4]``: exact axis-aligned
    bounds, NaN rows for rotated boxes. ``mode='exact'``: exact area ratio (min/max arithmetic when both
    boxes are axis-aligned, else the exact rotated IoU of ``obbdet.iou``). ``mode='aabb_plus1'``:
    Object-Detection-Metrics' box IoU (every box must be axis-aligned).
    """
    if len(i) == 0:
        return np.zeros(0)
    a, b = axis1[i], axis2[j]
    if mode == IOU_ODM:
        return _aabb_pair_iou(a, b, plus_one=True)
    if mode != IOU_EXACT:
        raise ValueError(f"unknown IoU mode {mode!r}")
    both_axis = ~(np.isnan(a[:, 0]) | np.isnan(b[:, 0]))
    if both_axis.all():
        return _aabb_pair_iou(a, b, plus_one=False)
    from obbdet.iou import box_iou_rotated

    iou = np.empty(len(i))
    iou[both_axis] = _aabb_pair_iou(a[both_axis], b[both_axis], plus_one=False)
    rotated = ~both_axis
    iou[rotated] = box_iou_rotated(boxes1[i[rotated]], boxes2[j[rotated]], aligned=True)
    return iou


# ---------------------------------------------------------------------------------------------------
# Default rule
# ---------------------------------------------------------------------------------------------------

def best_gt_per_det(n_det: int, gt_idx: np.ndarray, det_idx: np.ndarray, iou: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Each detection's best GT: highest IoU, lowest GT index on ties. Returns (best_gt [D] int64, best_iou [D]).

    ``(gt_idx, det_idx, iou)`` ``[K]`` are the candidate pairs (any order). Detections with no pair of
    positive IoU get ``best_gt = -1`` and ``best_iou = 0``.
    """
    best_gt = np.full(n_det, -1, dtype=np.int64)
    best_iou = np.zeros(n_det)
    positive = iou > 0
    if not positive.any():
        return best_gt, best_iou
    gt_idx, det_idx, iou = gt_idx[positive], det_idx[positive], iou[positive]
    if len(det_idx) > 1 and np.any(det_idx[1:] < det_idx[:-1]):
        order = np.argsort(det_idx, kind="stable")
        gt_idx, det_idx, iou = gt_idx[order], det_idx[order], iou[order]
    starts = np.flatnonzero(np.r_[True, det_idx[1:] != det_idx[:-1]])
    run_max = np.maximum.reduceat(iou, starts)
    run_of = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(det_idx)]))
    at_max = iou == run_max[run_of]
    first_gt = np.minimum.reduceat(np.where(at_max, gt_idx, np.iinfo(np.int64).max), starts)
    dets = det_idx[starts]
    best_gt[dets] = first_gt
    best_iou[dets] = run_max
    return best_gt, best_iou


def candidates(best_iou: np.ndarray, threshold: float, strict: bool) -> np.ndarray:
    """Mask of detections whose best IoU passes ``threshold`` (``>`` when ``strict``, else ``>=``)."""
    return best_iou > threshold if strict else best_iou >= threshold


class GreedyMatcher:
    """The default rule for detections already in score order (rank order).

    best_gt ``[D]`` int64 (-1: none), best_iou ``[D]`` float64: per detection in rank order.
    gt_ignored ``[G]`` bool: GT whose candidates are ignored (difficult).
    """

    def __init__(self, best_gt: np.ndarray, best_iou: np.ndarray, gt_ignored: np.ndarray):
        self.best_gt = best_gt
        self.best_iou = best_iou
        self.gt_ignored = gt_ignored
        # detections grouped by their best GT, rank order kept inside each group: the first candidate of a
        # GT at any threshold is then the first masked entry of its group (no sort per threshold)
        self._by_gt = np.argsort(best_gt, kind="stable")
        self._gt_sorted = best_gt[self._by_gt]
        safe_gt = np.maximum(best_gt, 0)
        self._on_ignored = (best_gt >= 0) & gt_ignored[safe_gt] if len(gt_ignored) else np.zeros(len(best_gt), bool)

    def flags(self, threshold: float, strict: bool = False
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tp [D], fp [D], candidate [D]) bool in rank order; ignored = candidate on an ignored GT."""
        cand = candidates(self.best_iou, threshold, strict) & (self.best_gt >= 0)
        ignored = cand & self._on_ignored
        real = cand & ~ignored
        sel = self._by_gt[real[self._by_gt]]  # real candidates grouped by GT, rank order inside
        gts = self.best_gt[sel]
        first = np.r_[True, gts[1:] != gts[:-1]] if len(sel) else np.zeros(0, bool)
        tp = np.zeros(len(cand), bool)
        tp[sel[first]] = True
        fp = ~tp & ~ignored
        return tp, fp, cand


# ---------------------------------------------------------------------------------------------------
# COCO rule
# ---------------------------------------------------------------------------------------------------

def coco_match_group(ious: np.ndarray, gt_ignored: np.ndarray, gt_reusable: np.ndarray,
                     thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools ``evaluateImg`` matching of one image and class, vectorized over thresholds.

    ious ``[D, G]`` with detections in score order; gt_ignored ``[G]`` (area out of range or difficult);
    gt_reusable ``[G]`` (may be matched by several detections, like COCO crowds: our difficult GT);
    thresholds ``[T]``. Each detection takes the available GT with the highest IoU >= t (the last one on
    ties, as pycocotools), non-ignored GT preferred over ignored ones.

    Returns (matched_gt ``[T, D]`` int64, -1 when unmatched; its index into the group's GT).
    and matched_ignored ``[T, D]`` bool (matched to an ignored GT).
    """
    n_det, n_gt = ious.shape
    n_thr = len(thresholds)
    matched_gt = np.full((n_thr, n_det), -1, dtype=np.int64)
    matched_ignored = np.zeros((n_thr, n_det), bool)
    if n_gt == 0 or n_det == 0:
        return matched_gt, matched_ignored
    thr = np.minimum(thresholds, 1 - 1e-10)[:, None]  # [T, 1]
    taken = np.zeros((n_thr, n_gt), bool)
    reverse = np.arange(n_gt)[::-1]
    rows = np.arange(n_thr)
    for d in range(n_det):
        row = ious[d]
        ok = ~(taken & ~gt_reusable) & (row >= thr)  # [T, G]
        ok_real = ok & ~gt_ignored
        use = np.where(ok_real.any(1)[:, None], ok_real, ok)
        found = use.any(1)
        if not found.any():
            continue
        score = np.where(use, row, -1.0)[:, reverse]
        best = reverse[np.argmax(score, axis=1)]  # last maximum in GT order
        t_idx = rows[found]
        g_idx = best[found]
        taken[t_idx, g_idx] = True
        matched_gt[t_idx, d] = g_idx
        matched_ignored[t_idx, d] = gt_ignored[g_idx]
    return matched_gt, matched_ignored
