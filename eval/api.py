"""Python API: evaluate label records or arrays, and match one image for drawing and error analysis."""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from obbdet.boxes import BOX_DIM, is_torch
from obbdet.structures import ImageLabels

from .calibration import GRID_STEPS, LENGTH_RANGE, WIDTH_RANGE, calibrate as run_calibration
from .core import Evaluator, setting_label
from .data import prepare
from .errors import EXIT_USAGE, EvalInputError, WarningLog
from .result import EvalResult
from .rules import make_rules, parse_thresholds

logger = logging.getLogger(__name__)


def _settings(width_scales, length_scales) -> list[tuple[float, float]]:
    widths = [float(w) for w in (width_scales if width_scales is not None else (1.0,))]
    lengths = [float(v) for v in (length_scales if length_scales is not None else (1.0,))]
    if not widths or not lengths or min(widths + lengths) <= 0 or not np.all(np.isfinite(widths + lengths)):
        raise EvalInputError(f"scale factors must be positive numbers, got widths {widths}, lengths {lengths}",
                             EXIT_USAGE)
    pairs = [(w, v) for v in lengths for w in widths]
    return list(dict.fromkeys(pairs))


def evaluate(gt: dict[str, ImageLabels], det: dict[str, ImageLabels], *, iou_thresholds=None,
             ap_method: str | None = None, compat: str | None = None, width_scales: Sequence[float] = (1.0,),
             length_scales: Sequence[float] | None = None, classes: Sequence[str] | None = None,
             max_dets: Sequence[int] | None = None, calibrate: bool = False, calibrate_length: bool = False,
             calibrate_width_range=WIDTH_RANGE, calibrate_length_range=LENGTH_RANGE,
             calibrate_steps: Sequence[float] = GRID_STEPS, coco_summary: bool = True, keep_curves: bool = False,
             strict: bool = False, gt_sources: dict | None = None, det_sources: dict | None = None) -> EvalResult:
    """Evaluate detections against ground truth (see the evaluation notes for every rule).

    Args:
        gt, det: image key -> :class:`ImageLabels` (boxes xywha le90, radians, pixels). Detections need
            ``scores``. GT ``ignore`` objects are dropped; ``difficult`` GT are neither TP nor FP.
        iou_thresholds: ``'0.50:0.95:0.05'`` (default), ``'0.5,0.75'``, a number or a sequence.
        ap_method: ``'voc'`` (every point), ``'voc07'`` (11 point), ``'coco'`` (101 point); default from
            ``compat`` (``voc`` without).
        compat: None, ``'odm'``, ``'dota'`` or ``'coco'``.
        width_scales, length_scales: factors applied to the detections' short / long sides; each
            combination is one setting (a row of the table). The first is the reference setting.
        classes: evaluate only these classes (others are dropped with a warning).
        max_dets: maxDets of the COCO-style summary (default 100, 300, 1000).
        calibrate / calibrate_length: also search the width (and length) factor maximising the summary mAP;
            the best is added as the last setting. ``calibrate_width_range`` / ``calibrate_length_range``:
            the factors searched; ``calibrate_steps``: the search's grid steps, coarse to fine.
        keep_curves: keep precision/recall arrays of the reference setting (``result.settings[0].curves``).
        strict: treat recoverable oddities (warnings) as errors.
        gt_sources, det_sources: image key -> file, used in messages.

    Returns:
        :class:`EvalResult`. Raises :class:`EvalInputError` (one-line message) on bad input.
    """
    start = time.perf_counter()
    rules = make_rules(compat, ap_method, max_dets)
    thresholds = parse_thresholds(iou_thresholds)
    settings = _settings(width_scales, length_scales)
    warnings = WarningLog(strict=strict)
    data = prepare(gt, det, classes=list(classes) if classes is not None else None, warnings=warnings,
                   gt_sources=gt_sources, det_sources=det_sources)
    if len(data.gt) == 0:
        warnings.add("no-gt", "no ground-truth objects: every AP is 0")
    elif len(data.det) == 0:
        warnings.add("no-det", "no detections: every AP is 0")
    evaluator = Evaluator(data, rules, thresholds)
    envelope_w = max([w for w, _ in settings] + ([calibrate_width_range[1]] if calibrate else []))
    envelope_l = max([v for _, v in settings] + ([calibrate_length_range[1]] if calibrate and calibrate_length
                                                 else []))
    evaluator.set_envelope(envelope_w, envelope_l)
    results = [evaluator.run_setting(w, v, keep_curves=keep_curves and i == 0) for i, (w, v) in enumerate(settings)]
    calibration = None
    if calibrate:
        calibration = run_calibration(evaluator, search_length=calibrate_length, width_range=calibrate_width_range,
                                      length_range=calibrate_length_range, steps=tuple(calibrate_steps))
        best = evaluator.run_setting(calibration["width_scale"], calibration["length_scale"])
        best.label = "calibrated " + setting_label(best.width_scale, best.length_scale)
        results.append(best)
    reference = results[0]
    coco = evaluator.coco_summary(reference.width_scale, reference.length_scale) if coco_summary else None
    return EvalResult(
        iou_thresholds=[float(t) for t in thresholds],
        map=dict(reference.map),
        per_class={c: {k: s.as_dict() for k, s in v.items()} for c, v in reference.per_class.items()},
        settings=results,
        coco=coco,
        best_setting=_best_setting(results),
        classes=list(data.classes),
        map_classes=[c for c, use in zip(data.classes, evaluator.in_map) if use],
        det_only_classes=[data.classes[c] for c in data.det_only_classes],
        rules=rules.describe(),
        ap_method=rules.ap_method,
        compat=rules.compat,
        counts={"images": len(data.images), "images_with_gt": int(data.has_gt.sum()), "gt": len(data.gt),
                "gt_difficult": int(data.gt.difficult.sum()), "det": len(data.det)},
        summary_key=evaluator.summary_key,
        calibration=calibration,
        warnings=warnings.lines(),
        elapsed_s=time.perf_counter() - start,
    )


def _best_setting(results) -> dict:
    scores = [r.summary for r in results]
    best = int(np.argmax(scores))  # first of equals: the reference wins ties
    return {"index": best, "label": results[best].label, "width_scale": results[best].width_scale,
            "length_scale": results[best].length_scale, "map": dict(results[best].map),
            "summary": scores[best], "gain": scores[best] - scores[0]}


# ---------------------------------------------------------------------------------------------------
# Arrays in
# ---------------------------------------------------------------------------------------------------

def _numpy(x, dtype=None) -> np.ndarray:
    if is_torch(x):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _labels_from_arrays(boxes, labels, class_names, scores=None, difficult=None) -> ImageLabels:
    boxes = _numpy(boxes, np.float64).reshape(-1, BOX_DIM)
    labels = _numpy(labels, np.int64).reshape(-1)
    if len(labels) != len(boxes):
        raise EvalInputError(f"{len(boxes)} boxes but {len(labels)} labels", EXIT_USAGE)
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise EvalInputError(f"label indices must be in [0, {len(class_names)}), got {labels.min()}..{labels.max()}",
                             EXIT_USAGE)
    n = len(boxes)
    return ImageLabels(boxes=boxes, classes=[class_names[i] for i in labels.tolist()],
                       scores=None if scores is None else _numpy(scores, np.float64).reshape(n),
                       difficult=np.zeros(n, bool) if difficult is None else _numpy(difficult, bool).reshape(n),
                       ignore=np.zeros(n, bool))


def evaluate_arrays(gt_boxes, gt_labels, det_boxes, det_scores, det_labels, class_names: Sequence[str], *,
                    gt_difficult=None, image_ids: Sequence[str] | None = None, **options) -> EvalResult:
    """Evaluate per-image arrays (numpy arrays or torch tensors), e.g. for validation during training.

    Args:
        gt_boxes: list over images of ``[G_i, 5]`` xywha le90 boxes (pixels, radians).
        gt_labels: list of ``[G_i]`` int class indices into ``class_names``.
        det_boxes, det_scores, det_labels: lists of ``[D_i, 5]``, ``[D_i]``, ``[D_i]``.
        class_names: the class list; every class is evaluated in this order.
        gt_difficult: optional list of ``[G_i]`` bool.
        image_ids: optional image ids (default 0, 1, ...; non-negative integers are zero-padded into keys, so
            their numeric order is the tie-breaking order of equal scores; anything else is used as ``str``).
        **options: as :func:`evaluate` (``iou_thresholds``, ``ap_method``, ``compat``, ``width_scales``...).
    """
    n_images = len(gt_boxes)
    lengths = {len(gt_labels), len(det_boxes), len(det_scores), len(det_labels)}
    if lengths != {n_images} or (gt_difficult is not None and len(gt_difficult) != n_images):
        raise EvalInputError("evaluate_arrays: every per-image list must have one entry per image", EXIT_USAGE)
    keys = _image_keys(image_ids, n_images)
    if len(set(keys)) != n_images:
        raise EvalInputError("evaluate_arrays: image_ids must be unique, one per image", EXIT_USAGE)
    names = list(class_names)
    gt = {k: _labels_from_arrays(gt_boxes[i], gt_labels[i], names,
                                 difficult=None if gt_difficult is None else gt_difficult[i])
          for i, k in enumerate(keys)}
    det = {k: _labels_from_arrays(det_boxes[i], det_labels[i], names, scores=det_scores[i])
           for i, k in enumerate(keys)}
    options.setdefault("classes", names)
    return evaluate(gt, det, **options)


def _image_keys(image_ids, n_images: int) -> list[str]:
    """String keys whose sorted order is the ids' natural order (integers are zero-padded)."""
    if image_ids is None:
        return [f"{i:012d}" for i in range(n_images)]
    ids = [i.item() if is_torch(i) or isinstance(i, np.generic) else i for i in image_ids]
    if all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) and i >= 0 for i in ids):
        return [f"{int(i):012d}" for i in ids]
    return [str(i) for i in ids]


def evaluate_samples(samples: Sequence, det_boxes, det_scores, det_labels, class_names: Sequence[str],
                     **options) -> EvalResult:
    """Evaluate detections against importer sample records (``boxes``, ``labels``, ``difficult``)."""
    keys = list(range(len(samples)))
    return evaluate_arrays([s.boxes for s in samples], [s.labels for s in samples], det_boxes, det_scores,
                           det_labels, class_names, gt_difficult=[s.difficult for s in samples], image_ids=keys,
                           **options)
