"""Traffic in a synthetic traffic sequence: vehicles entering, following, stopping, turning, parking, leaving.

This module owns :class:`Traffic`, which moves vehicles along their routes
(:mod:`~datasets_registry.synthetic_traffic_paths`) one frame at a time: each keeps a gap to whatever stands
on its route ahead (any vehicle whose body reaches the route), brakes for the speed cap of turns and stalls,
may stop at the junction's stop line for a while, enters the junction only when no vehicle from another
approach is in it (first come, first served), and either leaves the scene past the image border or ends
parked in a stall. New vehicles enter at the lanes' ends at random. Distances are pixels, speeds pixels
per frame, scaled by the scene's pixels per metre.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .synthetic_roads import _LANE_MIX
from .synthetic_state import class_choice, mark, mask_hits
from .synthetic_traffic_paths import Lane, Path, entry_lanes, junction_span, park_route, straight_route, turn_route
from .synthetic_traffic_world import TrafficWorld
from .synthetic_vehicles import Vehicle, make_vehicle


@dataclass(frozen=True)
class TrafficParams:
    """How the traffic behaves (rates per entry lane per frame, probabilities per vehicle; speeds in m/frame)."""

    spawn_rate: float = 0.025
    p_park: float = 0.25
    p_right: float = 0.2
    p_left: float = 0.2
    p_stop: float = 0.35
    stop_frames: tuple[int, int] = (8, 30)
    speed: tuple[float, float] = (0.3, 0.6)  # cruising speed range, m per frame (6 px at 10 px/m)
    turn_speed: float = 0.3
    accel: float = 0.012
    brake: float = 0.025


@dataclass
class Mover:
    """A vehicle driving its route: distance ``s`` (px) of its centre along ``path``, ``speed`` (px/frame)."""

    track_id: int
    veh: Vehicle
    path: Path
    entry: int
    s: float
    speed: float
    vmax: float
    junction: tuple[float, float] | None
    stop_frames: int
    parks: bool
    waited: int = 0
    stop_done: bool = False
    claimed: bool = False
    released: bool = False
    waiting_since: int | None = None
    parked: bool = False

    def place(self) -> None:
        self.veh.cx, self.veh.cy, self.veh.heading = self.path.body(self.s, self.veh.length)


class Traffic:
    """The moving vehicles of one sequence; :meth:`step` advances them one frame."""

    def __init__(self, world: TrafficWorld, rng: np.random.Generator, params: TrafficParams, first_id: int):
        self.world, self.rng, self.p = world, rng, params
        self.scene = world.scene
        ppm = self.scene.ppm
        self.margin = self.scene.m(20.0)
        self.lanes: list[Lane] = entry_lanes(self.scene, world.roads, self.margin)
        self.movers: list[Mover] = []
        self.next_id = first_id
        self.stalls = list(world.free_stalls)
        # parking routes may not touch parked vehicles, obstacles or the stalls other parkers are heading for,
        # and their stall may not lie on another parker's way: track id -> (stall, its footprint, swept mask)
        self.blocked = ((self.scene.occupied > 0) | (self.scene.obstacle > 0)).astype(np.uint8)
        self.reserved: dict[int, tuple] = {}
        self.accel, self.brake = params.accel * ppm, params.brake * ppm
        self.turn_speed = params.turn_speed * ppm
        self.frame = 0
        self._conflicts: dict[tuple[int, int], bool] = {}

    # -- entering ----------------------------------------------------------------------------------------

    def _route(self, entry: Lane, veh: Vehicle) -> tuple[Path, bool]:
        rng, scene = self.rng, self.scene
        x = rng.random()
        if x < self.p.p_park and veh.cls in ("car", "van"):
            path = self._park(entry, veh)
            if path is not None:
                return path, True
        elif x < self.p.p_park + self.p.p_right + self.p.p_left:
            right = x < self.p.p_park + self.p.p_right
            radius = scene.m(rng.uniform(5.0, 7.0) if right else rng.uniform(9.0, 12.0))
            radius = max(radius, 0.9 * veh.length)  # long vehicles swing wide (a rigid box on the arc)
            path = turn_route(scene, self.world.roads, entry, right, radius, self.turn_speed, self.margin)
            if path is not None:
                return path, False
        return straight_route(entry), False

    def _park(self, entry: Lane, veh: Vehicle) -> Path | None:
        """A route into an empty stall reachable without touching parked vehicles or obstacles, or None."""
        scene = self.scene
        road = self.world.roads[entry.road]
        near = [abs(float(road.uv(c)[1])) for c, _ in self.stalls]  # stalls near the road first
        order = np.argsort(np.array(near) + self.rng.uniform(0, scene.m(6), len(near)))[:12]
        for i in order:
            centre, angle = self.stalls[i]
            path = park_route(entry, road, centre, angle, scene.m(5.5), self.turn_speed, scene.ppm, veh.length / 2)
            if path is None or junction_span(path, self.world.roads) is not None:  # lots before the junction
                continue
            swept = np.zeros_like(self.blocked)
            off_lane = path.points[np.isfinite(path.cap)]
            thick = max(int(round(veh.width + scene.m(0.5))), 1)
            cv2.polylines(swept, [np.round(off_lane).astype(np.int32).reshape(-1, 1, 2)], False, 1, thick)
            x, y, heading = path.body(path.length, veh.length)
            final = replace(veh, cx=x, cy=y, heading=heading).poly(scene.m(0.2))
            if self._reservable(swept, final):
                self.reserved[self.next_id] = (self.stalls.pop(i), final, swept)
                return path
        return None

    def _reservable(self, swept: np.ndarray, final: np.ndarray) -> bool:
        taken = self.blocked.copy()
        for _, poly, _ in self.reserved.values():
            mark(taken, poly)
        if (swept & taken).any():
            return False
        return not any(way is not None and mask_hits(way, final) for _, _, way in self.reserved.values())

    def _release(self, mover: Mover) -> None:
        """Give back the stall of a parker that is not used."""
        stall, _, _ = self.reserved.pop(mover.track_id)
        self.stalls.append(stall)

    def spawn(self, entry_index: int, s: float = 0.0) -> Mover:
        rng, scene = self.rng, self.scene
        entry = self.lanes[entry_index]
        cls = class_choice(scene, _LANE_MIX)
        veh = make_vehicle(scene, cls, entry.at(entry.t0), float(math.atan2(entry.d[1], entry.d[0])), "lane")
        path, parks = self._route(entry, veh)
        span = junction_span(path, self.world.roads)
        vmax = scene.m(rng.uniform(*self.p.speed)) * (0.8 if cls in ("truck", "bus") else 1.0)
        stop = int(rng.integers(*self.p.stop_frames)) if span is not None and rng.random() < self.p.p_stop else 0
        mover = Mover(self.next_id, veh, path, entry_index, s, vmax * 0.8, vmax, span, stop, parks)
        self.next_id += 1
        mover.place()
        return mover

    def populate(self) -> None:
        """Vehicles already on the way when the sequence starts: spaced along every entry lane, each before
        its first turn (or anywhere but the junction when it goes straight on)."""
        scene = self.scene
        for i, entry in enumerate(self.lanes):
            s = self.rng.uniform(0, scene.m(20))
            while s < entry.t1 - entry.t0:
                mover = self.spawn(i, s)
                length = mover.veh.length
                capped = np.flatnonzero(np.isfinite(mover.path.cap))
                before = mover.path.s[capped[0]] if len(capped) else math.inf
                j = mover.junction
                clear = j is None or s + length / 2 + scene.m(3) < j[0] or s - length / 2 - scene.m(3) > j[1]
                if s + length < before and clear:
                    if j is not None and s > j[1]:
                        mover.claimed = mover.released = mover.stop_done = True
                    self.movers.append(mover)
                else:
                    if mover.parks:
                        self._release(mover)
                    self.next_id -= 1  # not used: the next vehicle takes its id
                s += length + scene.m(self.rng.uniform(8, 40))

    def _enter(self) -> None:
        scene = self.scene
        for i in range(len(self.lanes)):
            if self.rng.random() >= self.p.spawn_rate:
                continue
            start = self.lanes[i].at(self.lanes[i].t0)
            if any(np.hypot(m.veh.cx - start[0], m.veh.cy - start[1]) < m.veh.length + scene.m(16)
                   for m in self.movers):
                continue
            self.movers.append(self.spawn(i))

    # -- moving ------------------------------------------------------------------------------------------

    def _obstacles_ahead(self, m: Mover, others: list[Mover]) -> list[tuple[Mover, float]]:
        """``(other, free distance along the route)`` for the vehicles whose body reaches ``m``'s route ahead."""
        horizon = m.veh.length + self.scene.m(25)
        i, j = m.path.index(m.s), m.path.index(m.s + horizon) + 1
        pts, s_pts, head = m.path.points[i:j + 1], m.path.s[i:j + 1], m.path.heading[i:j + 1]
        out = []
        for o in others:
            if o is m or o.parked:  # parked in a stall no route passes (see _park)
                continue
            d = np.hypot(pts[:, 0] - o.veh.cx, pts[:, 1] - o.veh.cy)
            k = int(np.argmin(d))
            along = s_pts[k] - m.s
            if along <= 0:
                continue
            rel = abs(math.sin(o.veh.heading - head[k])), abs(math.cos(o.veh.heading - head[k]))
            across = rel[0] * o.veh.length / 2 + rel[1] * o.veh.width / 2
            if d[k] > m.veh.width / 2 + across + self.scene.m(0.3):
                continue
            reach = rel[1] * o.veh.length / 2 + rel[0] * o.veh.width / 2
            out.append((o, along - m.veh.length / 2 - reach))
        return out

    def _conflict(self, m: Mover, o: Mover) -> bool:
        """Whether the routes of ``m`` and ``o`` through the junction come closer than their bodies need."""
        key = (min(m.track_id, o.track_id), max(m.track_id, o.track_id))
        if key not in self._conflicts:
            a = m.path.points[(m.path.s >= m.junction[0]) & (m.path.s <= m.junction[1])]
            b = o.path.points[(o.path.s >= o.junction[0]) & (o.path.s <= o.junction[1])]
            near = (m.veh.width + o.veh.width) / 2 + self.scene.m(1.0)
            gap = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1]).min()
            self._conflicts[key] = bool(gap < near)
        return self._conflicts[key]

    def _junction_free(self, m: Mover) -> bool:
        """Whether ``m`` may enter the junction now: no vehicle from another approach whose route crosses its
        own is in it or has been waiting for it longer."""
        for o in self.movers:
            if o is m or o.junction is None or o.entry == m.entry:
                continue
            inside = o.claimed and not o.released
            earlier = None not in (o.waiting_since, m.waiting_since) and o.waiting_since < m.waiting_since
            if (inside or earlier) and self._conflict(m, o):
                return False
        return True

    def _limit(self, m: Mover, gap: float) -> float:
        """The farthest distance ``s`` the centre of ``m`` may reach (stall end, stop line, junction)."""
        limit = m.path.length if m.parks else math.inf
        if m.junction is None:
            return limit
        s_in, s_out = m.junction
        hold = s_in - gap - m.veh.length / 2
        if m.claimed and not m.released and m.s - m.veh.length / 2 > s_out:
            m.released = True
        if m.claimed or m.s > hold + 0.5:
            return limit
        if m.stop_frames and not m.stop_done:
            if m.s >= hold - 0.5 and m.speed < 0.05:
                m.waited += 1
                m.stop_done = m.waited >= m.stop_frames
            return min(limit, hold)
        reach = m.speed * m.speed / (2 * self.brake) + gap + self.scene.m(2)
        if m.s + reach < hold:
            return limit
        if m.waiting_since is None:
            m.waiting_since = self.frame
        if self._junction_free(m):
            m.claimed, m.waiting_since = True, None
            return limit
        return min(limit, hold)

    def step(self) -> None:
        """Advance every vehicle one frame, let new ones enter and those past the end of their route leave."""
        scene, gap0 = self.scene, self.scene.m(1.5)
        driving = [m for m in self.movers if not m.parked]
        ahead = {m.track_id: self._obstacles_ahead(m, self.movers) for m in driving}
        blockers = {m.track_id: {o.track_id for o, _ in ahead[m.track_id]} for m in driving}
        for m in driving:
            limit = self._limit(m, scene.m(3.5))  # stop lines 3.5 m before the junction
            for o, free in ahead[m.track_id]:
                if m.track_id in blockers.get(o.track_id, ()) and m.track_id < o.track_id:
                    continue  # two vehicles waiting for each other: the older one goes first
                limit = min(limit, m.s + free - gap0 - 3.0 * m.speed)
            cap, dist = m.path.cap_ahead(m.s, m.speed * m.speed / (2 * self.brake) + m.veh.length)
            want = min(m.vmax, math.sqrt(cap * cap + 2 * self.brake * dist),
                       math.sqrt(2 * self.brake * max(limit - m.s, 0.0)))
            speed = min(max(want, m.speed - 2 * self.brake), m.speed + self.accel)
            step = min(max(speed, 0.0), max(limit - m.s, 0.0))
            m.s += step
            m.speed = step
            if m.parks and m.s >= m.path.length - 1e-6:
                m.parked, m.speed = True, 0.0
                stall, final, _ = self.reserved[m.track_id]
                self.reserved[m.track_id] = (stall, final, None)  # arrived: its way is free again
            m.place()
        gone = {m.track_id for m in self.movers if not m.parks and m.s >= m.path.length}
        if gone:
            self.movers = [m for m in self.movers if m.track_id not in gone]
            self._conflicts = {k: v for k, v in self._conflicts.items() if not gone & set(k)}
        self.frame += 1
        self._enter()
