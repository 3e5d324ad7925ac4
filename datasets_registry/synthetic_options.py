"""Options of the synthetic aerial scenes: the class names, the scene kinds and the validated options.

This module owns what a caller may ask of a scene: ``SYNTHETIC_CLASSES``, ``SCENE_KINDS``,
:class:`SceneOptions` with its validation and JSON form (its ``vehicle_width`` is the pixel width of a car
``datasets_registry.scale.CAR_WIDTH_M`` wide, as the registry's gsd), and :func:`as_range` for options given
as a number or a ``(low, high)`` pair.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

SYNTHETIC_CLASSES = ("car", "truck", "bus", "van")
SCENE_KINDS = ("parking", "street", "suburb", "depot", "yard")


@dataclass(frozen=True)
class SceneOptions:
    """Options of :func:`datasets_registry.synthetic_scene.render_scene` (every field can be passed as a keyword).

    vehicle_width: pixel width of a typical car (1.8 m): a number, or ``(low, high)`` drawn per scene.
    n_vehicles: None (a natural count for the layout), a number, or ``(low, high)`` drawn per scene. A number
        is a target: if the layout has no room for all of them a warning is logged.
    dense: parking-dominated layouts with nearly full lots (e.g. 600 vehicles in a 2048 x 2048 scene).
    classes: the vehicle classes drawn (a subset of ``SYNTHETIC_CLASSES``); label indices follow this order.
    hard_negatives: draw roof windows, eaves, solar panels, car-sized shadows, oil stains, flowerbeds,
        containers, road text and arrows.
    scene: one of ``SCENE_KINDS`` or None (drawn per seed).
    """

    vehicle_width: float | tuple[float, float] = (12.0, 24.0)
    n_vehicles: int | tuple[int, int] | None = None
    dense: bool = False
    classes: tuple[str, ...] = SYNTHETIC_CLASSES
    hard_negatives: bool = True
    scene: str | None = None

    @classmethod
    def from_kwargs(cls, options: dict) -> "SceneOptions":
        """Validated options; unknown names, unknown classes and bad ranges raise ValueError/TypeError."""
        self = cls(**option_fields(cls, options, "synthetic scene"))
        self._validate()
        return self

    def _validate(self) -> None:
        bad = [c for c in self.classes if c not in SYNTHETIC_CLASSES]
        if bad or not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be distinct names from {SYNTHETIC_CLASSES}, got {self.classes}")
        low, high = as_range(self.vehicle_width)
        if not 3.0 <= low <= high <= 200.0:
            raise ValueError(f"vehicle_width must be in [3, 200] px (low <= high), got {self.vehicle_width}")
        if self.n_vehicles is not None:
            low, high = as_range(self.n_vehicles)
            if low < 0 or high < low:
                raise ValueError(f"n_vehicles must be >= 0 (low <= high), got {self.n_vehicles}")
        if self.scene is not None and self.scene not in SCENE_KINDS:
            raise ValueError(f"scene must be one of {SCENE_KINDS} or None, got {self.scene!r}")

    def to_json(self) -> dict:
        """JSON-ready dict (tuples as lists), used in manifests and cache keys."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def option_fields(cls, options: dict, what: str) -> dict:
    """``options`` as keyword arguments of the options dataclass ``cls``: unknown names raise TypeError (naming
    ``what``); ranges given as lists become tuples, a single class name a 1-tuple."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(f"unknown {what} option(s) {unknown}; valid: {sorted(names)}")
    opts = dict(options)
    for key in ("vehicle_width", "n_vehicles"):
        if isinstance(opts.get(key), list):
            opts[key] = tuple(opts[key])
    if "classes" in opts:
        opts["classes"] = (opts["classes"],) if isinstance(opts["classes"], str) else tuple(opts["classes"])
    return opts


def as_range(value) -> tuple[float, float]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"expected a number or a (low, high) pair, got {value!r}")
        return float(value[0]), float(value[1])
    return float(value), float(value)
