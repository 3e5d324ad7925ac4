"""Evaluation rules (matching, IoU convention, AP interpolation) and IoU threshold lists.

``make_rules(compat, ap_method)`` resolves the compatibility modes of the evaluation notes:

- default: best GT by IoU (first on ties) whether or not matched, IoU >= t, exact IoU, every-point AP,
  mAP over classes with positives;
- ``odm`` (Object-Detection-Metrics ``pascalvoc.py``): as default but box IoU with the "+1 pixel"
  convention (axis-aligned formats only);
- ``dota`` (DOTA devkit task 1): IoU > t (strict), 11-point AP, mAP over all listed classes;
- ``coco`` (pycocotools): best *unmatched* GT, 101-point AP, at most ``max(max_dets)`` detections per image
  and class.

An explicit ``ap_method`` overrides the mode's interpolation (e.g. DOTA rules with every-point AP).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ap import AP_METHODS
from .errors import EXIT_USAGE, EvalInputError
from .matching import IOU_EXACT, IOU_ODM

COMPAT_MODES = ("odm", "dota", "coco")
DEFAULT_MAX_DETS = (100, 300, 1000)
COCO_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # the "50-95" set, built without float steps
KEY_50_95 = "50-95"
KEY_MEAN = "mean"


@dataclass(frozen=True)
class Rules:
    """How detections are matched and scored (see the module notes)."""

    compat: str | None = None
    ap_method: str = "voc"
    strict_iou: bool = False  # a match needs IoU > t (DOTA) instead of >= t
    iou_mode: str = IOU_EXACT
    matching: str = "greedy"  # "greedy": best GT whether or not matched; "coco": best unmatched GT
    map_all_classes: bool = False  # mAP over every listed class (DOTA), not only classes with positives
    max_dets: tuple[int, ...] = DEFAULT_MAX_DETS

    @property
    def main_max_dets(self) -> int | None:
        """Detections kept per image and class in the main tables (COCO only; None: all)."""
        return max(self.max_dets) if self.matching == "coco" else None

    def describe(self) -> str:
        from .ap import AP_METHOD_NAMES

        matching = {"greedy": "best GT by IoU", "coco": "best unmatched GT (COCO)"}[self.matching]
        iou = {IOU_EXACT: "exact IoU", IOU_ODM: "box IoU +1 px (ODM)"}[self.iou_mode]
        compare = ">" if self.strict_iou else ">="
        return (f"AP {AP_METHOD_NAMES[self.ap_method]}, matching: {matching}, IoU {compare} t, {iou}"
                + (f", compat {self.compat}" if self.compat else ""))


def make_rules(compat: str | None = None, ap_method: str | None = None,
               max_dets: tuple[int, ...] | list[int] | None = None) -> Rules:
    """The rules of ``compat`` (None, 'odm', 'dota', 'coco'), with ``ap_method`` overriding its AP method."""
    if compat is not None and compat not in COMPAT_MODES:
        raise EvalInputError(f"unknown compat mode {compat!r}; valid: {', '.join(COMPAT_MODES)}", EXIT_USAGE)
    if ap_method is not None and ap_method not in AP_METHODS:
        raise EvalInputError(f"unknown AP method {ap_method!r}; valid: {', '.join(AP_METHODS)}", EXIT_USAGE)
    dets = tuple(int(k) for k in (max_dets if max_dets is not None else DEFAULT_MAX_DETS))
    if not dets or min(dets) < 1:
        raise EvalInputError(f"max_dets must be positive integers, got {list(dets)}", EXIT_USAGE)
    dets = tuple(sorted(set(dets)))
    if compat == "odm":
        return Rules("odm", ap_method or "voc", iou_mode=IOU_ODM, max_dets=dets)
    if compat == "dota":
        return Rules("dota", ap_method or "voc07", strict_iou=True, map_all_classes=True, max_dets=dets)
    if compat == "coco":
        return Rules("coco", ap_method or "coco", matching="coco", max_dets=dets)
    return Rules(None, ap_method or "voc", max_dets=dets)


def parse_thresholds(spec: str | float | list | tuple | np.ndarray | None) -> np.ndarray:
    """IoU thresholds ``[T]`` float64 from ``'start:stop:step'``, ``'a,b,c'``, a number or a sequence.

    A range is built with ``np.linspace`` (never by adding float steps), so ``'0.50:0.95:0.05'`` is exactly
    ``np.linspace(0.5, 0.95, 10)``. None gives that default. Every threshold must be in (0, 1].
    """
    if spec is None:
        return COCO_THRESHOLDS.copy()
    if isinstance(spec, str):
        text = spec.strip()
        try:
            if ":" in text:
                parts = [float(p) for p in text.split(":")]
                if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
                    raise ValueError
                count = int(round((parts[1] - parts[0]) / parts[2])) + 1
                values = np.linspace(parts[0], parts[0] + (count - 1) * parts[2], count)
                if count > 1 and abs(values[-1] - parts[1]) < 1e-9:
                    values = np.linspace(parts[0], parts[1], count)
            else:
                values = np.array([float(p) for p in text.split(",") if p.strip()])
        except ValueError:
            raise EvalInputError(f"bad IoU thresholds {spec!r}: use 'start:stop:step' or 'a,b,c'", EXIT_USAGE) from None
    else:
        values = np.atleast_1d(np.asarray(spec, dtype=np.float64))
    if len(values) == 0 or not np.all(np.isfinite(values)) or values.min() <= 0 or values.max() > 1:
        raise EvalInputError(f"IoU thresholds must be in (0, 1], got {spec!r}", EXIT_USAGE)
    return np.asarray(values, dtype=np.float64)


def threshold_key(t: float) -> str:
    """``'0.50'`` style key of a threshold (more digits only where two decimals would not be exact)."""
    short = f"{t:.2f}"
    return short if abs(float(short) - t) < 1e-9 else f"{t:.6f}".rstrip("0")


def summary_key(thresholds: np.ndarray) -> str:
    """``'50-95'`` when the thresholds are the standard ten, else ``'mean'``."""
    if len(thresholds) == len(COCO_THRESHOLDS) and np.allclose(thresholds, COCO_THRESHOLDS, atol=1e-12):
        return KEY_50_95
    return KEY_MEAN
