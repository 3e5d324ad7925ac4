"""Routes of the vehicles in a synthetic traffic sequence: lanes, turns at the junction, the way into a stall.

This module owns :class:`Path` (a route as a polyline resampled to at most one pixel per step, with the pose
at any distance along it and a speed cap per vertex) and the routes :func:`build_route` makes from an entry
lane of a road (right-hand traffic): straight on, a right or left turn onto the crossing road along a
circular arc tangent to both lanes, or into an empty parking stall of a lot beside the road (into the\naisle, along it, into the stall, along smooth cubic Hermite curves),
plus the stretch of a route inside the junction (:func:`junction_span`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .synthetic_roads import Road, road_span


class Path:
    """A route: ``points`` ``[M, 2]`` (px, at most 1 px apart), ``s`` ``[M]`` the distance along it,
    ``heading`` ``[M]`` radians of the segment leaving each vertex (screen coordinates, y down),
    ``cap`` ``[M]`` the speed limit (px/frame) at each vertex."""

    def __init__(self, pieces: list[tuple[np.ndarray, float]]):
        """``pieces``: ``(vertices [P, 2], speed cap)`` in order; consecutive pieces may share their joint."""
        verts, vcaps = [], []
        for piece, cap in pieces:
            piece = np.asarray(piece, np.float64).reshape(-1, 2)
            if verts and np.allclose(verts[-1], piece[0]):
                piece = piece[1:]
            verts.extend(piece)
            vcaps.extend([cap] * len(piece))
        pts, caps = [np.asarray(verts[:1])], [np.asarray(vcaps[:1])]
        for a, b, cap in zip(verts[:-1], verts[1:], vcaps[1:]):
            n = max(int(math.ceil(np.linalg.norm(b - a))), 1)
            pts.append(a + (b - a) * (np.arange(1, n + 1)[:, None] / n))
            caps.append(np.full(n, cap))
        self.points = np.concatenate(pts)
        self.cap = np.concatenate(caps)
        step = np.diff(self.points, axis=0)
        self.s = np.concatenate([[0.0], np.cumsum(np.hypot(step[:, 0], step[:, 1]))])
        heading = np.arctan2(step[:, 1], step[:, 0])
        self.heading = np.concatenate([heading, heading[-1:]])
        self.length = float(self.s[-1])

    def index(self, s: float) -> int:
        return int(np.clip(np.searchsorted(self.s, s, side="right") - 1, 0, len(self.s) - 2))

    def point(self, s: float) -> np.ndarray:
        """The point ``[2]`` at distance ``s``; beyond either end, straight on along the end's heading."""
        if s <= 0.0 or s >= self.length:
            end = 0 if s <= 0.0 else -1
            h = self.heading[end]
            return self.points[end] + (s - self.s[end]) * np.array([math.cos(h), math.sin(h)])
        i = self.index(s)
        f = (s - self.s[i]) / (self.s[i + 1] - self.s[i])
        return self.points[i] + (self.points[i + 1] - self.points[i]) * f

    def body(self, s: float, length: float) -> tuple[float, float, float]:
        """``(cx, cy, heading)`` of a body ``length`` px long whose centre is at distance ``s``: its front and
        rear ends on the route (as a vehicle's axles roughly are), so on a curve it cuts slightly inside
        instead of swinging its ends out over the next lane."""
        front, rear = self.point(s + length / 2), self.point(s - length / 2)
        cx, cy = (front + rear) / 2
        return float(cx), float(cy), float(math.atan2(front[1] - rear[1], front[0] - rear[0]))

    def cap_ahead(self, s: float, distance: float) -> tuple[float, float]:
        """The lowest speed cap within ``distance`` ahead of ``s`` and how far ahead it starts."""
        i, j = self.index(s), self.index(s + distance) + 1
        caps = self.cap[i:j + 1]
        k = int(np.argmin(caps))
        return float(caps[k]), max(float(self.s[i + k] - s), 0.0)


@dataclass(frozen=True)
class Lane:
    """A driving lane: a point ``p0`` on it, unit direction ``d`` of travel, and its parameter range
    ``[t0, t1]`` (``p0 + t d``) that reaches past the image on both ends."""

    road: int
    side: int
    k: int
    p0: np.ndarray
    d: np.ndarray
    t0: float
    t1: float

    def at(self, t: float) -> np.ndarray:
        return self.p0 + t * self.d


def lane(scene, roads: list[Road], r: int, side: int, k: int, margin: float) -> Lane:
    """Lane ``k`` (0 = inner) of road ``roads[r]`` driving towards ``side * e_u`` (right-hand traffic)."""
    road = roads[r]
    e_u, e_v = road.axes
    v = side * (road.median / 2 + (k + 0.5) * road.lane_w)
    u0, u1 = road_span(scene, road)
    t0, t1 = (u0, u1) if side > 0 else (-u1, -u0)
    return Lane(r, side, k, road.origin + v * e_v, side * e_u, t0 - margin, t1 + margin)


def entry_lanes(scene, roads: list[Road], margin: float) -> list[Lane]:
    return [lane(scene, roads, r, side, k, margin) for r, road in enumerate(roads) for side in (-1, 1)
            for k in range(road.lanes)]


def _fillet(corner: np.ndarray, d_in: np.ndarray, d_out: np.ndarray, radius: float) -> np.ndarray:
    """Points ``[K, 2]`` of the circular arc of ``radius`` tangent to the line in (direction ``d_in``) and the
    line out (``d_out``), which meet at ``corner``."""
    cross = d_in[0] * d_out[1] - d_in[1] * d_out[0]
    delta = math.atan2(cross, float(d_in @ d_out))
    reach = radius * math.tan(abs(delta) / 2)
    start = corner - reach * d_in
    sign = 1.0 if delta > 0 else -1.0
    centre = start + radius * sign * np.array([-d_in[1], d_in[0]])
    a0 = math.atan2(start[1] - centre[1], start[0] - centre[0])
    a = a0 + delta * np.linspace(0.0, 1.0, max(int(abs(delta) / math.radians(3)), 2) + 1)
    return centre + radius * np.stack([np.cos(a), np.sin(a)], axis=-1)


def _meet(a: Lane, b: Lane) -> tuple[float, float] | None:
    """Parameters ``(t_a, t_b)`` where the two lanes' lines cross (None when parallel)."""
    m = np.stack([a.d, -b.d], axis=1)
    if abs(np.linalg.det(m)) < 1e-6:
        return None
    t = np.linalg.solve(m, b.p0 - a.p0)
    return float(t[0]), float(t[1])


def turn_route(scene, roads: list[Road], start: Lane, right: bool, radius: float, cap: float,
               margin: float) -> Path | None:
    """From ``start`` onto the other road: a right turn into its outer lane, a left turn into its inner lane.
    None when the turn does not fit inside the lanes' ranges."""
    other = roads[1 - start.road]
    want = np.array([-start.d[1], start.d[0]]) * (1 if right else -1)  # y down: +90 degrees is a right turn
    side = 1 if float(other.axes[0] @ want) > 0 else -1
    target = lane(scene, roads, 1 - start.road, side, other.lanes - 1 if right else 0, margin)
    meet = _meet(start, target)
    if meet is None:
        return None
    t_a, t_b = meet
    arc = _fillet(start.at(t_a), start.d, target.d, radius)
    reach = float(np.linalg.norm(arc[0] - start.at(t_a)))
    if t_a - reach <= start.t0 or t_b + reach >= target.t1:
        return None
    fast = math.inf
    return Path([(np.stack([start.at(start.t0), arc[0]]), fast), (arc, cap),
                 (np.stack([arc[-1], target.at(target.t1)]), fast)])


def straight_route(start: Lane) -> Path:
    return Path([(np.stack([start.at(start.t0), start.at(start.t1)]), math.inf)])


def _hermite(a: np.ndarray, da: np.ndarray, b: np.ndarray, db: np.ndarray, n: int = 33) -> np.ndarray:
    """Points ``[n, 2]`` of the cubic Hermite curve from ``a`` (unit tangent ``da``) to ``b`` (``db``)."""
    k = float(np.linalg.norm(b - a))
    f = np.linspace(0.0, 1.0, n)[:, None]
    h00, h10, h01, h11 = 2 * f**3 - 3 * f**2 + 1, f**3 - 2 * f**2 + f, -2 * f**3 + 3 * f**2, f**3 - f**2
    return h00 * a + h10 * k * da + h01 * b + h11 * k * db


def park_route(start: Lane, road: Road, stall_centre: np.ndarray, stall_angle: float, approach: float,
               cap: float, ppm: float, straight_in: float = 0.0) -> Path | None:
    """From ``start`` into a stall (``stall_angle`` from its aisle into it) of a lot whose aisles open onto
    ``road``: the lane, a turn into the aisle's mouth at the kerb, along the aisle, a turn nose first into the
    stall (smooth cubic Hermite curves), ending at the stall centre after ``straight_in`` px straight on.
    None when the aisle does not face the road or the stall lies behind the lane's start."""
    centre = np.asarray(stall_centre, np.float64)
    e = np.array([math.cos(stall_angle), math.sin(stall_angle)])
    q = centre - approach * e  # in the aisle, abreast of the stall
    a = np.array([-e[1], e[0]])  # along the aisle, towards the road
    v_q = float(road.uv(q)[1])
    facing = float(a @ road.axes[1])
    if abs(facing) < 0.7 or abs(v_q) <= road.half_total:
        return None
    if v_q * facing > 0:
        a, facing = -a, -facing
    mouth = q + a * (abs(v_q) - road.half_carriage) / abs(facing)
    rel = mouth - start.p0
    lateral = abs(float(rel[0] * start.d[1] - rel[1] * start.d[0]))
    t_leave = float(rel @ start.d) - max(lateral, 4.0 * ppm)
    turn_in = q + a * approach
    if t_leave <= start.t0 + 2 * ppm or float((turn_in - mouth) @ -a) < ppm:
        return None
    leave, inside = start.at(t_leave), centre - straight_in * e
    return Path([(np.stack([start.at(start.t0), leave]), math.inf), (_hermite(leave, start.d, mouth, -a), cap * 0.7),
                 (np.stack([mouth, turn_in]), cap), (_hermite(turn_in, -a, inside, e), cap * 0.5),
                 (np.stack([inside, centre]), cap * 0.5)])


def junction_span(path: Path, roads: list[Road]) -> tuple[float, float] | None:
    """``(s_in, s_out)`` of the stretch of ``path`` inside both carriageways (the junction), or None."""
    inside = np.ones(len(path.points), bool)
    for road in roads:
        inside &= np.abs(road.uv(path.points)[:, 1]) <= road.half_carriage
    idx = np.flatnonzero(inside)
    if len(idx) == 0:
        return None
    return float(path.s[idx[0]]), float(path.s[idx[-1]])
