"""TIDE-style error types of oriented-box detections and the mAP each type costs (the computation behind
``tools/error_analysis.py``, whose docstring states the rules), plus the per-box error statistics.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from obbdet.eval.ap import average_precision, precision_recall
from obbdet.structures import ImageLabels
from obbdet.tools.draw_obb import drop_ignored, match_outcomes
from obbdet.tools.labelsets import ToolInputError

ERROR_TYPES = ("classification", "localization", "both", "duplicate", "background", "missed")
SPECIAL_TYPES = ("all FP", "all FN")
_NO_ERROR = ""


# ---------------------------------------------------------------------------------------------------
# Collecting detections and ground truth over the data set
# ---------------------------------------------------------------------------------------------------

@dataclass
class Collected:
    """Flat per-detection and per-GT arrays over all images, detections in reading order.

    Detection fields ``[D]``: class name, score, status (tp/fp/ignored), error type ("" unless fp), target
    GT (global GT index the error points at, -1 none), matched GT (for tp). GT fields ``[G]``: class,
    difficult, found (taken by a TP), targeted (pointed at by a classification/localization error).
    ``tp_pairs``: det and GT boxes ``[P, 5]`` of the true positives; ``fp_boxes`` ``[F, 5]`` and their types.
    """

    det_class: list[str] = field(default_factory=list)
    det_score: list[float] = field(default_factory=list)
    det_status: list[str] = field(default_factory=list)
    det_error: list[str] = field(default_factory=list)
    det_target: list[int] = field(default_factory=list)
    gt_class: list[str] = field(default_factory=list)
    gt_difficult: list[bool] = field(default_factory=list)
    gt_found: list[bool] = field(default_factory=list)
    gt_targeted: list[bool] = field(default_factory=list)
    tp_det_boxes: list[np.ndarray] = field(default_factory=list)
    tp_gt_boxes: list[np.ndarray] = field(default_factory=list)
    fp_boxes: list[np.ndarray] = field(default_factory=list)
    fp_types: list[str] = field(default_factory=list)


def classify_false_positives(det: ImageLabels, gt: ImageLabels, det_status: list[str], det_gt: np.ndarray,
                             det_iou: np.ndarray, fg_iou: float, bg_iou: float) -> tuple[list[str], np.ndarray]:
    """TIDE error type (or "") and target GT index (-1 none) ``[D]`` of one image's detections.

    det_gt / det_iou ``[D]``: the GT each detection was compared with and that IoU (from the matcher; used
    for the same-class IoU so types agree with the matching to the last bit).
    """
    from obbdet.iou import box_iou_rotated

    n_det = len(det)
    types, targets = [_NO_ERROR] * n_det, np.full(n_det, -1, np.int64)
    fp = [i for i, s in enumerate(det_status) if s == "fp"]
    if not fp:
        return types, targets
    if len(gt) == 0:
        return [("background" if s == "fp" else _NO_ERROR) for s in det_status], targets
    iou = box_iou_rotated(det.boxes[fp], gt.boxes)  # [F, G] float64
    same = np.array([[dc == gc for gc in gt.classes] for dc in (det.classes[i] for i in fp)], bool)
    for row, i in enumerate(fp):
        if det_gt[i] >= 0 and same[row, det_gt[i]]:
            iou[row, det_gt[i]] = det_iou[i]
    iou_same, iou_other = np.where(same, iou, -1.0), np.where(same, -1.0, iou)
    for row, i in enumerate(fp):
        types[i], targets[i] = _tide_type(iou_same[row], iou_other[row], fg_iou, bg_iou)
    return types, targets


def _tide_type(iou_same: np.ndarray, iou_other: np.ndarray, fg_iou: float, bg_iou: float) -> tuple[str, int]:
    """One false positive's type from its IoU with same-class and other-class GT ``[G]`` (-1 = not that kind)."""
    other_best, same_best = int(np.argmax(iou_other)), int(np.argmax(iou_same))
    if iou_other[other_best] >= fg_iou:
        return "classification", other_best
    if iou_same[same_best] >= fg_iou:
        return "duplicate", same_best
    if iou_same[same_best] >= bg_iou:
        return "localization", same_best
    if iou_other[other_best] >= bg_iou:
        return "both", other_best
    return "background", -1


def collect(gt_all: dict[str, ImageLabels], det_all: dict[str, ImageLabels], fg_iou: float,
            bg_iou: float, progress: bool = False) -> Collected:
    """Match every image and type every false positive (images in sorted stem order, objects in file order)."""
    from tqdm import tqdm

    c = Collected()
    stems = sorted(set(gt_all) | set(det_all))
    for stem in tqdm(stems, desc="matching", unit="image", leave=False, disable=not progress):
        gt = drop_ignored(gt_all.get(stem)) or ImageLabels()
        det = det_all.get(stem) or ImageLabels(scores=np.zeros(0))
        out = match_outcomes(gt, det, fg_iou)
        types, targets = classify_false_positives(det, gt, out.det_status, out.det_gt, out.det_iou, fg_iou, bg_iou)
        _add_image(c, gt, det, out, types, targets)
    return c


def _add_image(c: Collected, gt: ImageLabels, det: ImageLabels, out, types: list[str], targets: np.ndarray) -> None:
    gt_offset = len(c.gt_class)
    status = np.asarray(out.det_status, dtype=object)
    kinds = np.asarray(types, dtype=object)
    c.gt_class += gt.classes
    c.gt_difficult += gt.difficult.tolist()
    c.gt_found += [s == "matched" for s in out.gt_status]
    targeted = np.zeros(len(gt), bool)
    pointing = (kinds == "classification") | (kinds == "localization")
    if pointing.any():
        targeted[targets[pointing]] = True
    c.gt_targeted += (targeted & ~gt.difficult).tolist()
    c.det_class += det.classes
    c.det_score += np.asarray(det.scores, np.float64).tolist()
    c.det_status += list(out.det_status)
    c.det_error += types
    c.det_target += np.where(targets >= 0, targets + gt_offset, -1).tolist()
    tp, fp = np.flatnonzero(status == "tp"), np.flatnonzero(status == "fp")
    c.tp_det_boxes += list(det.boxes[tp])
    c.tp_gt_boxes += list(gt.boxes[out.det_gt[tp]])
    c.fp_boxes += list(det.boxes[fp])
    c.fp_types += [types[i] for i in fp]


# ---------------------------------------------------------------------------------------------------
# mAP with errors fixed
# ---------------------------------------------------------------------------------------------------

@dataclass
class Breakdown:
    """The result: base mAP, per-type counts and dAP, per-class counts, and per-box statistics."""

    iou_threshold: float
    background_iou: float
    ap_method: str
    base_map: float
    classes: list[str]
    counts: dict[str, int]
    delta_map: dict[str, float]
    per_class_counts: dict[str, dict[str, int]]
    n_detections: int
    n_gt: int
    stats: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"iou_threshold": self.iou_threshold, "background_iou": self.background_iou,
                "ap_method": self.ap_method, "map": self.base_map, "classes": self.classes,
                "counts": self.counts, "delta_map": self.delta_map, "per_class_counts": self.per_class_counts,
                "n_detections": self.n_detections, "n_gt": self.n_gt, "stats": self.stats}


class FixSimulator:
    """Recomputes mAP over the base classes (npos > 0) with one kind of error fixed."""

    def __init__(self, c: Collected, ap_method: str):
        self.c = c
        self.ap_method = ap_method
        self.classes = sorted({name for name, d in zip(c.gt_class, c.gt_difficult) if not d})
        self.class_index = {name: k for k, name in enumerate(self.classes)}
        scores = np.asarray(c.det_score, np.float64)
        self.rank = np.argsort(-scores, kind="stable")  # score descending, reading order on ties
        self.status = np.asarray(c.det_status, dtype=object)
        self.error = np.asarray(c.det_error, dtype=object)
        self.target = np.asarray(c.det_target, np.int64)
        self.det_cls = np.array([self.class_index.get(n, -1) for n in c.det_class], np.int64)
        self.gt_cls = np.array([self.class_index.get(n, -1) for n in c.gt_class], np.int64)
        self.gt_difficult = np.asarray(c.gt_difficult, bool)
        self.gt_found = np.asarray(c.gt_found, bool)
        self.missed = ~self.gt_difficult & ~self.gt_found & ~np.asarray(c.gt_targeted, bool)
        self.npos = np.bincount(self.gt_cls[~self.gt_difficult], minlength=len(self.classes))

    def missed_count(self) -> int:
        return int(self.missed.sum())

    def map(self, fix: str | None = None) -> float:
        """mAP with every error of type ``fix`` fixed (None: as is); see the module docstring."""
        keep = self.status != "ignored"
        tp = self.status == "tp"
        cls = self.det_cls.copy()
        npos = self.npos.copy()
        if fix in ("classification", "localization"):
            self._fix_pointing(fix, keep, tp, cls)
        elif fix in ("both", "duplicate", "background"):
            keep &= self.error != fix
        elif fix == "all FP":
            keep &= self.status != "fp"
        elif fix == "missed":
            npos -= np.bincount(self.gt_cls[self.missed], minlength=len(self.classes))
        elif fix == "all FN":
            npos = np.bincount(self.det_cls[tp & (self.det_cls >= 0)], minlength=len(self.classes))
        elif fix is not None:
            raise ValueError(f"unknown error type {fix!r}")
        return self._mean_ap(keep, tp, cls, npos)

    def _fix_pointing(self, fix: str, keep: np.ndarray, tp: np.ndarray, cls: np.ndarray) -> None:
        """Classification/localization fixes, in score order: take the target GT if free, else vanish."""
        used = self.gt_found.copy()
        for d in self.rank[self.error[self.rank] == fix]:
            g = self.target[d]
            if g >= 0 and not self.gt_difficult[g] and not used[g]:
                used[g] = True
                tp[d], cls[d] = True, self.gt_cls[g]
            else:
                keep[d] = False

    def _mean_ap(self, keep: np.ndarray, tp: np.ndarray, cls: np.ndarray, npos: np.ndarray) -> float:
        if not self.classes:
            return 0.0
        ranked = self.rank[keep[self.rank]]
        aps = []
        for k in range(len(self.classes)):
            sel = ranked[cls[ranked] == k]
            recall, precision = precision_recall(tp[sel], ~tp[sel], int(npos[k]))
            aps.append(average_precision(recall, precision, self.ap_method) if npos[k] > 0 else 0.0)
        return float(np.mean(aps))


def analyze(gt_all: dict[str, ImageLabels], det_all: dict[str, ImageLabels], *, iou_threshold: float = 0.5,
            background_iou: float = 0.1, ap_method: str = "voc", square_ratio: float = 0.9,
            progress: bool = False) -> tuple[Breakdown, Collected]:
    """The TIDE-style breakdown of detections ``det_all`` against ground truth ``gt_all`` (by image stem)."""
    if not 0 <= background_iou < iou_threshold:
        raise ToolInputError(f"--background-iou must be in [0, {iou_threshold}) (below --iou)")
    c = collect(gt_all, det_all, iou_threshold, background_iou, progress=progress)
    sim = FixSimulator(c, ap_method)
    base = sim.map()
    counts = {t: c.fp_types.count(t) for t in ERROR_TYPES[:-1]}
    counts["missed"] = sim.missed_count()
    counts["all FP"] = len(c.fp_types)
    counts["all FN"] = int((~sim.gt_difficult & ~sim.gt_found).sum())
    delta = {t: sim.map(t) - base for t in ERROR_TYPES + SPECIAL_TYPES}
    breakdown = Breakdown(iou_threshold, background_iou, ap_method, base, sim.classes, counts, delta,
                          _per_class_counts(c, sim), len(c.det_class), int((~sim.gt_difficult).sum()))
    breakdown.stats = box_statistics(c, square_ratio)
    return breakdown, c


def _per_class_counts(c: Collected, sim: FixSimulator) -> dict[str, dict[str, int]]:
    names = sorted(set(c.det_class) | set(c.gt_class))
    table = {n: {"TP": 0, "FP": 0, **{t: 0 for t in ERROR_TYPES}, "GT": 0} for n in names}
    for name, status, err in zip(c.det_class, c.det_status, c.det_error):
        if status in ("tp", "fp"):
            table[name]["TP" if status == "tp" else "FP"] += 1
        if err:
            table[name][err] += 1
    for g, name in enumerate(c.gt_class):
        if not sim.gt_difficult[g]:
            table[name]["GT"] += 1
            table[name]["missed"] += int(sim.missed[g])
    return table


# ---------------------------------------------------------------------------------------------------
# Box statistics
# ---------------------------------------------------------------------------------------------------

def angle_error_deg(det_boxes: np.ndarray, gt_boxes: np.ndarray, square_ratio: float = 0.9) -> np.ndarray:
    """Angle error ``[N]`` in degrees between paired xywha boxes ``[N, 5]``.

    Rectangles are symmetric under a half turn, so the error is taken modulo 180 degrees (in [0, 90]);
    where either box is near-square (short/long >= ``square_ratio``) the long side is ill-defined and the
    error is taken modulo 90 degrees (in [0, 45]).
    """
    diff = det_boxes[:, 4] - gt_boxes[:, 4]
    mod_pi = np.abs(np.remainder(diff + math.pi / 2, math.pi) - math.pi / 2)
    mod_half_pi = np.abs(np.remainder(diff + math.pi / 4, math.pi / 2) - math.pi / 4)
    near_square = (_aspect_short_long(det_boxes) >= square_ratio) | (_aspect_short_long(gt_boxes) >= square_ratio)
    return np.degrees(np.where(near_square, mod_half_pi, mod_pi))


def _aspect_short_long(boxes: np.ndarray) -> np.ndarray:
    return np.where(boxes[:, 2] > 0, boxes[:, 3] / np.maximum(boxes[:, 2], 1e-300), 1.0)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def box_statistics(c: Collected, square_ratio: float) -> dict:
    """Per-box arrays (as lists) and their medians: TP angle/centre errors and size ratios, FP shapes."""
    det = np.asarray(c.tp_det_boxes, np.float64).reshape(-1, 5)
    gt = np.asarray(c.tp_gt_boxes, np.float64).reshape(-1, 5)
    fp = np.asarray(c.fp_boxes, np.float64).reshape(-1, 5)
    tp_values = {
        "angle_error_deg": angle_error_deg(det, gt, square_ratio),
        "centre_error_px": np.hypot(det[:, 0] - gt[:, 0], det[:, 1] - gt[:, 1]),
        "centre_error_rel_width": _ratio(np.hypot(det[:, 0] - gt[:, 0], det[:, 1] - gt[:, 1]), gt[:, 3]),
        "width_ratio": _ratio(det[:, 3], gt[:, 3]),
        "length_ratio": _ratio(det[:, 2], gt[:, 2]),
        "aspect": _ratio(det[:, 2], det[:, 3]),
        "size_px": np.sqrt(det[:, 2] * det[:, 3]),
    }
    fp_values = {"aspect": _ratio(fp[:, 2], fp[:, 3]), "size_px": np.sqrt(fp[:, 2] * fp[:, 3])}
    return {"tp": {k: _summary(v) for k, v in tp_values.items()},
            "fp": {k: _summary(v) for k, v in fp_values.items()},
            "_arrays": {"tp": tp_values, "fp": fp_values, "fp_types": list(c.fp_types)}}


def _summary(values: np.ndarray) -> dict:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return {"n": 0}
    p10, p50, p90 = np.percentile(finite, [10, 50, 90])
    return {"n": int(len(finite)), "mean": float(finite.mean()), "median": float(p50), "p10": float(p10),
            "p90": float(p90)}
