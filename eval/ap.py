"""Average precision from a ranked list of true and false positives.

Three interpolations, chosen by name (``AP_METHODS``):

- ``voc``: every-point interpolated AP (PASCAL VOC 2010+, Object-Detection-Metrics "every point"): the
  precision envelope (running maximum from the right) summed over the recall steps.
- ``voc07``: 11-point AP (VOC 2007, DOTA devkit ``use_07_metric``): mean over recall thresholds exactly
  ``np.linspace(0, 1, 11)`` of the highest precision at recall >= threshold (0 when none).
- ``coco``: 101-point AP (pycocotools): the precision envelope sampled at ``np.linspace(0, 1, 101)`` with
  ``searchsorted(recall, thresholds, side='left')`` (0 beyond the last recall).

Inputs are the cumulative counts of a class's detections in score order with ignored detections removed.
"""
from __future__ import annotations

import numpy as np

AP_METHODS = ("voc", "voc07", "coco")
AP_METHOD_NAMES = {
    "voc": "every-point (VOC2010+)",
    "voc07": "11-point (VOC2007)",
    "coco": "101-point (COCO)",
}
_RECALL_11 = np.linspace(0.0, 1.0, 11)
_RECALL_101 = np.linspace(0.0, 1.0, 101)


def precision_recall(tp: np.ndarray, fp: np.ndarray, npos: int) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision ``[D]`` (float64) after each of ``D`` ranked detections.

    tp, fp: ``[D]`` bool (or 0/1) flags in score order, ignored detections already removed.
    npos: number of positives (non-difficult ground truth); recall is 0 when ``npos == 0``.
    """
    tp_cum = np.cumsum(tp, dtype=np.float64)
    fp_cum = np.cumsum(fp, dtype=np.float64)
    recall = tp_cum / npos if npos > 0 else np.zeros_like(tp_cum)
    precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
    return recall, precision


def ap_every_point(recall: np.ndarray, precision: np.ndarray) -> float:
    """Every-point interpolated AP (VOC2010+): area under the precision envelope."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def ap_11_point(recall: np.ndarray, precision: np.ndarray) -> float:
    """11-point AP (VOC2007): mean over ``t`` in ``linspace(0, 1, 11)`` of ``max(precision[recall >= t])``."""
    if len(recall) == 0:
        return 0.0
    # highest precision at or after each position, so max(precision[recall >= t]) is one lookup
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    first = np.searchsorted(recall, _RECALL_11, side="left")  # recall is non-decreasing
    values = np.where(first < len(recall), envelope[np.minimum(first, len(recall) - 1)], 0.0)
    return float(np.sum(values) / 11.0)


def ap_101_point(recall: np.ndarray, precision: np.ndarray) -> float:
    """101-point AP (COCO): the precision envelope sampled at ``linspace(0, 1, 101)``."""
    if len(recall) == 0:
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    index = np.searchsorted(recall, _RECALL_101, side="left")
    values = np.where(index < len(recall), envelope[np.minimum(index, len(recall) - 1)], 0.0)
    return float(np.mean(values))


_AP_FUNCTIONS = {"voc": ap_every_point, "voc07": ap_11_point, "coco": ap_101_point}


def average_precision(recall: np.ndarray, precision: np.ndarray, method: str = "voc") -> float:
    """AP of a precision/recall curve ``[D]`` by ``method`` (one of ``AP_METHODS``)."""
    try:
        function = _AP_FUNCTIONS[method]
    except KeyError:
        raise ValueError(f"unknown AP method {method!r}; valid: {', '.join(AP_METHODS)}") from None
    return function(recall, precision)
