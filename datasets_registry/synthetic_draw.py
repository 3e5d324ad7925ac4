"""Drawing for the synthetic aerial scenes: primitives, palettes, vehicles, roofs, ground objects, paint, noise.

Coordinates are continuous pixels: pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``, so polygons are shifted by
half a pixel for OpenCV (which puts pixel centres on integers) and drawn at 1/16 px precision, anti-aliased.
Shapes are built in a local :class:`Frame` (``+u`` along a vehicle's front, ``+v`` 90 degrees clockwise on
screen). Factories that need randomness or the scale take the scene being composed
(:class:`datasets_registry.synthetic_scene.Scene`: ``rng``, ``m()`` metres to pixels, ``opts``, the sun's
``shadow_dir`` / ``shadow_k``) and draw all their random choices up front, so drawing consumes no randomness.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np

if TYPE_CHECKING:
    from .synthetic_scene import Scene

_SHIFT = 4  # OpenCV fixed-point bits: polygons are drawn at 1/16 px
_ONE = 1 << _SHIFT

# materials of the ground map
GRASS, SOIL, ASPHALT, LOT, CONCRETE, PAVERS, SIDEWALK = range(7)


# ---------------------------------------------------------------------------------------------------
# Drawing primitives (continuous coordinates: pixel (i, j) covers [i, i+1) x [j, j+1))
# ---------------------------------------------------------------------------------------------------

def _fixed(poly: np.ndarray) -> np.ndarray:
    """Polygon ``[P, 2]`` in continuous coordinates -> OpenCV fixed-point vertices (pixel centres at ints)."""
    return np.round((np.asarray(poly, np.float64) - 0.5) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def fill_poly(img: np.ndarray, polys, color, aa: bool = True) -> None:
    """Fill polygons (each ``[P, 2]``) with ``color`` (a scalar for masks), anti-aliased on uint8."""
    if isinstance(polys, np.ndarray) and polys.ndim == 2:
        polys = [polys]
    color = tuple(map(float, color)) if isinstance(color, (tuple, list, np.ndarray)) else float(color)
    cv2.fillPoly(img, [_fixed(p) for p in polys], color, cv2.LINE_AA if aa else cv2.LINE_8, _SHIFT)


def fill_circle(img: np.ndarray, centre, radius: float, color, aa: bool = True) -> None:
    color = tuple(float(c) for c in color) if np.ndim(color) else float(color)
    c = np.round((np.asarray(centre, np.float64) - 0.5) * _ONE).astype(int)
    cv2.circle(img, (int(c[0]), int(c[1])), max(int(round(radius * _ONE)), 1), color, -1,
               cv2.LINE_AA if aa else cv2.LINE_8, _SHIFT)


_ARC = np.linspace(0.0, math.pi / 2, 4)  # corner arcs of rounded rectangles


class Frame:
    """A local frame: origin (cx, cy), +u along ``angle`` (a vehicle's front), +v 90 degrees clockwise."""

    def __init__(self, cx: float, cy: float, angle: float):
        self.cx, self.cy = cx, cy
        self.cos, self.sin = math.cos(angle), math.sin(angle)
        self._rot = np.array([[self.cos, self.sin], [-self.sin, self.cos]])
        self._origin = np.array([cx, cy])

    def pts(self, uv) -> np.ndarray:
        """Image coordinates ``[P, 2]`` of frame points ``[P, 2]``."""
        return np.asarray(uv, np.float64).reshape(-1, 2) @ self._rot + self._origin

    def rect(self, u0, u1, v0, v1) -> np.ndarray:
        return self.pts([(u0, v0), (u1, v0), (u1, v1), (u0, v1)])

    def trapezoid(self, u0, half0, u1, half1) -> np.ndarray:
        """Quadrilateral with half-width ``half0`` at ``u0`` and ``half1`` at ``u1`` (symmetric about v=0)."""
        return self.pts([(u0, -half0), (u1, -half1), (u1, half1), (u0, half0)])

    def rounded(self, u0, u1, v0, v1, r_front, r_rear) -> np.ndarray:
        """Rectangle ``[u0, u1] x [v0, v1]`` with corner radii ``r_front`` (at ``u1``) and ``r_rear`` (px)."""
        pts = []
        rf = min(r_front, (u1 - u0) / 2, (v1 - v0) / 2)
        rr = min(r_rear, (u1 - u0) / 2, (v1 - v0) / 2)
        for (cu, cv, r, start) in ((u1 - rf, v0 + rf, rf, -math.pi / 2), (u1 - rf, v1 - rf, rf, 0.0),
                                   (u0 + rr, v1 - rr, rr, math.pi / 2), (u0 + rr, v0 + rr, rr, math.pi)):
            pts.append(np.stack([cu + r * np.cos(start + _ARC), cv + r * np.sin(start + _ARC)], axis=-1))
        return self.pts(np.concatenate(pts))


def shade(color, factor: float, add: float = 0.0) -> tuple:
    return tuple(float(min(max(c * factor + add, 0.0), 255.0)) for c in color)


def jitter(rng: np.random.Generator, color, amount: float) -> tuple:
    return tuple(float(np.clip(c + rng.normal(0, amount), 0, 255)) for c in color)


def hull(points: np.ndarray) -> np.ndarray:
    return cv2.convexHull(points.astype(np.float32)).reshape(-1, 2).astype(np.float64)


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Zero-mean, unit-ish variance noise ``[H, W]`` float32 with features about ``cell`` px across."""
    gh, gw = max(int(height / cell) + 2, 2), max(int(width / cell) + 2, 2)
    small = rng.standard_normal((gh, gw), dtype=np.float32)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC) * 1.3


# ---------------------------------------------------------------------------------------------------
# Palettes
# ---------------------------------------------------------------------------------------------------

# (colour RGB, weight): the global car-colour mix (white, black, grey and silver dominate)
_CAR_COLOURS = [((236, 236, 232), 0.25), ((24, 24, 27), 0.18), ((108, 110, 114), 0.16), ((176, 179, 183), 0.14),
                ((28, 42, 86), 0.07), ((158, 24, 26), 0.08), ((40, 82, 160), 0.04), ((148, 124, 94), 0.03),
                ((36, 78, 48), 0.03), ((214, 182, 40), 0.01), ((215, 110, 30), 0.01)]
_VAN_COLOURS = [((240, 240, 236), 0.55), ((176, 179, 183), 0.15), ((24, 24, 27), 0.08), ((28, 42, 86), 0.08),
                ((158, 24, 26), 0.06), ((214, 182, 40), 0.04), ((36, 78, 48), 0.04)]
_BUS_COLOURS = [((238, 238, 234), 0.35), ((226, 176, 24), 0.15), ((176, 30, 30), 0.15), ((30, 70, 150), 0.12),
                ((40, 120, 70), 0.1), ((200, 200, 200), 0.08), ((230, 110, 20), 0.05)]
_CAB_COLOURS = [((238, 238, 234), 0.4), ((170, 28, 28), 0.15), ((30, 60, 140), 0.15), ((40, 40, 44), 0.1),
                ((200, 150, 30), 0.08), ((36, 90, 56), 0.07), ((160, 162, 166), 0.05)]
CONTAINER_COLOURS = [((238, 238, 234), 0.5), ((150, 50, 36), 0.15), ((40, 80, 140), 0.12),
                     ((60, 110, 70), 0.08), ((200, 120, 40), 0.08), ((130, 130, 130), 0.07)]
_ROOF_COLOURS = [((166, 84, 62), 0.28), ((110, 104, 100), 0.22), ((70, 70, 76), 0.18), ((140, 120, 100), 0.12),
                 ((96, 60, 50), 0.1), ((120, 130, 140), 0.1)]
_FLAT_ROOF_COLOURS = [((190, 188, 182), 0.4), ((150, 150, 148), 0.25), ((90, 90, 92), 0.2), ((200, 190, 170), 0.15)]


def choose(rng: np.random.Generator, options, weights):
    """One of ``options`` drawn with relative ``weights`` (a cheap stand-in for ``rng.choice(p=...)``)."""
    total = float(sum(weights))
    x = rng.random() * total
    for option, w in zip(options, weights):
        x -= w
        if x < 0:
            return option
    return options[-1]


def pick(rng: np.random.Generator, table) -> tuple:
    """A colour from a ``[(colour, weight), ...]`` table."""
    return choose(rng, [c for c, _ in table], [w for _, w in table])


def make_palette(rng: np.random.Generator) -> dict:
    road = rng.uniform(72, 122)
    lot = float(np.clip(road + rng.normal(0, 12), 65, 135))
    concrete = rng.uniform(140, 190)
    tint = rng.normal(0, 3, 3)
    return {
        GRASS: ((rng.uniform(60, 95), rng.uniform(95, 125), rng.uniform(40, 62)),
                (rng.uniform(115, 145), rng.uniform(118, 138), rng.uniform(70, 92))),
        SOIL: ((128, 104, 78), (98, 82, 62)),
        ASPHALT: (tuple(road * np.array([0.97, 0.99, 1.0]) + tint), tuple((road + 16) * np.array([1.0, 1.0, 0.98]))),
        LOT: (tuple(lot * np.array([0.98, 0.99, 1.0]) + tint), tuple((lot + 14) * np.array([1.0, 0.99, 0.97]))),
        CONCRETE: (tuple(concrete * np.array([1.0, 0.99, 0.95])), tuple((concrete - 18) * np.array([1.0, 1.0, 0.97]))),
        PAVERS: ((150, 122, 106), (128, 108, 98)),
        SIDEWALK: (tuple((concrete + 10) * np.array([1.0, 0.99, 0.96])), tuple(concrete * np.array([1.0, 0.99, 0.96]))),
        "white": (226, 226, 220),
        "yellow": (218, 182, 58),
        "dark": (40, 40, 42),
    }


# (low-frequency colour mix amount, mid-frequency brightness, fine grain) per material
TEXTURE = {GRASS: (0.8, 10.0, 9.0), SOIL: (0.6, 8.0, 8.0), ASPHALT: (0.35, 4.0, 5.0), LOT: (0.35, 4.0, 5.0),
            CONCRETE: (0.3, 4.0, 3.5), PAVERS: (0.5, 6.0, 6.0), SIDEWALK: (0.3, 3.0, 3.5)}


@dataclass
class Vehicle:
    """One vehicle: class, footprint (px), heading (rad, its front), look and kind of slot."""

    cls: str
    cx: float
    cy: float
    length: float
    width: float
    heading: float
    style: str
    height_m: float
    body: tuple
    kind: str = "free"
    weight: float = 1.0
    extra: dict = field(default_factory=dict)

    def poly(self, grow: float = 0.0) -> np.ndarray:
        return Frame(self.cx, self.cy, self.heading).rect(
            -self.length / 2 - grow, self.length / 2 + grow, -self.width / 2 - grow, self.width / 2 + grow)


# ---------------------------------------------------------------------------------------------------
# Vehicles: sizes and looks
# ---------------------------------------------------------------------------------------------------

def _car_style(rng: np.random.Generator) -> tuple[str, float, float, float]:
    """(style, length m, width m, height m) of a car."""
    style = choose(rng, ("sedan", "hatchback", "suv", "pickup"), (0.45, 0.25, 0.22, 0.08))
    if style == "sedan":
        return style, rng.uniform(4.3, 4.8), rng.uniform(1.76, 1.86), 1.45
    if style == "hatchback":
        return style, rng.uniform(3.85, 4.3), rng.uniform(1.70, 1.80), 1.5
    if style == "suv":
        return style, rng.uniform(4.4, 4.8), rng.uniform(1.84, 1.95), 1.7
    return style, rng.uniform(5.1, 5.5), rng.uniform(1.86, 2.0), 1.85


def make_vehicle(scene: "Scene", cls: str, centre, heading: float, kind: str = "free", weight: float = 1.0,
                 max_length_m: float | None = None) -> Vehicle:
    """A vehicle of class ``cls`` with sampled size and look at ``centre`` pointing along ``heading``."""
    rng = scene.rng
    extra: dict = {}
    if cls == "car":
        style, length, width, height = _car_style(rng)
        if max_length_m is not None and length > max_length_m:
            style, length, width, height = "hatchback", rng.uniform(3.9, 4.3), rng.uniform(1.70, 1.80), 1.5
        body = jitter(rng, pick(rng, _CAR_COLOURS), 6)
    elif cls == "van":
        style = ("panel", "window")[int(rng.random() < 0.35)]
        length, width, height = rng.uniform(4.9, 5.9), rng.uniform(1.95, 2.1), rng.uniform(2.0, 2.6)
        if max_length_m is not None:
            length = min(length, max(max_length_m, 4.9))
        body = jitter(rng, pick(rng, _VAN_COLOURS), 5)
    elif cls == "truck":
        articulated = rng.random() < 0.3 and (max_length_m is None or max_length_m >= 14)
        style = "articulated" if articulated else choose(rng, ("box", "flatbed", "tanker", "tipper"),
                                                            (0.55, 0.15, 0.12, 0.18))
        length = rng.uniform(13.5, 16.5) if articulated else rng.uniform(6.5, 10.0)
        width, height = rng.uniform(2.45, 2.55), rng.uniform(3.2, 4.0)
        if max_length_m is not None:
            length = min(length, max_length_m)
        body = jitter(rng, pick(rng, CONTAINER_COLOURS), 5)
        extra["cab"] = jitter(rng, pick(rng, _CAB_COLOURS), 5)
        extra["cargo"] = jitter(rng, (150, 122, 86), 25)
    elif cls == "bus":
        style = "bus"
        length = rng.uniform(10.5, 13.5) if rng.random() > 0.1 else rng.uniform(17.5, 18.5)
        width, height = rng.uniform(2.5, 2.55), rng.uniform(3.0, 3.3)
        if max_length_m is not None:
            length = min(length, max_length_m)
        body = jitter(rng, pick(rng, _BUS_COLOURS), 5)
        extra["roof"] = jitter(rng, (214, 216, 218), 8) if rng.random() < 0.7 else body
        extra["ac_at"] = rng.uniform(0.05, 0.3)
    else:
        raise ValueError(f"unknown vehicle class {cls!r}")
    glass = rng.uniform(22, 70)
    extra["glass"] = (glass, glass + 3, glass + 9)
    return Vehicle(cls, float(centre[0]), float(centre[1]), scene.m(length), scene.m(width),
                    float(heading), style, height, body, kind, weight, extra)


def _edge_colour(body) -> tuple:
    return shade(body, 0.5, 8)


def _draw_body(canvas: np.ndarray, f: Frame, length: float, width: float, body, r_front: float,
               r_rear: float) -> None:
    """Outer rounded footprint in a dark rim colour, then the body inset by about 0.06 of the width."""
    hl, hw = length / 2, width / 2
    fill_poly(canvas, f.rounded(-hl, hl, -hw, hw, r_front, r_rear), _edge_colour(body))
    e = max(0.45, 0.07 * width)
    fill_poly(canvas, f.rounded(-hl + e, hl - e, -hw + e, hw - e, max(r_front - e, 0.3), max(r_rear - e, 0.3)), body)


def _draw_car(canvas: np.ndarray, v: Vehicle) -> None:
    f = Frame(v.cx, v.cy, v.heading)
    L, W, body, glass = v.length, v.width, v.body, v.extra["glass"]
    _draw_body(canvas, f, L, W, body, 0.3 * W, 0.22 * W)
    # (windshield start, roof start, rear window start, rear window end) as fractions of L from the front
    layout = {"sedan": (0.29, 0.45, 0.70, 0.82), "hatchback": (0.27, 0.42, 0.76, 0.93),
              "suv": (0.25, 0.40, 0.80, 0.94), "pickup": (0.25, 0.40, 0.57, 0.62)}[v.style]
    ws, rs, rws, rwe = (0.5 - x for x in layout)  # as u coordinates, front at +L/2
    fill_poly(canvas, f.trapezoid(ws * L, 0.41 * W, rs * L, 0.35 * W), glass)
    fill_poly(canvas, f.rect(rws * L, rs * L, -0.41 * W, 0.41 * W), shade(glass, 1.25, 6))  # side windows
    roof = shade(body, 1.05, 4)
    fill_poly(canvas, f.rounded(rws * L + 0.01 * L, rs * L - 0.01 * L, -0.34 * W, 0.34 * W, 0.1 * W, 0.1 * W), roof)
    fill_poly(canvas, f.trapezoid(rws * L, 0.35 * W, rwe * L, 0.39 * W), glass)
    if v.style == "pickup":  # open bed behind the cab
        fill_poly(canvas, f.rect(-0.46 * L, rwe * L - 0.02 * L, -0.38 * W, 0.38 * W), shade(body, 0.55, 10))
    elif v.style == "suv":  # roof rails
        for side in (-1, 1):
            fill_poly(canvas, f.rect(rws * L, rs * L, side * 0.33 * W - 0.03 * W, side * 0.33 * W + 0.03 * W),
                  shade(body, 0.6, 10))
    fill_poly(canvas, f.rect(0.43 * L, 0.47 * L, -0.4 * W, -0.24 * W), (235, 232, 210))  # headlights
    fill_poly(canvas, f.rect(0.43 * L, 0.47 * L, 0.24 * W, 0.4 * W), (235, 232, 210))
    fill_poly(canvas, f.rect(-0.48 * L, -0.45 * L, -0.42 * W, -0.26 * W), (170, 30, 30))  # tail lights
    fill_poly(canvas, f.rect(-0.48 * L, -0.45 * L, 0.26 * W, 0.42 * W), (170, 30, 30))


def _draw_van(canvas: np.ndarray, v: Vehicle) -> None:
    f = Frame(v.cx, v.cy, v.heading)
    L, W, body, glass = v.length, v.width, v.body, v.extra["glass"]
    _draw_body(canvas, f, L, W, body, 0.28 * W, 0.1 * W)
    hood = 0.5 * L - min(0.16 * L, 0.4 * W * 1.1)
    ws = hood - 0.13 * L
    fill_poly(canvas, f.rect(hood, 0.47 * L, -0.4 * W, 0.4 * W), shade(body, 0.93))
    fill_poly(canvas, f.trapezoid(hood, 0.43 * W, ws, 0.41 * W), glass)
    roof = shade(body, 1.04, 4)
    fill_poly(canvas, f.rect(-0.47 * L, ws, -0.42 * W, 0.42 * W), roof)
    if v.style == "window":  # passenger van: side window bands
        for side in (-1, 1):
            fill_poly(canvas, f.rect(-0.3 * L, ws - 0.02 * L, side * 0.43 * W - 0.03 * W, side * 0.43 * W + 0.03 * W),
                  shade(glass, 1.2, 5))
    ribs = shade(body, 0.88)
    for u in np.linspace(-0.4 * L, ws - 0.08 * L, 4):  # roof ribs of a panel van
        fill_poly(canvas, f.rect(u - 0.012 * L, u + 0.012 * L, -0.4 * W, 0.4 * W), ribs)
    fill_poly(canvas, f.rect(0.46 * L, 0.49 * L, -0.42 * W, -0.25 * W), (235, 232, 210))
    fill_poly(canvas, f.rect(0.46 * L, 0.49 * L, 0.25 * W, 0.42 * W), (235, 232, 210))
    fill_poly(canvas, f.rect(-0.495 * L, -0.47 * L, -0.44 * W, -0.3 * W), (170, 30, 30))
    fill_poly(canvas, f.rect(-0.495 * L, -0.47 * L, 0.3 * W, 0.44 * W), (170, 30, 30))


def _draw_truck(canvas: np.ndarray, v: Vehicle, ppm: float) -> None:
    f = Frame(v.cx, v.cy, v.heading)
    L, W, body, cab, glass = v.length, v.width, v.body, v.extra["cab"], v.extra["glass"]
    hl, hw = L / 2, W / 2
    cab_len = min(2.3 * ppm, 0.4 * L)
    gap = 0.45 * ppm
    # chassis under everything (visible in the gap between cab and load), then cab and load
    fill_poly(canvas, f.rect(-hl, hl, -0.42 * W, 0.42 * W), (42, 42, 44))
    cab_u0 = hl - cab_len
    fill_poly(canvas, f.rounded(cab_u0, hl, -hw, hw, 0.18 * W, 0.05 * W), _edge_colour(cab))
    e = max(0.45, 0.06 * W)
    fill_poly(canvas, f.rounded(cab_u0 + e, hl - e, -hw + e, hw - e, 0.14 * W, 0.04 * W), cab)
    fill_poly(canvas, f.trapezoid(cab_u0 + 0.55 * cab_len, 0.38 * W, cab_u0 + 0.15 * cab_len, 0.3 * W),
          shade(cab, 1.08, 6))  # roof deflector
    fill_poly(canvas, f.rect(hl - 0.3 * ppm, hl - e, -0.44 * W, 0.44 * W), glass)  # windshield edge
    load_u1 = cab_u0 - gap
    if v.style == "articulated":
        load_u1 = cab_u0 - 0.8 * ppm  # fifth wheel gap of a tractor unit
    load = f.rect(-hl, load_u1, -hw, hw)
    if v.style in ("box", "articulated"):
        fill_poly(canvas, load, _edge_colour(body))
        fill_poly(canvas, f.rect(-hl + e, load_u1 - e, -hw + e, hw - e), body)
        rib = shade(body, 0.9)
        for u in np.arange(-hl + 1.2 * ppm, load_u1 - 0.6 * ppm, 1.2 * ppm):
            fill_poly(canvas, f.rect(u - 0.05 * ppm, u + 0.05 * ppm, -hw + e, hw - e), rib)
    elif v.style == "flatbed":
        fill_poly(canvas, load, (70, 66, 60))
        cargo = v.extra["cargo"]
        n = max(int((load_u1 + hl) / (2.4 * ppm)), 1)
        edges = np.linspace(-hl + 0.2 * ppm, load_u1 - 0.2 * ppm, n + 1)
        for a, b in zip(edges[:-1], edges[1:]):
            fill_poly(canvas, f.rect(a + 0.1 * ppm, b - 0.1 * ppm, -0.42 * W, 0.42 * W), shade(cargo, 1.0))
    elif v.style == "tanker":
        fill_poly(canvas, load, shade(body, 0.6))
        for frac, factor in ((0.46, 0.75), (0.36, 0.95), (0.2, 1.12)):  # a cylinder lit from above
            fill_poly(canvas, f.rect(-hl + 0.2 * ppm, load_u1 - 0.2 * ppm, -frac * W, frac * W), shade(body, factor))
    else:  # tipper: open box, dark load
        fill_poly(canvas, load, _edge_colour(body))
        fill_poly(canvas, f.rect(-hl + e, load_u1 - e, -hw + e, hw - e), body)
        fill_poly(canvas, f.rect(-hl + 2 * e, load_u1 - 2 * e, -hw + 2 * e, hw - 2 * e), (96, 84, 70))


def _draw_bus(canvas: np.ndarray, v: Vehicle, ppm: float) -> None:
    f = Frame(v.cx, v.cy, v.heading)
    L, W, body, glass, roof = v.length, v.width, v.body, v.extra["glass"], v.extra["roof"]
    hl, hw = L / 2, W / 2
    _draw_body(canvas, f, L, W, body, 0.2 * W, 0.12 * W)
    for side in (-1, 1):  # window bands along both sides
        band = side * 0.44 * W
        fill_poly(canvas, f.rect(-hl + 1.2 * ppm, hl - 0.7 * ppm, band - 0.04 * W, band + 0.04 * W),
                  shade(glass, 1.1, 4))
    fill_poly(canvas, f.rect(-hl + 0.35 * ppm, hl - 0.6 * ppm, -0.39 * W, 0.39 * W), roof)
    fill_poly(canvas, f.rounded(hl - 0.55 * ppm, hl - 0.06 * ppm, -0.45 * W, 0.45 * W, 0.15 * W, 0.02 * W), glass)
    ac_len = min(3.2 * ppm, 0.3 * L)
    ac_u1 = hl - 0.6 * ppm - v.extra["ac_at"] * L
    ac = shade(roof, 1.08, 12)
    fill_poly(canvas, f.rect(ac_u1 - ac_len, ac_u1, -0.33 * W, 0.33 * W), shade(ac, 0.7))
    fill_poly(canvas, f.rect(ac_u1 - ac_len + 0.08 * ppm, ac_u1 - 0.08 * ppm, -0.3 * W, 0.3 * W), ac)
    for u in (ac_u1 - ac_len - 1.6 * ppm, -hl + 2.2 * ppm):  # roof hatches
        fill_poly(canvas, f.rect(u - 0.4 * ppm, u + 0.4 * ppm, -0.2 * W, 0.2 * W), shade(roof, 0.8))
    fill_poly(canvas, f.rect(-hl + 0.1 * ppm, -hl + 0.45 * ppm, -0.36 * W, 0.36 * W), (60, 60, 62))  # engine grille


# class -> drawer(canvas, vehicle, pixels per metre)
VEHICLE_DRAWERS = {"car": lambda canvas, v, ppm: _draw_car(canvas, v),
                   "van": lambda canvas, v, ppm: _draw_van(canvas, v),
                   "truck": _draw_truck, "bus": _draw_bus}


# ---------------------------------------------------------------------------------------------------
# Ground objects, roofs and paint
# ---------------------------------------------------------------------------------------------------

def paint_poly(colour: str, poly: np.ndarray) -> Callable:
    def paint(masks):
        fill_poly(masks[colour], poly, 255)
    return paint


def bed_drawer(scene: "Scene", outer: np.ndarray, inner: np.ndarray, kind: str) -> Callable:
    """A kerbed bed (island, flowerbed, planter): kerb, soil or grass, plants."""
    rng = scene.rng
    kerb = jitter(rng, (185, 184, 178), 8)
    base = {"grass": (84, 116, 56), "flowers": (92, 72, 54), "shrubs": (88, 74, 56)}[kind]
    base = jitter(rng, base, 6)
    centre = inner.mean(axis=0)
    extent = np.abs(inner - centre).max()
    blobs = []
    if kind != "grass":
        n = int(rng.integers(6, 18))
        for _ in range(n):
            pt = centre + (inner[int(rng.integers(4))] - centre) * rng.uniform(0, 0.8) + rng.normal(0, extent * 0.15, 2)
            if kind == "flowers":
                colour = pick(rng, [((200, 40, 60), 1), ((230, 200, 60), 1), ((240, 240, 240), 1),
                                     ((60, 110, 50), 3), ((170, 80, 170), 1)])
                blobs.append((pt, scene.m(rng.uniform(0.15, 0.35)), jitter(rng, colour, 10)))
            else:
                blobs.append((pt, scene.m(rng.uniform(0.3, 0.7)), jitter(rng, (48, 84, 40), 10)))

    def draw(canvas):
        fill_poly(canvas, outer, kerb)
        fill_poly(canvas, inner, base)
        for pt, r, colour in blobs:
            fill_circle(canvas, pt, r, colour)
    return draw


def _face_light(scene: "Scene", normal: np.ndarray) -> float:
    """Brightness factor of a roof face whose outward normal (image plane) is ``normal``."""
    return 1.0 + 0.3 * float(normal @ -scene.shadow_dir)


def roof_drawer(scene: "Scene", f: Frame, length: float, width: float, roof: str) -> Callable:
    rng = scene.rng
    hl, hw = length / 2, width / 2
    eave = scene.m(rng.uniform(0.3, 0.5)) if scene.opts.hard_negatives else 0.0
    colour = jitter(rng, pick(rng, _FLAT_ROOF_COLOURS if roof == "flat" else _ROOF_COLOURS), 8)
    fascia = jitter(rng, (228, 226, 220) if rng.random() < 0.5 else shade(colour, 0.6), 6)
    e_u = np.array([f.cos, f.sin])
    e_v = np.array([-f.sin, f.cos])
    ops: list[tuple[np.ndarray, tuple]] = [(f.rect(-hl, hl, -hw, hw), fascia if eave else colour)]
    hl_i, hw_i = hl - eave, hw - eave
    if roof == "gable":
        for side in (-1, 1):
            face = f.rect(-hl_i, hl_i, min(0, side * hw_i), max(0, side * hw_i))
            ops.append((face, shade(colour, _face_light(scene, side * e_v))))
        ops.append((f.rect(-hl_i, hl_i, -scene.m(0.12), scene.m(0.12)), shade(colour, 1.15, 10)))  # ridge
        ops += _roof_lines(scene, f, hl_i, hw_i, colour)
    elif roof == "hip":
        r = max(hl_i - hw_i, 0.0)
        faces = [([(-hl_i, -hw_i), (hl_i, -hw_i), (r, 0), (-r, 0)], -e_v),
                 ([(-hl_i, hw_i), (hl_i, hw_i), (r, 0), (-r, 0)], e_v),
                 ([(hl_i, -hw_i), (hl_i, hw_i), (r, 0)], e_u),
                 ([(-hl_i, -hw_i), (-hl_i, hw_i), (-r, 0)], -e_u)]
        for pts, normal in faces:
            ops.append((f.pts(pts), shade(colour, _face_light(scene, normal))))
    else:
        ops.append((f.rect(-hl_i, hl_i, -hw_i, hw_i), colour))
        for _ in range(int(rng.integers(0, 4))):  # membrane patches
            u, v = rng.uniform(-0.6, 0.6) * hl_i, rng.uniform(-0.6, 0.6) * hw_i
            a, b = rng.uniform(0.1, 0.3) * hl_i, rng.uniform(0.1, 0.3) * hw_i
            ops.append((f.rect(u - a, u + a, v - b, v + b), jitter(rng, colour, 6)))
    ops += _roof_fixtures(scene, f, hl_i, hw_i, roof, colour)
    if roof != "flat" and rng.random() < 0.5:  # chimney with its shadow
        u, v = rng.uniform(-0.7, 0.7) * hl_i, rng.uniform(-0.6, 0.6) * hw_i
        c = scene.m(0.35)
        sh = scene.shadow_dir * scene.shadow_k * 1.2
        ops.append((f.rect(u - c, u + c, v - c, v + c) + sh, shade(colour, 0.45)))
        ops.append((f.rect(u - c, u + c, v - c, v + c), jitter(rng, (120, 90, 80), 10)))

    def draw(canvas):
        for poly, col in ops:
            fill_poly(canvas, poly, col)
    return draw


def _roof_lines(scene: "Scene", f: Frame, hl: float, hw: float, colour) -> list:
    """Tile courses parallel to the ridge."""
    step = scene.m(0.9)
    if step < 2.5:
        return []
    line = shade(colour, 0.85)
    half = 0.25 if step < 6 else 0.5
    return [(f.rect(-hl, hl, v - half, v + half), line) for v in np.arange(-hw + step, hw - step / 2, step)
            if abs(v) > step / 2]


def _roof_fixtures(scene: "Scene", f: Frame, hl: float, hw: float, roof: str, colour) -> list:
    """Roof windows, solar panels, skylights and plant units: vehicle-sized hard negatives on roofs."""
    if not scene.opts.hard_negatives:
        return []
    rng = scene.rng
    ops = []
    for _ in range(int(rng.integers(0, 4))):
        kind = rng.choice(["window", "solar", "unit" if roof == "flat" else "window"], p=[0.45, 0.3, 0.25])
        if kind == "solar":
            nu, nv = int(rng.integers(1, 5)), int(rng.integers(1, 3))
            pu, pv = scene.m(1.0), scene.m(1.7)
        elif kind == "window":
            nu, nv = 1, 1
            pu, pv = scene.m(rng.uniform(0.8, 1.4)), scene.m(rng.uniform(1.1, 2.6))
        else:
            nu, nv = 1, 1
            pu, pv = scene.m(rng.uniform(1.2, 2.5)), scene.m(rng.uniform(2.0, 4.5))
        if nu * pu > 1.6 * hl or nv * pv > 0.9 * hw:
            continue
        u0 = rng.uniform(-hl + scene.m(0.5), hl - nu * pu - scene.m(0.5))
        side = -1 if rng.random() < 0.5 else 1
        v0 = side * rng.uniform(scene.m(0.4), max(hw - nv * pv - scene.m(0.3), scene.m(0.45)))
        v0 -= nv * pv if side < 0 else 0
        if roof == "flat":
            v0 = rng.uniform(-hw + scene.m(0.4), hw - nv * pv - scene.m(0.4))
        # vertical roof unit: its shadow first
        if kind == "unit":
            sh = scene.shadow_dir * scene.shadow_k * rng.uniform(0.8, 1.8)
            ops.append((f.rect(u0, u0 + pu, v0, v0 + pv) + sh, shade(colour, 0.55)))
            ops.append((f.rect(u0, u0 + pu, v0, v0 + pv), jitter(rng, (205, 205, 200), 12)))
            ops.append((f.rect(u0 + pu * 0.2, u0 + pu * 0.8, v0 + pv * 0.15, v0 + pv * 0.45), (95, 95, 98)))
            continue
        frame_col = (200, 200, 196) if kind == "window" else (150, 155, 165)
        glass = jitter(rng, (38, 48, 70) if kind == "solar" else (52, 60, 72), 8)
        ops.append((f.rect(u0, u0 + nu * pu, v0, v0 + nv * pv), frame_col))
        gap = max(scene.m(0.05), 0.35)
        for i in range(nu):
            for j in range(nv):
                ops.append((f.rect(u0 + i * pu + gap, u0 + (i + 1) * pu - gap, v0 + j * pv + gap,
                                   v0 + (j + 1) * pv - gap), glass))
    return ops


def circle_poly(centre, radius: float, n: int = 20) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.stack([centre[0] + radius * np.cos(t), centre[1] + radius * np.sin(t)], axis=-1)


def container_drawer(scene: "Scene", f: Frame, length: float, width: float, colour) -> Callable:
    hl, hw = length / 2, width / 2
    e = max(0.5, scene.m(0.08))
    step = scene.m(0.6)

    def draw(canvas):
        fill_poly(canvas, f.rect(-hl, hl, -hw, hw), shade(colour, 0.6))
        fill_poly(canvas, f.rect(-hl + e, hl - e, -hw + e, hw - e), colour)
        if step >= 2.0:
            rib = shade(colour, 0.9)
            for u in np.arange(-hl + step, hl - step / 2, step):
                fill_poly(canvas, f.rect(u - step / 4, u + step / 4, -hw + e, hw - e), rib)
        c = scene.m(0.25)
        for su in (-1, 1):
            for sv in (-1, 1):
                fill_poly(canvas, f.rect(su * hl - c if su > 0 else -hl, su * hl if su > 0 else -hl + c,
                                     sv * hw - c if sv > 0 else -hw, sv * hw if sv > 0 else -hw + c),
                      shade(colour, 0.5))
    return draw


def arrow_painter(scene: "Scene", centre, direction: float) -> Callable:
    f = Frame(centre[0], centre[1], direction)
    m = scene.m
    shaft = f.rect(-m(2.5), m(0.9), -m(0.09), m(0.09))
    head = f.pts([(m(0.9), -m(0.45)), (m(2.5), 0.0), (m(0.9), m(0.45))])

    def paint(masks):
        fill_poly(masks["white"], [shaft, head], 255)
    return paint


ROAD_TEXT = ("BUS", "STOP", "SLOW", "BUS LANE", "TAXI", "30", "KEEP CLEAR", "SCHOOL", "LOOK")


def text_painter(scene: "Scene", text: str, centre, direction: float, across: float) -> Callable:
    """Road text read by a driver moving along ``direction``: letters stretched along the lane."""
    along = scene.m(scene.rng.uniform(1.6, 2.6))

    def paint(masks):
        font, fscale, thick = cv2.FONT_HERSHEY_SIMPLEX, 2.0, 5
        (tw, th), base = cv2.getTextSize(text, font, fscale, thick)
        patch = np.zeros((th + base + 8, tw + 8), np.uint8)
        cv2.putText(patch, text, (4, th + 4), font, fscale, 255, thick, cv2.LINE_AA)
        ph, pw = patch.shape
        d = np.array([math.cos(direction), math.sin(direction)])
        r = np.array([-d[1], d[0]])
        lin = np.stack([r * across / pw, -d * along / ph], axis=1)  # patch (x, y) -> image
        origin = np.asarray(centre) - lin @ np.array([pw / 2, ph / 2])
        corners = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], float) @ lin.T + origin
        x0, y0 = np.floor(corners.min(axis=0)).astype(int)
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 1
        mask = masks["white"]
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, mask.shape[1]), min(y1, mask.shape[0])
        if cx0 >= cx1 or cy0 >= cy1:
            return
        matrix = np.concatenate([lin, (origin - (x0, y0))[:, None]], axis=1)
        warped = cv2.warpAffine(patch, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
        roi = mask[cy0:cy1, cx0:cx1]
        np.maximum(roi, warped[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0], out=roi)
    return paint


# ---------------------------------------------------------------------------------------------------
# Noise
# ---------------------------------------------------------------------------------------------------

_NOISE_BANK_SIZE = 1024
_noise_bank: np.ndarray | None = None


def fine_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Per-pixel N(0, 1) noise ``[H, W]`` float32: a random window of a fixed, wrapped noise bank.

    Drawing fresh normal variates costs more than the rest of a scene's ground; grain needs no fresh
    randomness, only a random offset (and turn) per use. The bank is seeded with a constant, so scenes stay
    deterministic in every process.
    """
    global _noise_bank
    if _noise_bank is None:  # the bank tiled 2 x 2, so any window up to the bank's size is one slice
        bank = np.random.default_rng(20240607).standard_normal((_NOISE_BANK_SIZE,) * 2, dtype=np.float32)
        _noise_bank = np.tile(bank, (2, 2))
    if height > _NOISE_BANK_SIZE or width > _NOISE_BANK_SIZE:  # big scenes: blocks from random windows
        out = np.empty((height, width), np.float32)
        for y in range(0, height, _NOISE_BANK_SIZE):
            for x in range(0, width, _NOISE_BANK_SIZE):
                h, w = min(_NOISE_BANK_SIZE, height - y), min(_NOISE_BANK_SIZE, width - x)
                out[y:y + h, x:x + w] = fine_noise(rng, h, w)
        return out
    turn = int(rng.integers(4))
    tiled = np.rot90(_noise_bank, turn) if turn else _noise_bank
    oy, ox = (int(v) for v in rng.integers(0, _NOISE_BANK_SIZE, 2))
    return tiled[oy:oy + height, ox:ox + width]


def lut(values: dict, channels: int) -> np.ndarray:
    """A 256-entry float32 OpenCV lookup table from ``{index: value}``."""
    table = np.zeros((256, 1, channels) if channels > 1 else (256, 1), np.float32)
    for i, value in values.items():
        table[i, 0] = value
    return table
