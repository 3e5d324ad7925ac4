"""Calibration you can store and ship: the box factors that maximise mAP50-95, written into the checkpoint.

Detectors trained on loosely labelled data draw boxes systematically too wide (or too long); inference
multiplies every box's short / long side by the checkpoint's calibrated factors. This module picks them and
stores them:

- :func:`calibration_sweep`: eval's sweep (:func:`obbdet.eval.evaluate`, one table row per width factor of
  a fine grid) and eval's search of the best factor on that grid, refined around the best. No second
  evaluator: every number comes from ``obbdet.eval``.
- :func:`store_calibration`: the chosen factors, the data set name, the date and the sweep table into the
  checkpoint (:func:`obbdet.checkpoint.set_calibration`, atomic).
- :func:`calibrate_checkpoint`: both, what ``tools/calibrate.py`` runs after its inference pass;
  ``python -m eval.pascalvoc --calibrate --write-checkpoint`` stores its own result through
  :func:`store_calibration` too.

Factors must be measured on detections made without any calibration (factors 1.0): a stored factor replaces
the previous one, so running a calibrated checkpoint with its own factors would compound them.

Importing this module does not import torch; storing does (checkpoints are torch files).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from obbdet.eval.calibration import LENGTH_RANGE

SWEEP_WIDTH_RANGE = (0.80, 1.20)  # wide enough for boxes drawn 20% too narrow or too wide
SWEEP_LENGTH_RANGE = LENGTH_RANGE
SWEEP_STEP = 0.005  # one table row per step
REFINE_STEP = 0.001  # the search refines the best grid factor to this step


def sweep_factors(low: float, high: float, step: float = SWEEP_STEP) -> list[float]:
    """``low, low + step, ..., high`` rounded to 1e-6 (the rounding eval's search uses, so rows and search
    points coincide)."""
    if not (0 < low < high and step > 0):
        raise ValueError(f"expected 0 < low < high and step > 0, got low {low}, high {high}, step {step}")
    count = int(round((high - low) / step)) + 1
    return [round(low + i * step, 6) for i in range(count) if round(low + i * step, 6) <= high + 1e-9]


def calibration_sweep(gt: dict, det: dict, *, search_length: bool = False, width_range=SWEEP_WIDTH_RANGE,
                      length_range=SWEEP_LENGTH_RANGE, step: float = SWEEP_STEP, **options):
    """Evaluate ``det`` against ``gt`` (image key -> ``ImageLabels``) at every width factor of ``width_range``
    by ``step``, and search the factor maximising the summary mAP (mAP50-95 by default).

    The table's first row is the reference (factor 1.0), then one row per grid factor, then the chosen
    setting (``"calibrated w=..."``): eval's search over the same grid, refined by :data:`REFINE_STEP`
    around the best; with ``search_length`` the long-side factor too (coordinate ascent). Among equal scores
    the factor closest to 1 wins. ``options``: as :func:`obbdet.eval.evaluate` (``classes``, ``compat``...).
    Returns the :class:`~obbdet.eval.EvalResult`; the choice is ``result.calibration``.
    """
    from obbdet.eval import evaluate

    width_range = (float(width_range[0]), float(width_range[1]))
    length_range = (float(length_range[0]), float(length_range[1]))
    for name, (low, high) in (("width", width_range), ("length", length_range)):
        if not low <= 1.0 <= high:  # 1.0 is the reference every gain is measured against
            raise ValueError(f"the {name} range must contain 1.0, got {low:g}..{high:g}")
    steps = (step, REFINE_STEP) if step > REFINE_STEP else (step,)
    return evaluate(gt, det, width_scales=[1.0] + sweep_factors(*width_range, step), calibrate=True,
                    calibrate_length=search_length, calibrate_width_range=width_range,
                    calibrate_length_range=length_range, calibrate_steps=steps, **options)


def _number(value):
    """A float for the table, None for a missing or NaN value (stored tables stay plain JSON)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def calibration_table(result) -> dict:
    """The sweep as plain data (what the checkpoint stores): one row per setting with its mAP per threshold
    and summary, plus the summary key, the evaluated classes, the counts and the rules."""
    cal = result.calibration or {}
    return {
        "summary_key": result.summary_key,
        "rows": [{"setting": s.label, "width_scale": float(s.width_scale), "length_scale": float(s.length_scale),
                  "map": {key: _number(value) for key, value in s.map.items()}} for s in result.settings],
        "reference": _number(cal.get("reference")),
        "summary": _number(cal.get("summary")),
        "gain": _number(cal.get("gain")),
        "search_length": bool(cal.get("search_length", False)),
        "classes": list(result.map_classes),
        "counts": {key: int(value) for key, value in result.counts.items()},
        "rules": str(result.rules),
    }


def check_calibration_target(checkpoint) -> None:
    """Fail early, before anything is computed, when ``checkpoint`` cannot receive a calibration: raises
    :class:`obbdet.checkpoint.CheckpointError` when it is not an obbdet checkpoint, PermissionError when it
    cannot be rewritten (one-line messages)."""
    from obbdet.checkpoint import load_checkpoint

    path = Path(checkpoint)
    load_checkpoint(path)
    # the file is replaced atomically: a temporary file is written beside it, then renamed over it
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        raise PermissionError(f"{path}: cannot store the calibration (the checkpoint and its folder must be "
                              f"writable)")


def store_calibration(checkpoint, result, *, dataset: str | None = None) -> dict:
    """Write ``result.calibration``'s factors into ``checkpoint`` with the sweep table, ``dataset`` and the
    date (:func:`obbdet.checkpoint.set_calibration`). The length factor is stored only when it was searched
    (else None: inference keeps 1.0, the length the factors were measured at). Returns what was stored."""
    from obbdet.checkpoint import operating_point_record, set_calibration

    cal = result.calibration
    if not cal:
        raise ValueError("the evaluation result holds no calibration (evaluate with calibrate=True)")
    length = cal["length_scale"] if cal.get("search_length") else None
    where = f"calibration on {dataset}" if dataset else "calibration"
    operating_point = operating_point_record(result.operating_points("0.50", setting=-1), where)
    return set_calibration(checkpoint, cal["width_scale"], length, dataset=dataset, table=calibration_table(result),
                           operating_point=operating_point)


def calibrate_checkpoint(checkpoint, gt: dict, det: dict, *, dataset: str | None = None,
                         search_length: bool = False, **sweep_options):
    """:func:`calibration_sweep` of ``det`` (made with factors 1.0) against ``gt``, then
    :func:`store_calibration` into ``checkpoint``. Returns ``(result, stored calibration dict)``."""
    result = calibration_sweep(gt, det, search_length=search_length, **sweep_options)
    return result, store_calibration(checkpoint, result, dataset=dataset)
