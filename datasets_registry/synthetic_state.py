"""The scene being composed for one synthetic aerial image: its state, occupancy masks and sampling helpers.

This module owns :class:`Scene` (randomness, scale in pixels per metre, sun, occupancy masks and the layers
the layout fills for rendering) and the helpers every layout step shares: rasterised occupancy tests
(:func:`mask_hits`, :func:`mark`, :func:`mark_circle`), the fraction of a polygon inside the image, random
points and the weighted choice among the enabled vehicle classes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .synthetic_draw import choose, fill_circle, fill_poly
from .synthetic_options import SceneOptions
from obbdet.boxes import clip_polys_to_rect


@dataclass
class Scene:
    """A scene being composed: its randomness, scale, sun, occupancy masks and the layers to render.

    Layers are filled by the layout and drawn by :func:`datasets_registry.synthetic_render.render` in this
    order: ``materials`` (ground map), ``paint``, ``flat``, ``shadow_low``, ``low``, ``shadow_high``, ``high``.
    """

    rng: np.random.Generator
    width: int
    height: int
    opts: SceneOptions
    kind: str
    ppm: float  # pixels per metre
    phi: float  # dominant orientation of the layout
    shadow_dir: np.ndarray  # unit vector along which shadows fall
    shadow_k: float  # shadow length per metre of height, in px
    shadow_strength: float
    palette: dict
    reserve: np.ndarray  # [H, W] uint8: no building/tree/container may go here (roads, lots, obstacles)
    obstacle: np.ndarray  # [H, W] uint8: no vehicle may go here (buildings, trees, containers, islands)
    occupied: np.ndarray  # [H, W] uint8: vehicles placed so far
    materials: list = field(default_factory=list)  # (z order, material id, polygon)
    paint: list = field(default_factory=list)  # callables(paint masks dict): markings, road text
    flat: list = field(default_factory=list)  # callables(canvas): flush with the ground (beds, islands)
    shadow_low: list = field(default_factory=list)  # (darkness 0..255, polygon): vehicles, containers, stains
    low: list = field(default_factory=list)  # callables(canvas): vehicles, containers
    shadow_high: list = field(default_factory=list)  # (darkness 0..255, polygon): buildings and trees
    high: list = field(default_factory=list)  # callables(canvas): roofs, canopies
    candidates: list = field(default_factory=list)  # synthetic_placement.Slot: where the layout offers vehicles
    vehicles: list = field(default_factory=list)  # (Vehicle, visible fraction) of the placed vehicles
    free_stalls: list = field(default_factory=list)  # (centre, angle) of stalls no vehicle can use
    roads: list = field(default_factory=list)
    free_count: int = 0  # vehicles the layout wants at arbitrary angles on open ground
    material_map: np.ndarray | None = None  # [H, W] uint8 material ids, once the layout is done
    wear: np.ndarray | None = None  # [H, W] float32 paint opacity (worn markings), set by the ground pass

    def m(self, metres: float) -> float:
        return metres * self.ppm

    @property
    def diag(self) -> float:
        return math.hypot(self.width, self.height)

    @property
    def centre(self) -> np.ndarray:
        return np.array([self.width / 2, self.height / 2])

    def enabled(self, *classes: str) -> list[str]:
        return [c for c in classes if c in self.opts.classes]


def mask_hits(mask: np.ndarray, poly: np.ndarray) -> bool:
    """Whether ``poly`` ([P, 2], continuous px) covers any set pixel of ``mask`` (parts outside are free)."""
    x0, y0 = np.floor(poly.min(axis=0)).astype(int)
    x1, y1 = np.ceil(poly.max(axis=0)).astype(int) + 1
    h, w = mask.shape
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x0 >= x1 or y0 >= y1:
        return False
    sub = mask[y0:y1, x0:x1]
    if not sub.any():
        return False
    local = np.zeros_like(sub)
    fill_poly(local, poly - (x0, y0), 1, aa=False)
    return bool((local & sub).any())


def mark(mask: np.ndarray, poly: np.ndarray) -> None:
    fill_poly(mask, poly, 1, aa=False)


def mark_circle(mask: np.ndarray, centre, radius: float) -> None:
    fill_circle(mask, centre, radius, 1, aa=False)


def inside_fraction(scene: Scene, poly: np.ndarray) -> float:
    _, area_in, area = clip_polys_to_rect(poly[None], 0.0, 0.0, scene.width, scene.height)
    return float(area_in[0] / area[0]) if area[0] > 0 else 0.0


def random_point(scene: Scene, margin: float = 0.0) -> np.ndarray:
    return scene.rng.uniform([-margin, -margin], [scene.width + margin, scene.height + margin])


def class_choice(scene: Scene, weights: dict) -> str | None:
    """A class among the enabled ones with the given relative weights (None when none is enabled)."""
    names = [c for c in weights if c in scene.opts.classes and weights[c] > 0]
    if not names:
        return None
    return choose(scene.rng, names, [weights[c] for c in names])
