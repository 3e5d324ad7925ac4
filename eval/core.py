"""The evaluation engine: one flattened data set, one set of rules, any number of box settings.

A *setting* is a pair of factors applied to every detection before matching: the short side (width) times
``width_scale`` and the long side (length) times ``length_scale`` (centre and angle kept). For each
setting the engine computes the candidate pairs' IoU once; then, for every threshold, the TP/FP flags of all
detections (rank order: stable sort by score, ties in reading order) and each class's AP.

Candidate pairs (same image, same class, overlapping bounds) are computed once for the largest factors in
use: shrinking or growing a box about its centre by at most those factors keeps its bounds inside the bounds
at those factors, so the pairs are a superset for every setting.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from obbdet.boxes import scale_xywha_sides
from obbdet.pairs import aabb_overlap_pairs

from .ap import average_precision, precision_recall
from .data import Dataset
from .errors import EXIT_BAD_INPUT, EXIT_USAGE, EvalInputError
from .matching import (
    IOU_ODM, GreedyMatcher, best_gt_per_det, bounding_aabb, coco_match_group, exact_axis_aligned_bounds, pair_iou,
)
from .rules import Rules, summary_key, threshold_key

# COCO area ranges (pixels^2, both ends inclusive as in pycocotools), applied to OBB areas (w * h)
AREA_RANGES = {"all": (0.0, 1e10), "small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2),
               "large": (96.0 ** 2, 1e10)}
_PAIR_MARGIN = 1e-6  # pixels added to candidate bounds: pairs are a superset, IoU decides


@dataclass
class ClassStats:
    """One class at one threshold: AP (fraction), final TP and FP counts, positives, detections, and the
    operating point: the best F1 over score thresholds and the lowest score kept there (None without
    detections or positives)."""

    ap: float
    tp: int
    fp: int
    gt: int
    det: int
    f1: float = 0.0
    f1_score: float | None = None

    def as_dict(self) -> dict:
        return {"ap": self.ap, "tp": self.tp, "fp": self.fp, "gt": self.gt, "det": self.det, "f1": self.f1,
                "f1_score": self.f1_score}


def best_f1(recall: np.ndarray, precision: np.ndarray, scores: np.ndarray) -> tuple[float, float | None]:
    """``(F1, score threshold)`` of the best operating point along one class's ranked detections ``[D]``.

    Keeping the detections scoring at least the threshold gives that F1. Ties in score share one cut: only
    the last detection of a run of equal scores is a valid cut.
    """
    if len(recall) == 0:
        return 0.0, None
    f1 = 2 * precision * recall / np.maximum(precision + recall, np.finfo(np.float64).eps)
    valid = np.ones(len(scores), bool)
    valid[:-1] = scores[1:] != scores[:-1]
    best = int(np.argmax(np.where(valid, f1, -1.0)))
    return float(f1[best]), (float(scores[best]) if f1[best] > 0 else None)


@dataclass
class SettingResult:
    """Results of one box setting: mAP per threshold key (and the summary key), per-class stats."""

    width_scale: float
    length_scale: float
    label: str
    map: dict[str, float]
    per_class: dict[str, dict[str, ClassStats]]
    curves: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] | None = field(default=None, repr=False)

    @property
    def summary(self) -> float:
        return self.map[list(self.map)[-1]]

    def as_dict(self) -> dict:
        return {"label": self.label, "width_scale": self.width_scale, "length_scale": self.length_scale,
                "map": dict(self.map),
                "per_class": {c: {k: s.as_dict() for k, s in v.items()} for c, v in self.per_class.items()}}


def setting_label(width_scale: float, length_scale: float) -> str:
    label = f"w={width_scale:.3f}"
    return label if length_scale == 1.0 else f"{label} l={length_scale:.3f}"


def scale_boxes(boxes: np.ndarray, width_scale: float, length_scale: float) -> np.ndarray:
    """:func:`obbdet.boxes.scale_xywha_sides` (short side times ``width_scale``, long side times
    ``length_scale``), with a factor that is not positive reported as a usage error."""
    try:
        return scale_xywha_sides(boxes, width_scale, length_scale)
    except ValueError as exc:
        raise EvalInputError(str(exc), EXIT_USAGE) from exc


class Evaluator:
    """Evaluates one :class:`Dataset` under one :class:`Rules` at the given IoU thresholds."""

    def __init__(self, data: Dataset, rules: Rules, thresholds: np.ndarray):
        self.data = data
        self.rules = rules
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.keys = [threshold_key(t) for t in self.thresholds]
        self.summary_key = summary_key(self.thresholds)
        gt, det = data.gt, data.det
        n_cls = len(data.classes)
        if rules.iou_mode == IOU_ODM:
            _require_axis_aligned(data)
        self.gt_group = gt.image * n_cls + gt.cls
        self.det_group = det.image * n_cls + det.cls
        self.rank = np.argsort(-det.scores, kind="stable")  # rank order: score desc, ties in reading order
        cls_r = det.cls[self.rank]
        self.by_cls = np.argsort(cls_r, kind="stable")  # rank positions grouped by class
        self.cls_bounds = np.searchsorted(cls_r[self.by_cls], np.arange(n_cls + 1))
        self.npos = np.bincount(gt.cls[~gt.difficult], minlength=n_cls)
        self.det_count = np.bincount(det.cls, minlength=n_cls)
        self.in_map = np.ones(n_cls, bool) if rules.map_all_classes else self.npos > 0
        self.group_rank_r = _rank_within_groups(self.det_group[self.rank])  # rank inside (image, class)
        self._pairs_cache: dict[tuple[float, float], tuple[np.ndarray, np.ndarray]] = {}
        self.envelope = (1.0, 1.0)

    # -- candidate pairs and IoU ----------------------------------------------------------------------

    def set_envelope(self, max_width_scale: float, max_length_scale: float) -> None:
        """Largest factors that will be evaluated (candidate pairs are computed for them)."""
        self.envelope = (max(float(max_width_scale), 1e-9), max(float(max_length_scale), 1e-9))

    def _pairs(self) -> tuple[np.ndarray, np.ndarray]:
        if self.envelope not in self._pairs_cache:
            det = self.data.det
            boxes = scale_boxes(det.boxes, *self.envelope)
            exact = det.axis if self.envelope == (1.0, 1.0) else exact_axis_aligned_bounds(boxes)
            det_bounds = bounding_aabb(boxes, exact)
            det_bounds[:, :2] -= _PAIR_MARGIN
            det_bounds[:, 2:] += _PAIR_MARGIN
            gt_bounds = bounding_aabb(self.data.gt.boxes, self.data.gt.axis)
            # touching bounds count: under the "+1 pixel" box IoU, boxes that only touch overlap
            self._pairs_cache[self.envelope] = aabb_overlap_pairs(gt_bounds, det_bounds, self.gt_group,
                                                                  self.det_group, touching=True)
        return self._pairs_cache[self.envelope]

    def scaled_detections(self, width_scale: float, length_scale: float) -> tuple[np.ndarray, np.ndarray]:
        """(boxes ``[D, 5]``, exact axis-aligned bounds ``[D, 4]``) of the detections at a setting."""
        det = self.data.det
        if width_scale == 1.0 and length_scale == 1.0:
            return det.boxes, det.axis
        if width_scale > self.envelope[0] + 1e-12 or length_scale > self.envelope[1] + 1e-12:
            raise ValueError(f"setting ({width_scale}, {length_scale}) exceeds the pair envelope {self.envelope}")
        boxes = scale_boxes(det.boxes, width_scale, length_scale)
        return boxes, exact_axis_aligned_bounds(boxes)

    def pair_ious(self, width_scale: float, length_scale: float):
        """(gt index ``[K]``, det index ``[K]``, IoU ``[K]``) of the candidate pairs at a setting.

        An overflow or a non-finite IoU is an error naming the first pair concerned, never a pair silently
        left unmatched (which would lower the metric without a word)."""
        gi, dj = self._pairs()
        boxes, axis = self.scaled_detections(width_scale, length_scale)
        gt = self.data.gt
        try:
            with np.errstate(over="raise"):
                iou = pair_iou(gt.boxes, gt.axis, boxes, axis, gi, dj, self.rules.iou_mode)
        except FloatingPointError as exc:
            raise self._overflow(gi, dj, None, str(exc)) from None
        bad = ~np.isfinite(iou)
        if bad.any():
            raise self._overflow(gi, dj, int(np.flatnonzero(bad)[0]), "IoU is not finite")
        return gi, dj, iou

    def _overflow(self, gi: np.ndarray, dj: np.ndarray, k: int | None, what: str) -> EvalInputError:
        """The error for numbers the IoU cannot be computed from; names the pair (``k``) or the largest box."""
        gt, det = self.data.gt, self.data.det
        if k is None:  # which pair overflowed is not known: name the detection or GT with the largest numbers
            det_top = int(np.argmax(np.abs(det.boxes[:, :4]).max(1))) if len(det) else 0
            gt_top = int(np.argmax(np.abs(gt.boxes[:, :4]).max(1))) if len(gt) else 0
            k_det = np.flatnonzero(dj == det_top)
            k = int(k_det[0]) if len(k_det) else int(np.flatnonzero(gi == gt_top)[0]) if len(gi) else None
        if k is None:
            return EvalInputError(f"numeric overflow in the IoU ({what})", EXIT_BAD_INPUT)
        g, d = int(gi[k]), int(dj[k])
        return EvalInputError(
            f"numeric overflow in the IoU ({what}) of image {self.data.images[det.image[d]]!r}: detection object "
            f"#{int(det.obj_index[d])} {det.boxes[d].tolist()} against ground-truth object #{int(gt.obj_index[g])} "
            f"{gt.boxes[g].tolist()}; boxes this large are not image coordinates", EXIT_BAD_INPUT)

    # -- flags per threshold --------------------------------------------------------------------------

    def greedy_matcher(self, width_scale: float, length_scale: float) -> GreedyMatcher:
        gi, dj, iou = self.pair_ious(width_scale, length_scale)
        best_gt, best_iou = best_gt_per_det(len(self.data.det), gi, dj, iou)
        return GreedyMatcher(best_gt[self.rank], best_iou[self.rank], self.data.gt.difficult)

    def coco_flags(self, width_scale: float, length_scale: float, area_range=AREA_RANGES["all"],
                   max_det: int | None = None, pairs=None):
        """pycocotools matching: (tp ``[T, D]``, fp ``[T, D]``) bool in rank order, for one area range.

        GT outside the area range (and difficult GT) are ignored; difficult GT may absorb several
        detections (like COCO crowds). Unmatched detections outside the range are ignored.
        """
        gi, dj, iou = pairs if pairs is not None else self.pair_ious(width_scale, length_scale)
        gt, det = self.data.gt, self.data.det
        boxes, _ = self.scaled_detections(width_scale, length_scale)
        low, high = area_range
        gt_area = gt.boxes[:, 2] * gt.boxes[:, 3]
        gt_ignored = gt.difficult | (gt_area < low) | (gt_area > high)
        det_area = boxes[:, 2] * boxes[:, 3]
        det_out = ((det_area < low) | (det_area > high))[self.rank]
        valid = np.ones(len(det), bool) if max_det is None else self.group_rank_r < max_det
        pos_of = np.empty(len(det), np.int64)
        pos_of[self.rank] = np.arange(len(det))
        n_thr = len(self.thresholds)
        matched = np.zeros((n_thr, len(det)), bool)
        matched_ignored = np.zeros((n_thr, len(det)), bool)
        keep = (iou > 0) & valid[pos_of[dj]]
        gi, dj, iou = gi[keep], dj[keep], iou[keep]
        if len(gi):
            group = self.gt_group[gi]
            order = np.lexsort((pos_of[dj], group))
            gi, dj, iou, group = gi[order], dj[order], iou[order], group[order]
            starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
            ends = np.r_[starts[1:], len(group)]
            for s, e in zip(starts.tolist(), ends.tolist()):
                self._coco_group(gi[s:e], pos_of[dj[s:e]], iou[s:e], gt_ignored, gt.difficult, matched,
                                 matched_ignored)
        tp = matched & ~matched_ignored & valid
        fp = ~matched & ~det_out & valid
        return tp, fp

    def _coco_group(self, gi, det_pos, iou, gt_ignored, gt_reusable, matched, matched_ignored) -> None:
        gts, g_local = np.unique(gi, return_inverse=True)  # GT in reading order
        dets, d_local = np.unique(det_pos, return_inverse=True)  # detections in rank order
        ious = np.zeros((len(dets), len(gts)))
        ious[d_local, g_local] = iou
        m_gt, m_ign = coco_match_group(ious, gt_ignored[gts], gt_reusable[gts], self.thresholds)
        matched[:, dets] = m_gt >= 0
        matched_ignored[:, dets] = m_ign

    def threshold_flags(self, width_scale: float, length_scale: float):
        """Yields (threshold index, tp ``[D]``, fp ``[D]``) in rank order under the rules' matching."""
        max_det = self.rules.main_max_dets
        if self.rules.matching == "coco":
            tp_all, fp_all = self.coco_flags(width_scale, length_scale, max_det=max_det)
            for k in range(len(self.thresholds)):
                yield k, tp_all[k], fp_all[k]
            return
        matcher = self.greedy_matcher(width_scale, length_scale)
        valid = None if max_det is None else self.group_rank_r < max_det
        for k, t in enumerate(self.thresholds):
            tp, fp, _ = matcher.flags(float(t), self.rules.strict_iou)
            if valid is not None:
                tp, fp = tp & valid, fp & valid
            yield k, tp, fp

    # -- AP ---------------------------------------------------------------------------------------------

    def class_curves(self, tp: np.ndarray, fp: np.ndarray, npos: np.ndarray | None = None):
        """Per class c: (recall, precision, tp count, fp count, scores), ignored detections removed; the
        arrays ``[D_c]`` follow the class's detections in rank order."""
        npos = self.npos if npos is None else npos
        tp_c, fp_c = tp[self.by_cls], fp[self.by_cls]
        scores_c = self.data.det.scores[self.rank][self.by_cls]
        for c in range(len(self.data.classes)):
            s, e = self.cls_bounds[c], self.cls_bounds[c + 1]
            t, f, sc = tp_c[s:e], fp_c[s:e], scores_c[s:e]
            counted = t | f
            if not counted.all():
                t, f, sc = t[counted], f[counted], sc[counted]
            recall, precision = precision_recall(t, f, int(npos[c]))
            yield c, recall, precision, int(t.sum()), int(f.sum()), sc

    def run_setting(self, width_scale: float = 1.0, length_scale: float = 1.0, *, keep_curves: bool = False,
                    method: str | None = None) -> SettingResult:
        """Evaluate one setting: mAP per threshold and per-class stats."""
        method = method or self.rules.ap_method
        classes = self.data.classes
        per_class = {name: {} for name in classes}
        maps: dict[str, float] = {}
        curves = {} if keep_curves else None
        for k, tp, fp in self.threshold_flags(width_scale, length_scale):
            key = self.keys[k]
            aps = np.zeros(len(classes))
            for c, recall, precision, n_tp, n_fp, scores in self.class_curves(tp, fp):
                ap = average_precision(recall, precision, method) if self.npos[c] > 0 else 0.0
                aps[c] = ap
                f1, f1_score = best_f1(recall, precision, scores) if self.npos[c] > 0 else (0.0, None)
                per_class[classes[c]][key] = ClassStats(ap, n_tp, n_fp, int(self.npos[c]), int(self.det_count[c]),
                                                        f1, f1_score)
                if curves is not None:
                    curves[(classes[c], key)] = (recall, precision)
            maps[key] = float(aps[self.in_map].mean()) if self.in_map.any() else 0.0
        maps[self.summary_key] = float(np.mean([maps[k] for k in self.keys]))
        return SettingResult(width_scale, length_scale, setting_label(width_scale, length_scale), maps,
                             per_class, curves)

    def objective(self, width_scale: float, length_scale: float) -> float:
        """mAP averaged over the thresholds (mAP50-95 for the default thresholds) at one setting."""
        return self.run_setting(width_scale, length_scale).summary

    # -- COCO-style summary -----------------------------------------------------------------------------

    def coco_summary(self, width_scale: float = 1.0, length_scale: float = 1.0) -> dict:
        """AP, AP50, AP75, APs/m/l (101-point, at most ``max(max_dets)`` per image and class) and AR@k.

        Matching follows the rules (COCO's own under ``compat='coco'``, else the default rule with GT
        outside an area range ignored, like difficult GT). Areas are OBB areas. Values are fractions;
        None where no class has ground truth in a range.
        """
        max_dets = self.rules.max_dets
        top = max(max_dets)
        gt = self.data.gt
        gt_area = gt.boxes[:, 2] * gt.boxes[:, 3]
        n_cls = len(self.data.classes)
        boxes, _ = self.scaled_detections(width_scale, length_scale)
        det_area_r = (boxes[:, 2] * boxes[:, 3])[self.rank]
        ap = {name: np.full(len(self.thresholds), np.nan) for name in AREA_RANGES}
        ar = {k: np.full(len(self.thresholds), np.nan) for k in max_dets}
        flags = self._summary_flags(width_scale, length_scale, gt_area, det_area_r)
        valid = self.group_rank_r < top
        cls_r = self.data.det.cls[self.rank]
        for name, (low, high) in AREA_RANGES.items():
            in_range = (gt_area >= low) & (gt_area <= high) & ~gt.difficult
            npos = np.bincount(gt.cls[in_range], minlength=n_cls)
            use = npos > 0
            if not use.any():
                continue
            for k, tp, fp in flags(name):
                values = np.zeros(n_cls)
                for c, recall, precision, _, _, _ in self.class_curves(tp & valid, fp & valid, npos):
                    values[c] = average_precision(recall, precision, "coco") if npos[c] else 0.0
                ap[name][k] = values[use].mean()
                if name != "all":
                    continue
                for max_det in max_dets:
                    tp_k = tp & (self.group_rank_r < max_det)
                    recall = np.bincount(cls_r[tp_k], minlength=n_cls) / np.maximum(npos, 1)
                    ar[max_det][k] = recall[use].mean()
        summary = {"AP": _nanmean(ap["all"])}
        for label, t in (("AP50", 0.5), ("AP75", 0.75)):
            hit = np.flatnonzero(np.abs(self.thresholds - t) < 1e-9)
            summary[label] = None if len(hit) == 0 or np.isnan(ap["all"][hit[0]]) else float(ap["all"][hit[0]])
        summary.update({"APs": _nanmean(ap["small"]), "APm": _nanmean(ap["medium"]), "APl": _nanmean(ap["large"])})
        summary.update({f"AR@{k}": _nanmean(ar[k]) for k in max_dets})
        summary["max_dets"] = list(max_dets)
        summary["area_ranges"] = {k: list(v) for k, v in AREA_RANGES.items()}
        return summary

    def _summary_flags(self, width_scale, length_scale, gt_area, det_area_r):
        """A function: area range name -> iterator of (threshold index, tp [D], fp [D]) in rank order."""
        if self.rules.matching == "coco":
            pairs = self.pair_ious(width_scale, length_scale)

            def coco(name):
                tp_all, fp_all = self.coco_flags(width_scale, length_scale, AREA_RANGES[name],
                                                 max_det=max(self.rules.max_dets), pairs=pairs)
                return ((k, tp_all[k], fp_all[k]) for k in range(len(self.thresholds)))
            return coco
        matcher = self.greedy_matcher(width_scale, length_scale)
        per_threshold = [matcher.flags(float(t), self.rules.strict_iou) for t in self.thresholds]
        safe_gt = np.maximum(matcher.best_gt, 0)

        def greedy(name):
            low, high = AREA_RANGES[name]
            gt_out = (gt_area < low) | (gt_area > high)
            det_out = (det_area_r < low) | (det_area_r > high)
            on_out_gt = (matcher.best_gt >= 0) & gt_out[safe_gt] if len(gt_out) else np.zeros(len(det_out), bool)
            for k, (tp, fp, cand) in enumerate(per_threshold):
                out = cand & on_out_gt
                yield k, tp & ~out, fp & ~out & ~(~cand & det_out)
        return greedy


def _nanmean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else None


def _rank_within_groups(groups_r: np.ndarray) -> np.ndarray:
    """Position of each detection among those of its group, detections given in rank order ``[D]``."""
    if len(groups_r) == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(groups_r, kind="stable")
    sorted_groups = groups_r[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order)) - run_start
    return rank


def _require_axis_aligned(data: Dataset) -> None:
    for what, flat in (("ground truth", data.gt), ("detections", data.det)):
        rotated = np.isnan(flat.axis[:, 0])
        if rotated.any():
            k = int(np.flatnonzero(rotated)[0])
            raise EvalInputError(
                f"--compat odm needs axis-aligned boxes (formats xywh/xyrb); {what} of image "
                f"{data.images[flat.image[k]]!r} object #{int(flat.obj_index[k])} is rotated", EXIT_USAGE)
