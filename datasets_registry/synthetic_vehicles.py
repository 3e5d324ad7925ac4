"""Vehicles of the synthetic aerial scenes: sizes, looks, and how each class is drawn from straight above.

This module owns the labelled objects: :class:`Vehicle` (class, footprint in px, heading in radians towards
its front, look), :func:`make_vehicle`, which samples real-world sizes and fleet colours for a class, and
``VEHICLE_DRAWERS``, which draw a car, van, truck or bus in its local
:class:`~datasets_registry.synthetic_draw.Frame` (``+u`` along its front, ``+v`` 90 degrees clockwise on
screen). :func:`make_vehicle` takes the scene being composed
(:class:`datasets_registry.synthetic_state.Scene`: ``rng``, ``m()`` metres to pixels) and draws all its
random choices up front, so drawing consumes no randomness.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .synthetic_draw import CONTAINER_COLOURS, Frame, choose, fill_poly, jitter, pick, shade

if TYPE_CHECKING:
    from .synthetic_state import Scene


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
    hl = L / 2
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
