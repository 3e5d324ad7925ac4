"""Roads of the synthetic aerial scenes: carriageways, markings, crossings and the vehicles along them.

This module owns :class:`Road` (a straight road across the whole scene, in its local frame: lanes per
direction, median, parallel-parking lanes, sidewalks), adding one to the ground map and the occupancy
masks, its painted lines (broken where roads cross), parking ticks, zebra crossings, arrows and road
text, and the slots of vehicles driving in its lanes (right-hand traffic) and parked along its kerbs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .synthetic_draw import Frame
from .synthetic_ground import ASPHALT, GRASS, SIDEWALK
from .synthetic_objects import ROAD_TEXT, arrow_painter, paint_poly, text_painter
from .synthetic_placement import eager_slot
from .synthetic_state import Scene, class_choice, mark
from .synthetic_vehicles import make_vehicle

# class mixes of the lane and kerb slots
_LANE_MIX = {"car": 1.0, "van": 0.3, "truck": 0.36, "bus": 0.3}
_KERB_MIX = {"car": 1.0, "van": 0.3, "truck": 0.06}


@dataclass
class Road:
    origin: np.ndarray
    angle: float
    lanes: int  # per direction
    lane_w: float  # px
    median: float  # px, 0 = painted centre line
    parking: float  # px, parallel-parking lane on each side (0 = none)
    sidewalk: float  # px
    marked: bool = True

    @property
    def frame(self) -> Frame:
        return Frame(self.origin[0], self.origin[1], self.angle)

    @property
    def half_carriage(self) -> float:
        return self.median / 2 + self.lanes * self.lane_w + self.parking

    @property
    def half_total(self) -> float:
        return self.half_carriage + self.sidewalk

    @property
    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        return np.array([c, s]), np.array([-s, c])

    def uv(self, pts) -> np.ndarray:
        e_u, e_v = self.axes
        d = np.asarray(pts, float) - self.origin
        return np.stack([d @ e_u, d @ e_v], axis=-1)


def road_span(scene: Scene, road: Road) -> tuple[float, float]:
    """The u range of ``road`` that can be seen in the image (with a margin)."""
    corners = np.array([[0, 0], [scene.width, 0], [scene.width, scene.height], [0, scene.height]], float)
    u = road.uv(corners)[:, 0]
    return float(u.min()) - scene.m(6), float(u.max()) + scene.m(6)


def add_road(scene: Scene, origin, angle: float, *, lanes: int, median_m: float = 0.0, parking_m: float = 0.0,
              sidewalk_m: float = 2.5, marked: bool = True) -> Road:
    road = Road(np.asarray(origin, float), angle, lanes, scene.m(scene.rng.uniform(3.2, 3.7)), scene.m(median_m),
                 scene.m(parking_m), scene.m(sidewalk_m), marked)
    f, L = road.frame, scene.diag * 1.5
    if road.sidewalk > 0:
        scene.materials.append((1, SIDEWALK, f.rect(-L, L, -road.half_total, road.half_total)))
    scene.materials.append((2, ASPHALT, f.rect(-L, L, -road.half_carriage, road.half_carriage)))
    if road.median > 0:
        kerb = scene.m(0.25)
        scene.materials.append((3, SIDEWALK, f.rect(-L, L, -road.median / 2, road.median / 2)))
        scene.materials.append((3, GRASS, f.rect(-L, L, -road.median / 2 + kerb, road.median / 2 - kerb)))
    mark(scene.reserve, f.rect(-L, L, -road.half_total, road.half_total))
    scene.roads.append(road)
    return road


def _blocked_intervals(scene: Scene, road: Road, v: float, grow: float) -> list[tuple[float, float]]:
    """u intervals of the line ``v = const`` of ``road`` that lie inside another road (plus ``grow`` px)."""
    e_u, e_v = road.axes
    out = []
    for other in scene.roads:
        if other is road:
            continue
        o_u, o_v = other.axes
        a = float((road.origin + v * e_v - other.origin) @ o_v)  # other's v at u = 0
        b = float(e_u @ o_v)  # d(other's v)/du
        half = other.half_total + grow
        if abs(b) < 1e-9:
            if abs(a) <= half:
                out.append((-np.inf, np.inf))
            continue
        lo, hi = sorted(((-half - a) / b, (half - a) / b))
        out.append((lo, hi))
    return out


def _free_segments(u0: float, u1: float, blocked) -> list[tuple[float, float]]:
    segs = [(u0, u1)]
    for lo, hi in blocked:
        nxt = []
        for a, b in segs:
            if hi <= a or lo >= b:
                nxt.append((a, b))
                continue
            if lo > a:
                nxt.append((a, lo))
            if hi < b:
                nxt.append((hi, b))
        segs = nxt
    return segs


def _paint_line(scene: Scene, road: Road, v: float, width_m: float, colour: str, dash_m: float = 0.0,
                gap_m: float = 0.0) -> None:
    """A solid (``dash_m == 0``) or dashed line along ``road`` at offset ``v``, broken at crossing roads."""
    u0, u1 = road_span(scene, road)
    half = scene.m(width_m) / 2
    f = road.frame
    pieces = []
    for a, b in _free_segments(u0, u1, _blocked_intervals(scene, road, v, scene.m(1.0))):
        if dash_m <= 0:
            pieces.append((a, b))
            continue
        period = scene.m(dash_m + gap_m)
        start = a + scene.rng.uniform(0, period)
        for s in np.arange(start, b - scene.m(dash_m), period):
            pieces.append((s, s + scene.m(dash_m)))
    for a, b in pieces:
        scene.paint.append(paint_poly(colour, f.rect(a, b, v - half, v + half)))


def _road_markings(scene: Scene, road: Road) -> None:
    rng = scene.rng
    inner = road.median / 2
    edge = inner + road.lanes * road.lane_w
    for side in (-1, 1):
        for k in range(1, road.lanes):
            _paint_line(scene, road, side * (inner + k * road.lane_w), 0.15, "white", 3.0, 6.0)
        edge_v = edge if road.parking > 0 else edge - scene.m(0.35)
        _paint_line(scene, road, side * edge_v, 0.15, "white")
        if road.parking > 0:  # bay ends of the parking lane
            _parking_ticks(scene, road, side)
    if road.median == 0:
        style = rng.choice(["double_yellow", "dashed_white", "solid_white"], p=[0.45, 0.4, 0.15])
        if style == "double_yellow":
            for v in (-0.17, 0.17):
                _paint_line(scene, road, scene.m(v), 0.12, "yellow")
        else:
            _paint_line(scene, road, 0.0, 0.15, "white", *((3.0, 6.0) if style == "dashed_white" else (0.0, 0.0)))
    if rng.random() < 0.45:
        _zebra(scene, road)


def _parking_ticks(scene: Scene, road: Road, side: int) -> None:
    u0, u1 = road_span(scene, road)
    f = road.frame
    v0 = side * (road.median / 2 + road.lanes * road.lane_w)
    v1 = v0 + side * road.parking
    pitch = scene.m(scene.rng.uniform(5.8, 6.5))
    half = scene.m(0.07)
    blocked = _blocked_intervals(scene, road, (v0 + v1) / 2, scene.m(2.0))
    for u in np.arange(u0 + scene.rng.uniform(0, pitch), u1, pitch):
        if _free_segments(u - 1, u + 1, blocked) == [(u - 1, u + 1)]:
            scene.paint.append(paint_poly("white", f.rect(u - half, u + half, min(v0, v1), max(v0, v1))))


def _zebra(scene: Scene, road: Road) -> None:
    """A zebra crossing: stripes 0.5 m wide along the road, 3 m long, across the carriageway."""
    u0, u1 = road_span(scene, road)
    blocked = _blocked_intervals(scene, road, 0.0, scene.m(1.0))
    segs = [s for s in _free_segments(u0 + scene.m(8), u1 - scene.m(8), blocked) if s[1] - s[0] > scene.m(8)]
    if not segs:
        return
    a, b = segs[int(scene.rng.integers(len(segs)))]
    # next to a crossing road when there is one, else anywhere
    u = a + scene.m(3) if blocked and np.isfinite(a) and scene.rng.random() < 0.7 else scene.rng.uniform(a, b)
    f = road.frame
    span = road.median / 2 + road.lanes * road.lane_w
    for v in np.arange(-span + scene.m(0.5), span - scene.m(0.3), scene.m(1.0)):
        scene.paint.append(paint_poly("white", f.rect(u, u + scene.m(3.0), v, v + scene.m(0.5))))
    mark(scene.reserve, f.rect(u, u + scene.m(3.0), -span, span))


def _lane_candidates(scene: Scene, road: Road, p_traffic: float, p_kerb: float) -> None:
    """Vehicles driving in every lane (right-hand traffic) and parked along the kerbs, as candidates."""
    u0, u1 = road_span(scene, road)
    e_u, e_v = road.axes
    for side in (-1, 1):
        heading = road.angle if side > 0 else road.angle + math.pi
        for k in range(road.lanes):
            v = side * (road.median / 2 + (k + 0.5) * road.lane_w)
            _queue(scene, road, v, heading, u0, u1, _LANE_MIX, (1.2, 3.5), 0.25, p_traffic, "lane")
        if road.parking > 0 or p_kerb > 0:
            width = road.parking if road.parking > 0 else scene.m(2.2)
            edge = road.median / 2 + road.lanes * road.lane_w + (road.parking if road.parking > 0 else 0.0)
            v = side * (edge - width / 2 - scene.m(0.05))
            _queue(scene, road, v, heading, u0, u1, _KERB_MIX, (0.7, 2.5), 0.12, max(p_kerb, 0.0), "kerb",
                   reverse_p=0.1, skip_crossings=True)


def _queue(scene: Scene, road: Road, v: float, heading: float, u0: float, u1: float, mix: dict,
           gap_m: tuple[float, float], lateral_m: float, weight: float, kind: str, reverse_p: float = 0.0,
           skip_crossings: bool = False) -> None:
    """Candidates bumper to bumper along a line of ``road`` (their selection leaves realistic gaps)."""
    rng = scene.rng
    e_u, e_v = road.axes
    blocked = _blocked_intervals(scene, road, v, scene.m(1.5)) if skip_crossings else []
    u = u0 + rng.uniform(0, scene.m(4))
    while u < u1:
        cls = class_choice(scene, mix)
        if cls is None:
            return
        h = heading + (math.pi if rng.random() < reverse_p else 0.0) + math.radians(rng.normal(0, 1.0))
        veh = make_vehicle(scene, cls, (0.0, 0.0), h, kind, weight)
        centre_u = u + veh.length / 2
        free = _free_segments(u, u + veh.length, blocked) == [(u, u + veh.length)]
        if free:
            pos = road.origin + centre_u * e_u + (v + scene.m(rng.normal(0, lateral_m))) * e_v
            veh.cx, veh.cy = float(pos[0]), float(pos[1])
            scene.candidates.append(eager_slot(veh))
        u += veh.length + scene.m(rng.uniform(*gap_m))


def _road_text_and_arrows(scene: Scene, road: Road) -> None:
    rng = scene.rng
    u0, u1 = road_span(scene, road)
    for _ in range(int(rng.integers(1, 4))):
        side = -1 if rng.random() < 0.5 else 1
        k = int(rng.integers(road.lanes))
        v = side * (road.median / 2 + (k + 0.5) * road.lane_w)
        u = rng.uniform(u0 + scene.m(6), u1 - scene.m(6))
        if _free_segments(u - scene.m(4), u + scene.m(4), _blocked_intervals(scene, road, v, scene.m(1))) != [
                (u - scene.m(4), u + scene.m(4))]:
            continue
        centre = road.origin + u * road.axes[0] + v * road.axes[1]
        direction = road.angle if side > 0 else road.angle + math.pi
        if rng.random() < 0.5:
            scene.paint.append(arrow_painter(scene, centre, direction))
        else:
            scene.paint.append(text_painter(scene, str(rng.choice(ROAD_TEXT)), centre, direction,
                                             road.lane_w * rng.uniform(0.55, 0.8)))


def finish_roads(scene: Scene, p_traffic: float, p_kerb: float) -> None:
    for road in scene.roads:
        if road.marked:
            _road_markings(scene, road)
            if scene.opts.hard_negatives and scene.rng.random() < 0.7:
                _road_text_and_arrows(scene, road)
        _lane_candidates(scene, road, p_traffic, p_kerb if road.parking == 0 else max(p_kerb, 0.5))


def random_road(scene: Scene, angle: float, offset_frac: float = 0.25, **kw) -> Road:
    rng = scene.rng
    e_v = np.array([-math.sin(angle), math.cos(angle)])
    origin = scene.centre + e_v * rng.uniform(-offset_frac, offset_frac) * min(scene.width, scene.height)
    return add_road(scene, origin, angle, **kw)
