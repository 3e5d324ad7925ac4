"""Object-level agreement of two label sets of the same images (two annotators, GT vs model, model vs model).

``compute_miou(a, b)`` matches A's objects one-to-one with B's, per image and (by default) per class,
maximising the total IoU (Hungarian assignment, ``scipy.optimize.linear_sum_assignment``); only pairs with
IoU > 0 count as matched. It reports matched and unmatched counts, the mean IoU of matched pairs, and per
direction (A -> B and B -> A, which differ when the counts differ): the mean IoU over that side's objects
(unmatched objects count 0), the IoU histogram with its bulk, tail and peak, and the objects whose best IoU
with any object of the other side is 0 (labels with no counterpart at all).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from obbdet.pairs import aabb_overlap_pairs
from obbdet.structures import ImageLabels

from .data import prepare
from .errors import WarningLog
from .matching import bounding_aabb, pair_iou

HISTOGRAM_BINS = np.linspace(0.0, 1.0, 21)  # 0.05 wide
BULK_PERCENTILES = (10.0, 90.0)


@dataclass
class MiouDirection:
    """Agreement seen from one side (``source`` -> ``target``).

    iou ``[N]``: each of the source's objects' IoU with its matched partner (0 when unmatched);
    best_iou ``[N]``: its highest IoU with any object of the target (same class unless any-class);
    histogram: counts of the matched objects' IoU in ``HISTOGRAM_BINS`` (unmatched ones are counted in
    ``unmatched``); bulk: the 10th-90th percentile range of the matched IoUs; tail: from their minimum to
    the 10th percentile; peak: centre of the fullest bin; zero_iou: (image, object index, class) of objects
    with best IoU 0.
    """

    source: str
    target: str
    n_objects: int
    matched: int
    unmatched: int
    miou_all: float
    iou: np.ndarray = field(repr=False)
    best_iou: np.ndarray = field(repr=False)
    histogram: list[int]
    bulk: tuple[float, float] | None
    tail: tuple[float, float] | None
    peak: float | None
    zero_iou: list[tuple[str, int, str]]

    def as_dict(self) -> dict:
        return {"source": self.source, "target": self.target, "objects": self.n_objects, "matched": self.matched,
                "unmatched": self.unmatched, "miou_all": self.miou_all, "histogram": self.histogram,
                "histogram_edges": HISTOGRAM_BINS.tolist(), "bulk": self.bulk, "tail": self.tail, "peak": self.peak,
                "zero_iou": [list(z) for z in self.zero_iou]}


@dataclass
class MiouResult:
    """One-to-one comparison of label sets A and B (fractions in [0, 1])."""

    name_a: str
    name_b: str
    any_class: bool
    matched: int
    unmatched_a: int
    unmatched_b: int
    miou: float  # mean IoU of matched pairs (symmetric)
    a_to_b: MiouDirection
    b_to_a: MiouDirection
    pairs: list[tuple[str, int, int, float]] = field(repr=False)  # (image, index in A, index in B, IoU)
    class_mismatches: int = 0  # matched pairs whose classes differ (any-class mode)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"a": self.name_a, "b": self.name_b, "any_class": self.any_class, "matched": self.matched,
                "unmatched_a": self.unmatched_a, "unmatched_b": self.unmatched_b, "miou": self.miou,
                "class_mismatches": self.class_mismatches, "a_to_b": self.a_to_b.as_dict(),
                "b_to_a": self.b_to_a.as_dict(), "warnings": self.warnings}

    def format(self, max_zero_listed: int = 50) -> str:
        """The printed report (both directions)."""
        lines = [f"A = {self.name_a}", f"B = {self.name_b}",
                 f"matching: one-to-one (Hungarian, max total IoU), {'any class' if self.any_class else 'same class'}",
                 f"matched pairs: {self.matched}   unmatched in A: {self.unmatched_a}   unmatched in B: "
                 f"{self.unmatched_b}",
                 f"mIoU of matched pairs: {_fmt(self.miou)}"]
        if self.any_class:
            lines.append(f"matched pairs with different classes: {self.class_mismatches}")
        d = self.a_to_b
        lines += ["IoU histogram of matched pairs (bins of 0.05):", *_histogram_lines(d.histogram),
                  f"bulk (10th-90th percentile): {_range(d.bulk)}   tail (min-10th): {_range(d.tail)}   "
                  f"peak: {_fmt(d.peak)}"]
        for d in (self.a_to_b, self.b_to_a):
            lines += ["", f"{d.source} -> {d.target}: {d.n_objects} objects, {d.matched} matched, {d.unmatched} "
                          f"unmatched; mIoU over all {d.n_objects} objects (unmatched = 0): {_fmt(d.miou_all)}",
                      f"  objects with best IoU 0 (no overlapping object in {d.target}): {len(d.zero_iou)}"]
            for image, index, cls in d.zero_iou[:max_zero_listed]:
                lines.append(f"    {image} object #{index} ({cls})")
            if len(d.zero_iou) > max_zero_listed:
                lines.append(f"    ... {len(d.zero_iou) - max_zero_listed} more")
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _range(r) -> str:
    return "-" if r is None else f"{r[0]:.3f}-{r[1]:.3f}"


def _histogram_lines(counts: list[int]) -> list[str]:
    top = max(counts) if counts and max(counts) > 0 else 1
    lines = []
    for k, count in enumerate(counts):
        if count:
            bar = "#" * max(1, int(round(40 * count / top)))
            lines.append(f"  {HISTOGRAM_BINS[k]:.2f}-{HISTOGRAM_BINS[k + 1]:.2f} {count:>7} {bar}")
    return lines or ["  (no matched pairs)"]


def _direction(source: str, target: str, iou: np.ndarray, best: np.ndarray, matched: np.ndarray,
               images: list[str], image_idx: np.ndarray, obj_idx: np.ndarray, classes: list[str],
               cls_idx: np.ndarray) -> MiouDirection:
    values = iou[matched]
    hist = np.histogram(values, bins=HISTOGRAM_BINS)[0].tolist() if len(values) else [0] * (len(HISTOGRAM_BINS) - 1)
    if len(values):
        p_low, p_high = np.percentile(values, BULK_PERCENTILES)
        bulk, tail = (float(p_low), float(p_high)), (float(values.min()), float(p_low))
        fullest = int(np.argmax(hist))
        peak = float((HISTOGRAM_BINS[fullest] + HISTOGRAM_BINS[fullest + 1]) / 2)
    else:
        bulk = tail = peak = None
    zero = np.flatnonzero(best <= 0)
    return MiouDirection(source, target, len(iou), int(matched.sum()), int((~matched).sum()),
                         float(iou.mean()) if len(iou) else 0.0, iou, best, hist, bulk, tail, peak,
                         [(images[image_idx[k]], int(obj_idx[k]), classes[cls_idx[k]]) for k in zero])


def _with_scores(labels: dict[str, ImageLabels]) -> dict[str, ImageLabels]:
    """Records usable as the 'detection' side of ``prepare`` (scores are irrelevant here)."""
    out = {}
    for key, rec in labels.items():
        if rec.scores is None:
            rec = ImageLabels(image=rec.image, width=rec.width, height=rec.height, boxes=rec.boxes,
                              classes=rec.classes, scores=np.zeros(len(rec)), difficult=rec.difficult,
                              ignore=rec.ignore, aabb=rec.aabb)
        out[key] = rec
    return out


def compute_miou(a: dict[str, ImageLabels], b: dict[str, ImageLabels], any_class: bool = False, *,
                 name_a: str = "A", name_b: str = "B") -> MiouResult:
    """Match A's objects one-to-one with B's (per image, per class unless ``any_class``); see the module notes.

    Objects flagged ``ignore`` are left out; ``difficult`` ones are compared like any other.
    """
    from scipy.optimize import linear_sum_assignment

    data = prepare(a, _with_scores(b), warnings=WarningLog())
    warnings = []
    for only, (name, other) in ((set(a) - set(b), (name_a, name_b)), (set(b) - set(a), (name_b, name_a))):
        if only:
            warnings.append(f"{len(only)} image(s) only in {name} (e.g. {sorted(only)[0]!r}): all their "
                            f"objects are unmatched in {other}")
    ga, gb = data.gt, data.det  # A plays the ground truth, B the detections
    n_cls = len(data.classes)
    group_a = ga.image if any_class else ga.image * n_cls + ga.cls
    group_b = gb.image if any_class else gb.image * n_cls + gb.cls
    i, j = aabb_overlap_pairs(bounding_aabb(ga.boxes, ga.axis), bounding_aabb(gb.boxes, gb.axis), group_a, group_b,
                              touching=True)
    iou = pair_iou(ga.boxes, ga.axis, gb.boxes, gb.axis, i, j)
    positive = iou > 0
    i, j, iou = i[positive], j[positive], iou[positive]
    best_a = np.zeros(len(ga))
    best_b = np.zeros(len(gb))
    np.maximum.at(best_a, i, iou)
    np.maximum.at(best_b, j, iou)
    match_a = np.full(len(ga), -1, np.int64)
    iou_a = np.zeros(len(ga))
    if len(i):
        order = np.argsort(group_a[i], kind="stable")
        i, j, iou = i[order], j[order], iou[order]
        groups = group_a[i]
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        for s, e in zip(starts.tolist(), np.r_[starts[1:], len(i)].tolist()):
            rows, r_local = np.unique(i[s:e], return_inverse=True)
            cols, c_local = np.unique(j[s:e], return_inverse=True)
            matrix = np.zeros((len(rows), len(cols)))
            matrix[r_local, c_local] = iou[s:e]
            r, c = linear_sum_assignment(matrix, maximize=True)
            keep = matrix[r, c] > 0
            match_a[rows[r[keep]]] = cols[c[keep]]
            iou_a[rows[r[keep]]] = matrix[r[keep], c[keep]]
    matched_a = match_a >= 0
    match_b = np.full(len(gb), -1, np.int64)
    match_b[match_a[matched_a]] = np.flatnonzero(matched_a)
    iou_b = np.zeros(len(gb))
    iou_b[match_a[matched_a]] = iou_a[matched_a]
    matched_b = match_b >= 0
    a_to_b = _direction(name_a, name_b, iou_a, best_a, matched_a, data.images, ga.image, ga.obj_index,
                        data.classes, ga.cls)
    b_to_a = _direction(name_b, name_a, iou_b, best_b, matched_b, data.images, gb.image, gb.obj_index,
                        data.classes, gb.cls)
    pair_rows = np.flatnonzero(matched_a)
    pairs = [(data.images[ga.image[k]], int(ga.obj_index[k]), int(gb.obj_index[match_a[k]]), float(iou_a[k]))
             for k in pair_rows]
    mismatches = int(np.sum(ga.cls[pair_rows] != gb.cls[match_a[pair_rows]])) if any_class else 0
    return MiouResult(name_a, name_b, any_class, int(matched_a.sum()), int((~matched_a).sum()),
                      int((~matched_b).sum()), float(iou_a[matched_a].mean()) if matched_a.any() else 0.0,
                      a_to_b, b_to_a, pairs, mismatches, warnings)


def plot_histogram(result: MiouResult, path) -> None:
    """PNG of both directions' IoU histograms (matched pairs) and cumulative fractions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from obbdet.io_utils import atomic_output

    fig, ax = plt.subplots(figsize=(7, 4))
    centres = (HISTOGRAM_BINS[:-1] + HISTOGRAM_BINS[1:]) / 2
    width = HISTOGRAM_BINS[1] - HISTOGRAM_BINS[0]
    ax.bar(centres, result.a_to_b.histogram, width=width * 0.9, color="tab:blue")
    for d in (result.a_to_b, result.b_to_a):  # legend entries: the per-direction counts
        ax.plot([], [], " ", label=f"{d.source} -> {d.target}: {d.matched}/{d.n_objects} matched, "
                                   f"mIoU over all {d.miou_all:.3f}, IoU 0: {len(d.zero_iou)}")
    if result.a_to_b.bulk is not None:
        ax.axvspan(*result.a_to_b.bulk, color="tab:orange", alpha=0.15, label="bulk (10th-90th percentile)")
    ax.set_xlabel("IoU of matched pairs")
    ax.set_ylabel("pairs")
    ax.set_xlim(0, 1)
    ax.set_title(f"mIoU of matched pairs {result.miou:.4f} ({result.matched} pairs)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    with atomic_output(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
