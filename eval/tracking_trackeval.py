"""The bridge to TrackEval: per-class timestep data with exact rotated IoU, and its HOTA / CLEAR / Identity.

TrackEval's metric classes (``trackeval.metrics``) compute from a per-sequence dict: per timestep the ground
truth's and the tracker's ids (contiguous from 0) and the ``[n_gt, n_det]`` similarity matrix. Its dataset
readers know axis-aligned boxes only, so this module builds that dict itself, as TrackEval's MOTChallenge
reader does after its preprocessing, with the similarity the exact rotated IoU of ``obbdet.iou``:

- class-wise: the data of class ``c`` holds only ground truth and detections of class ``c``;
- ``difficult`` ground truth are distractors, as MOTChallenge's distractor classes: per frame, detections
  and ground truth of the class (difficult included) are matched one-to-one by Hungarian assignment on
  IoU >= 0.5, detections matched to a difficult object are removed, then difficult objects are removed
  (they are neither positives nor misses, and the detections on them are not false positives);
- ids are relabelled to ``0..n-1`` in ascending order of the file's ``track_id`` (as TrackEval does).

Sequences are combined with each metric's ``combine_sequences`` and classes with
``combine_classes_det_averaged`` (TrackEval's "cls_comb_det_av": detection-weighted) and
``combine_classes_class_averaged``. TrackEval is imported only when metrics are computed.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np

from obbdet.iou import box_iou_rotated

from .errors import EXIT_INTERNAL, EvalInputError
from .tracking_data import Sequence

MATCH_IOU = 0.5  # CLEAR, Identity and the distractor matching: a match needs IoU >= 0.5
_EPS = np.finfo("float").eps  # TrackEval's tolerance around its thresholds
CONTINUITY_BONUS = 1000.0  # CLEAR: keeping last frame's pairs first, then the highest IoU
INSTALL_COMMAND = "pip install --no-deps -r requirements-nodeps.txt"
METRIC_NAMES = ("HOTA", "CLEAR", "Identity")


def trackeval_metrics() -> dict:
    """Instances of TrackEval's HOTA, CLEAR and Identity (IoU threshold 0.5), by name."""
    try:
        # trackeval/__init__ imports all its dataset readers, one of which prints a line about pycocotools
        # (used only by datasets we do not read): keep it out of our output.
        with contextlib.redirect_stdout(io.StringIO()):
            from trackeval.metrics import CLEAR, HOTA, Identity
    except ImportError as exc:
        raise EvalInputError(
            f"tracking evaluation needs TrackEval's metric code (HOTA, CLEAR, Identity), which cannot be imported "
            f"({exc}); install it with `{INSTALL_COMMAND}` (without its dependencies: TrackEval declares "
            f"opencv-python, whose GUI build would replace opencv-python-headless)", EXIT_INTERNAL) from None
    config = {"THRESHOLD": MATCH_IOU, "PRINT_CONFIG": False}
    return {"HOTA": HOTA(), "CLEAR": CLEAR(config), "Identity": Identity(config)}


def hungarian_match(similarity: np.ndarray, threshold: float = MATCH_IOU,
                    bonus: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of one frame, exactly as TrackEval's CLEAR and MOTChallenge preprocessing do.

    similarity ``[G, D]`` IoU; bonus ``[G, D]`` bool (pairs to keep first: CLEAR's continuation of last
    frame's matches) or None. Pairs with IoU below ``threshold`` never match. Returns ``(rows [K], cols [K])``.
    """
    score = similarity.copy()
    if bonus is not None:
        score = CONTINUITY_BONUS * bonus + score
    score[similarity < threshold - _EPS] = 0
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-score)
    keep = score[rows, cols] > _EPS
    return rows[keep], cols[keep]


@dataclass
class ClassData:
    """One sequence's data for one class, after the distractor removal.

    data: TrackEval's per-sequence dict (``gt_ids``, ``tracker_ids``, ``similarity_scores`` per timestep,
    ``num_timesteps``, ``num_gt_ids``, ``num_tracker_ids``, ``num_gt_dets``, ``num_tracker_dets``, ``seq``).
    gt_index / det_index: per timestep, the rows (``[G_t]``, ``[D_t]`` int) of ``Sequence.gt[t]`` /
    ``Sequence.det[t]`` behind the data's ground truth and detections.
    """

    data: dict
    gt_index: list[np.ndarray]
    det_index: list[np.ndarray]


def _relabel(ids: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    unique = np.unique(np.concatenate(ids)) if ids else np.zeros(0, np.int64)
    return [np.searchsorted(unique, t).astype(int) for t in ids], len(unique)


def class_data(seq: Sequence, cls: str) -> ClassData:
    """TrackEval's data of ``seq`` for class ``cls`` (see the module docstring)."""
    gt_ids, det_ids, sims, gt_index, det_index = [], [], [], [], []
    for gt, det in zip(seq.gt, seq.det):
        g = np.array([i for i, c in enumerate(gt.classes) if c == cls], dtype=int)
        d = np.array([i for i, c in enumerate(det.classes) if c == cls], dtype=int)
        sim = box_iou_rotated(gt.boxes[g], det.boxes[d])
        difficult = gt.difficult[g]
        if difficult.any() and len(d):
            rows, cols = hungarian_match(sim)
            drop = cols[difficult[rows]]
            d = np.delete(d, drop)
            sim = np.delete(sim, drop, axis=1)
        g, sim = g[~difficult], sim[~difficult]
        gt_ids.append(gt.track_ids[g])
        det_ids.append(det.track_ids[d])
        sims.append(sim)
        gt_index.append(g)
        det_index.append(d)
    gt_ids, n_gt = _relabel(gt_ids)
    det_ids, n_det = _relabel(det_ids)
    data = {"gt_ids": gt_ids, "tracker_ids": det_ids, "similarity_scores": sims, "num_timesteps": len(seq.frames),
            "num_gt_ids": n_gt, "num_tracker_ids": n_det, "num_gt_dets": int(sum(len(t) for t in gt_ids)),
            "num_tracker_dets": int(sum(len(t) for t in det_ids)), "seq": seq.name}
    return ClassData(data, gt_index, det_index)


def clear_matches(data: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per timestep, the ``(rows, cols)`` pairs CLEAR matches (its IDSW and TP come from these very pairs):
    last timestep's pairs (of each ground-truth id) are kept first, then the IoU is maximised; a ground-truth
    id's "last timestep" skips timesteps where either side is empty, as in TrackEval."""
    previous = np.full(data["num_gt_ids"], np.nan)  # tracker id each gt id had in the last matched timestep
    out = []
    for gt_ids, det_ids, sim in zip(data["gt_ids"], data["tracker_ids"], data["similarity_scores"]):
        if len(gt_ids) == 0 or len(det_ids) == 0:
            out.append((np.zeros(0, int), np.zeros(0, int)))
            continue
        rows, cols = hungarian_match(sim, bonus=det_ids[None, :] == previous[gt_ids][:, None])
        previous[:] = np.nan
        previous[gt_ids[rows]] = det_ids[cols]
        out.append((rows, cols))
    return out


def evaluate_classes(per_class: dict[str, ClassData], metrics: dict) -> dict[str, dict]:
    """``{class: {metric name: TrackEval result dict}}`` of one sequence."""
    return {cls: {name: metric.eval_sequence(item.data) for name, metric in metrics.items()}
            for cls, item in per_class.items()}


def combine_sequences(results: dict[str, dict[str, dict]], metrics: dict, classes: list[str]) -> dict[str, dict]:
    """``{class: {metric: result}}`` over sequences from ``{sequence: {class: {metric: result}}}``."""
    return {cls: {name: metric.combine_sequences({seq: res[cls][name] for seq, res in results.items()})
                  for name, metric in metrics.items()} for cls in classes}


def combine_classes(per_class: dict[str, dict], metrics: dict, *, class_averaged: bool = False) -> dict:
    """``{metric: result}`` over the classes of ``{class: {metric: result}}``: detection-averaged (default, the
    "all classes" figures) or class-averaged (TrackEval ``cls_comb_cls_av``)."""
    out = {}
    for name, metric in metrics.items():
        results = {cls: res[name] for cls, res in per_class.items()}
        out[name] = metric.combine_classes_class_averaged(results) if class_averaged \
            else metric.combine_classes_det_averaged(results)
    return out


def summary(result: dict) -> dict:
    """The reported figures of ``{metric: result}`` as plain numbers (fractions in [0, 1] and counts).

    HOTA, DetA, AssA, LocA: TrackEval's summary values, the mean over its 19 localisation thresholds
    (0.05..0.95). GT / Det: ground-truth objects and detections counted (after the distractor removal).
    """
    hota, clear, ident = result["HOTA"], result["CLEAR"], result["Identity"]
    out = {key: float(np.mean(hota[key])) for key in ("HOTA", "DetA", "AssA", "LocA")}
    out.update({key: float(clear[key]) for key in ("MOTA", "MOTP", "CLR_Re", "CLR_Pr")})
    out.update({key: float(ident[key]) for key in ("IDF1", "IDP", "IDR")})
    out.update({key: int(clear[key]) for key in ("IDSW", "Frag", "CLR_TP", "CLR_FN", "CLR_FP", "MT", "PT", "ML")})
    out["GT"] = out["CLR_TP"] + out["CLR_FN"]
    out["Det"] = out["CLR_TP"] + out["CLR_FP"]
    out["GT_IDs"] = out["MT"] + out["PT"] + out["ML"]
    return out
