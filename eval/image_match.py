"""Matching of one image, detection by detection, for drawing and error analysis.

``match_image`` applies the same rules as :func:`eval.evaluate` literally (a loop over detections in score
order), so it doubles as the readable reference of the vectorized engine: summed over images, its TP/FP
counts equal the evaluation's at the same threshold (tests check this).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from obbdet.boxes import BOX_DIM, xywha_to_aabb
from obbdet.structures import ImageLabels

from .errors import EXIT_USAGE, EvalInputError
from .matching import IOU_ODM, coco_match_group, exact_axis_aligned_bounds, pair_iou
from .rules import make_rules

TP, FP, IGNORED = "tp", "fp", "ignored"
FP_DUPLICATE = "duplicate"  # its best GT was already matched by a higher-scored detection
FP_LOCALIZATION = "localization"  # overlaps a GT of its class with 0.1 <= IoU < threshold
FP_CLASS = "class"  # overlaps a GT of another class with IoU >= threshold
FP_BACKGROUND = "background"  # none of the above
LOCALIZATION_MIN_IOU = 0.1


@dataclass
class ImageMatch:
    """Per-detection and per-GT outcome of one image at one IoU threshold.

    status ``[D]``: ``'tp'``, ``'fp'`` or ``'ignored'`` (matched a difficult GT), in the detections' input order.
    gt_index ``[D]`` int64: the GT that decided the outcome (the matched one for tp/ignored, the best GT of the
        same class for fp), -1 when none overlaps. Indices refer to the input GT list.
    iou ``[D]`` float64: IoU with ``gt_index`` (0 when -1).
    fp_kind ``[D]``: ``''`` for tp/ignored, else ``'duplicate'``, ``'localization'``, ``'class'``, ``'background'``.
    gt_matched ``[G]`` bool: GT matched by a TP. gt_det_index ``[G]`` int64: that detection (-1).
    gt_ignored ``[G]`` bool: difficult or ``ignore`` GT (never counted as missed).
    """

    iou_threshold: float
    status: np.ndarray
    gt_index: np.ndarray
    iou: np.ndarray
    fp_kind: np.ndarray
    gt_matched: np.ndarray
    gt_det_index: np.ndarray
    gt_ignored: np.ndarray

    @property
    def tp(self) -> np.ndarray:
        return self.status == TP

    @property
    def fp(self) -> np.ndarray:
        return self.status == FP

    @property
    def missed(self) -> np.ndarray:
        """``[G]`` bool: GT that count as positives and were not matched (false negatives)."""
        return ~self.gt_matched & ~self.gt_ignored


def _axis(labels: ImageLabels) -> np.ndarray:
    if labels.aabb is not None:
        return np.asarray(labels.aabb, dtype=np.float64).reshape(-1, 4)
    return exact_axis_aligned_bounds(labels.boxes)


def _iou_matrix(gt: ImageLabels, det: ImageLabels, mode: str) -> np.ndarray:
    """IoU ``[G, D]`` of every GT/detection pair under the IoU convention ``mode``."""
    n_gt, n_det = len(gt), len(det)
    gt_boxes = np.asarray(gt.boxes, dtype=np.float64).reshape(-1, BOX_DIM)
    det_boxes = np.asarray(det.boxes, dtype=np.float64).reshape(-1, BOX_DIM)
    gt_axis, det_axis = _axis(gt), _axis(det)
    if mode == IOU_ODM and (np.isnan(gt_axis[:, 0]).any() or np.isnan(det_axis[:, 0]).any()):
        raise EvalInputError("compat 'odm' needs axis-aligned boxes", EXIT_USAGE)
    # exact IoU only for pairs whose bounds overlap (dense scenes: a few per detection, not G x D);
    # the +1 pixel convention makes boxes up to one pixel apart overlap
    slack = 1.0 if mode == IOU_ODM else 0.0
    gt_bounds, det_bounds = xywha_to_aabb(gt_boxes), xywha_to_aabb(det_boxes)
    overlap = ((gt_bounds[:, None, 0] <= det_bounds[None, :, 2] + slack)
               & (det_bounds[None, :, 0] <= gt_bounds[:, None, 2] + slack)
               & (gt_bounds[:, None, 1] <= det_bounds[None, :, 3] + slack)
               & (det_bounds[None, :, 1] <= gt_bounds[:, None, 3] + slack))
    gi, dj = np.nonzero(overlap)
    iou = np.zeros((n_gt, n_det))
    iou[gi, dj] = pair_iou(gt_boxes, gt_axis, det_boxes, det_axis, gi, dj, mode)
    return iou


def match_image(gt: ImageLabels, det: ImageLabels, iou_threshold: float = 0.5, compat: str | None = None
                ) -> ImageMatch:
    """Match one image's detections (with scores) to its ground truth at ``iou_threshold``.

    Same rules as :func:`eval.evaluate` with the same ``compat``: by default each detection, in score order
    (stable), takes the GT of its class with the highest IoU (first on ties) whether or not already matched;
    IoU >= t (> t under ``'dota'``) makes it a TP if that GT is unmatched and not difficult, ignored if it
    is difficult, an FP if it was already matched. Under ``'coco'`` it takes the best *unmatched* GT.
    """
    rules = make_rules(compat)
    if det.scores is None:
        raise EvalInputError("match_image: detections need scores", EXIT_USAGE)
    n_gt, n_det = len(gt), len(det)
    difficult = np.asarray(gt.difficult, bool).reshape(n_gt) if n_gt else np.zeros(0, bool)
    dropped = np.asarray(gt.ignore, bool).reshape(n_gt) if gt.ignore is not None and len(gt.ignore) \
        else np.zeros(n_gt, bool)
    gt_classes = np.asarray(gt.classes, dtype=object)
    det_classes = np.asarray(det.classes, dtype=object)
    iou = _iou_matrix(gt, det, rules.iou_mode) if n_gt and n_det else np.zeros((n_gt, n_det))
    iou[dropped, :] = 0.0
    same_class = (gt_classes[:, None] == det_classes[None, :]) & ~dropped[:, None] if n_gt and n_det \
        else np.zeros((n_gt, n_det), bool)
    order = np.argsort(-np.asarray(det.scores, dtype=np.float64), kind="stable")

    status = np.full(n_det, FP, dtype=object)
    gt_index = np.full(n_det, -1, dtype=np.int64)
    det_iou = np.zeros(n_det)
    gt_det_index = np.full(n_gt, -1, dtype=np.int64)
    t = float(iou_threshold)
    if rules.matching == "coco":
        _coco_image(iou, same_class, det_classes, difficult, order, t, rules.main_max_dets, status, gt_index,
                    det_iou, gt_det_index)
    else:
        for d in order:
            masked = np.where(same_class[:, d], iou[:, d], -1.0)
            if n_gt == 0 or masked.max() <= 0:
                continue
            g = int(np.argmax(masked))  # first maximum: first on ties
            gt_index[d], det_iou[d] = g, masked[g]
            passes = masked[g] > t if rules.strict_iou else masked[g] >= t
            if not passes:
                continue
            if difficult[g]:
                status[d] = IGNORED
            elif gt_det_index[g] < 0:
                status[d] = TP
                gt_det_index[g] = d
    fp_kind = _fp_kinds(status, gt_index, det_iou, gt_det_index, iou, same_class, t, rules.strict_iou)
    return ImageMatch(t, status.astype(str), gt_index, det_iou, fp_kind, gt_det_index >= 0, gt_det_index,
                      difficult | dropped)


def _coco_image(iou, same_class, det_classes, difficult, order, t, max_det, status, gt_index, det_iou,
                gt_det_index) -> None:
    """pycocotools matching per class (difficult GT: ignored and reusable), at most ``max_det`` per class."""
    per_class: dict[str, list[int]] = {}
    for d in order:
        per_class.setdefault(det_classes[d], []).append(int(d))
    for dets in per_class.values():
        if max_det is not None and len(dets) > max_det:
            for d in dets[max_det:]:
                status[d] = IGNORED  # beyond maxDets: not evaluated
            dets = dets[:max_det]
        gts = np.flatnonzero(same_class[:, dets[0]]) if iou.shape[0] else np.zeros(0, np.int64)
        if len(gts) == 0:
            continue
        sub = iou[np.ix_(gts, dets)].T  # [D, G]
        m_gt, _ = coco_match_group(sub, difficult[gts], difficult[gts], np.array([t]))
        for k, d in enumerate(dets):
            local = int(m_gt[0, k])
            if local < 0:
                row = sub[k]
                if row.max() > 0:
                    gt_index[d], det_iou[d] = int(gts[int(np.argmax(row))]), float(row.max())
                continue
            g = int(gts[local])
            gt_index[d], det_iou[d] = g, float(sub[k, local])
            if difficult[g]:
                status[d] = IGNORED
            else:
                status[d] = TP
                gt_det_index[g] = d


def _fp_kinds(status, gt_index, det_iou, gt_det_index, iou, same_class, t, strict) -> np.ndarray:
    kinds = np.full(len(status), "", dtype=object)
    for d in np.flatnonzero(status == FP):
        g = gt_index[d]
        passes = det_iou[d] > t if strict else det_iou[d] >= t
        if g >= 0 and passes and gt_det_index[g] >= 0 and gt_det_index[g] != d:
            kinds[d] = FP_DUPLICATE
        elif g >= 0 and det_iou[d] >= LOCALIZATION_MIN_IOU:
            kinds[d] = FP_LOCALIZATION
        elif iou.shape[0] and np.any(iou[~same_class[:, d], d] > t if strict else iou[~same_class[:, d], d] >= t):
            kinds[d] = FP_CLASS
        else:
            kinds[d] = FP_BACKGROUND
    return kinds.astype(str) if len(kinds) else np.zeros(0, dtype="<U1")
