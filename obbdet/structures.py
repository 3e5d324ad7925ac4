"""The records that flow between modules.

``ImageLabels``: one image's objects as read from or written to a label file (class names as strings);
used by formats, eval, tools and infer. ``Sample``: what a dataset importer yields (class indices into the
registry's unified list); used by the registry, augmentation and training. Boxes are always ``xywha``
le90 (see ``obbdet.boxes``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from obbdet.boxes import BOX_DIM


@dataclass
class ImageLabels:
    """Objects of one image.

    boxes: ``[N, 5]`` float64 xywha (le90, radians, pixels).
    classes: N class names.
    scores: ``[N]`` float64 for detections, None for ground truth.
    difficult: ``[N]`` bool; ignore: ``[N]`` bool (disabled markers, dropped from ground truth by eval).
    heading: ``[N]`` float64 radians in ``[-pi, pi)`` with NaN where unknown, or None.
    aabb: ``[N, 4]`` float64 ``[x_min, y_min, x_max, y_max]`` when the source format is axis-aligned
        (kept exactly, for axis-aligned IoU conventions), else None.
    extras: per object, the unknown keys of the source record (preserved by tools that rewrite files).
    """

    image: str | None = None
    width: int | None = None
    height: int | None = None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, BOX_DIM), np.float64))
    classes: list[str] = field(default_factory=list)
    scores: np.ndarray | None = None
    difficult: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    ignore: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    heading: np.ndarray | None = None
    aabb: np.ndarray | None = None
    extras: list[dict] | None = None

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, BOX_DIM)
        n = len(self.boxes)
        if len(self.classes) != n:
            raise ValueError(f"ImageLabels: {n} boxes but {len(self.classes)} classes")
        self.difficult = _flags_or_default(self.difficult, n, "difficult")
        self.ignore = _flags_or_default(self.ignore, n, "ignore")

    def __len__(self) -> int:
        return len(self.boxes)


def _flags_or_default(flags, n: int, name: str) -> np.ndarray:
    """A ``[n]`` bool array: ``flags`` as given, or all False when left at the empty default."""
    flags = np.asarray(flags, dtype=bool).reshape(-1)
    if len(flags) == 0:
        return np.zeros(n, bool)
    if len(flags) != n:
        raise ValueError(f"ImageLabels: {n} boxes but {len(flags)} {name} flags")
    return flags


@dataclass
class Sample:
    """One training/validation image as an importer yields it (the registry's sample contract).

    boxes: ``[N, 5]`` float32 xywha (le90, radians, pixels of this image).
    labels: ``[N]`` int64 indices into the registry's unified class list.
    difficult: ``[N]`` bool.
    heading: ``[N]`` float32 radians in ``[-pi, pi)`` (NaN where unknown) or None.
    angle_known: ``[N]`` bool, False for objects labelled only by an axis-aligned box (VAID, CARPK, a
        DroneVehicle ``<bndbox>``): their box is the object's bounds at angle 0 or -pi/2, a placeholder the
        angle loss must not learn. None (the default) means every angle is known.
    source: the dataset name the sample came from.
    """

    image_path: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    source: str = ""
    heading: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    angle_known: np.ndarray | None = None

    def __post_init__(self):
        self.angle_known = angle_known_flags(self.angle_known, len(self.boxes))

    def __setstate__(self, state: dict) -> None:
        # Samples pickled before the per-object mask carry one ``aabb_only`` flag for the whole image.
        state = dict(state)
        aabb_only = bool(state.pop("aabb_only", False))
        self.__dict__.update(state)
        if self.__dict__.get("angle_known") is None:
            self.angle_known = np.full(len(self.boxes), not aabb_only)

    @property
    def aabb_only(self) -> bool:
        """True when the image has objects and none of them has a known angle (e.g. every VAID image)."""
        return len(self.angle_known) > 0 and not self.angle_known.any()

    def __len__(self) -> int:
        return len(self.boxes)


def angle_known_flags(flags, n: int, aabb_only: bool = False) -> np.ndarray:
    """``[n]`` bool per-object angle mask: ``flags`` as given, or all ``not aabb_only`` when None."""
    if flags is None:
        return np.full(n, not aabb_only)
    flags = np.asarray(flags, dtype=bool).reshape(-1)
    if len(flags) != n:
        raise ValueError(f"{n} boxes but {len(flags)} angle_known flags")
    return flags
