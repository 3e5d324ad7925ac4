"""The result object of an evaluation (what ``evaluate`` returns and ``results.json`` holds)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .core import SettingResult


@dataclass
class EvalResult:
    """All numbers of one evaluation; every AP/mAP/AR is a fraction in [0, 1].

    iou_thresholds: the thresholds evaluated.
    map: the reference setting's (the first listed, normally width scale 1.0) mAP per threshold key
        (``"0.50"`` .. ``"0.95"``) plus ``"50-95"`` (the mean over the standard ten thresholds; ``"mean"``
        for any other threshold list).
    per_class: class -> threshold key -> ``{ap, tp, fp, gt, det}`` for the reference setting.
    settings: one :class:`SettingResult` per evaluated width/length scale (the calibrated one last).
    coco: COCO-style summary of the reference setting (AP, AP50, AP75, APs, APm, APl, AR@k) or None.
    best_setting: the setting with the highest summary mAP, with its gain over the reference.
    calibration: the search curve and result of ``calibrate=True``, else None.
    """

    iou_thresholds: list[float]
    map: dict[str, float]
    per_class: dict[str, dict[str, dict]]
    settings: list[SettingResult]
    coco: dict | None
    best_setting: dict
    classes: list[str]
    map_classes: list[str]
    det_only_classes: list[str]
    rules: str
    ap_method: str
    compat: str | None
    counts: dict
    summary_key: str
    calibration: dict | None = None
    warnings: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def summary(self) -> float:
        """The headline number: mAP50-95 (or the mean over the thresholds evaluated)."""
        return self.map[self.summary_key]

    @property
    def reference(self) -> SettingResult:
        return self.settings[0]

    def operating_points(self, key: str = "0.50", setting: int = 0) -> dict[str, float | None]:
        """Per class, the score threshold with the best F1 at IoU ``key`` (None: no detections or positives),
        for ``settings[setting]`` (0: the reference; -1: the calibrated one after ``calibrate=True``)."""
        per_class = self.settings[setting].per_class
        return {name: per_class[name][key].f1_score for name in self.classes}

    def to_json(self) -> dict:
        """A JSON-serializable dict with the keys of the evaluation notes (all values fractions)."""
        return {
            "iou_thresholds": [float(t) for t in self.iou_thresholds],
            "map": dict(self.map),
            "per_class": self.per_class,
            "settings": [s.as_dict() for s in self.settings],
            "coco": self.coco,
            "best_setting": self.best_setting,
            "calibration": self.calibration,
            "classes": self.classes,
            "map_classes": self.map_classes,
            "det_only_classes": self.det_only_classes,
            "summary_key": self.summary_key,
            "rules": self.rules,
            "ap_method": self.ap_method,
            "compat": self.compat,
            "counts": self.counts,
            "warnings": self.warnings,
            "elapsed_s": self.elapsed_s,
        }

    def format_tables(self, per_class: bool = True) -> str:
        """The printed tables (per-IoU table, per-class tables, COCO-style summary) as one string."""
        from .report import format_tables

        return format_tables(self, per_class=per_class)
