"""Scene composition for the synthetic aerial scenes: layouts, vehicle placement, rendering, labels.

A scene is laid out in metres (``Scene.m`` converts to pixels) on a ground map of materials; roads, lots,
buildings, trees and hard negatives reserve their areas in occupancy masks, the layout offers vehicle slots
(stalls, lanes, kerbs, driveways), and :func:`render_scene` fills them, renders the layers in order (ground
and paint, flat objects, low shadows, vehicles, high shadows, roofs and canopies, camera effects) and
returns the labels. See :mod:`datasets_registry.synthetic` for the dataset-level API.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Callable

import cv2
import numpy as np

from .synthetic_draw import (
    ASPHALT, CONCRETE, CONTAINER_COLOURS, GRASS, LOT, PAVERS, ROAD_TEXT, SIDEWALK, SOIL, TEXTURE, VEHICLE_DRAWERS,
    Frame, Vehicle, arrow_painter, bed_drawer, choose, circle_poly, container_drawer, fill_circle, fill_poly,
    fine_noise, hull, jitter, lut, make_palette, make_vehicle, paint_poly, pick, roof_drawer, shade, smooth_noise,
    text_painter,
)
from obbdet.boxes import BOX_DIM, clip_polys_to_rect, normalize_xywha, poly_to_xywha, wrap_angle, xywha_to_poly
from obbdet.structures import ImageLabels

logger = logging.getLogger(__name__)

SYNTHETIC_CLASSES = ("car", "truck", "bus", "van")
CAR_WIDTH_M = 1.8  # the vehicle_width option is the pixel width of a car this wide
SCENE_KINDS = ("parking", "street", "suburb", "depot", "yard")
MIN_VISIBLE = 0.15  # vehicle slots less visible than this (cut by the image border) stay empty
DIFFICULT_BELOW = 0.6  # labelled vehicles less visible than this are marked difficult
_OPEN_GROUND = (LOT, CONCRETE, PAVERS, SOIL)  # where vehicles may stand at arbitrary angles


# ---------------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SceneOptions:
    """Options of :func:`render_scene` (every field can be passed as a keyword).

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
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise TypeError(f"unknown synthetic scene option(s) {unknown}; valid: {sorted(names)}")
        opts = dict(options)
        for key in ("vehicle_width", "n_vehicles"):
            if isinstance(opts.get(key), list):
                opts[key] = tuple(opts[key])
        if "classes" in opts:
            opts["classes"] = (opts["classes"],) if isinstance(opts["classes"], str) else tuple(opts["classes"])
        self = cls(**opts)
        self._validate()
        return self

    def _validate(self) -> None:
        bad = [c for c in self.classes if c not in SYNTHETIC_CLASSES]
        if bad or not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be distinct names from {SYNTHETIC_CLASSES}, got {self.classes}")
        low, high = _as_range(self.vehicle_width)
        if not 3.0 <= low <= high <= 200.0:
            raise ValueError(f"vehicle_width must be in [3, 200] px (low <= high), got {self.vehicle_width}")
        if self.n_vehicles is not None:
            low, high = _as_range(self.n_vehicles)
            if low < 0 or high < low:
                raise ValueError(f"n_vehicles must be >= 0 (low <= high), got {self.n_vehicles}")
        if self.scene is not None and self.scene not in SCENE_KINDS:
            raise ValueError(f"scene must be one of {SCENE_KINDS} or None, got {self.scene!r}")

    def to_json(self) -> dict:
        """JSON-ready dict (tuples as lists), used in manifests and cache keys."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _as_range(value) -> tuple[float, float]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"expected a number or a (low, high) pair, got {value!r}")
        return float(value[0]), float(value[1])
    return float(value), float(value)


# ---------------------------------------------------------------------------------------------------
# Scene state
# ---------------------------------------------------------------------------------------------------

@dataclass
class _Slot:
    """A place the layout offers a vehicle: ``make()`` builds it (lazily: dense lots offer thousands)."""

    weight: float  # probability of being occupied in a natural scene; relative weight for a target count
    make: Callable[[], "Vehicle | None"]
    stall: tuple | None = None  # (centre, angle) of a parking stall, for oil stains when it stays empty


def _eager(veh: Vehicle) -> _Slot:
    return _Slot(veh.weight, lambda: veh)


@dataclass
class Scene:
    """A scene being composed: its randomness, scale, sun, occupancy masks and the layers to render.

    Layers are filled by the layout and drawn by :func:`_render` in this order: ``materials`` (ground map),
    ``paint``, ``flat``, ``shadow_low``, ``low``, ``shadow_high``, ``high``.
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
    candidates: list = field(default_factory=list)  # _Slot: where the layout offers vehicles
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


def _mask_hits(mask: np.ndarray, poly: np.ndarray) -> bool:
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


def _mark(mask: np.ndarray, poly: np.ndarray) -> None:
    fill_poly(mask, poly, 1, aa=False)


def _mark_circle(mask: np.ndarray, centre, radius: float) -> None:
    fill_circle(mask, centre, radius, 1, aa=False)


def _inside_fraction(scene: Scene, poly: np.ndarray) -> float:
    _, area_in, area = clip_polys_to_rect(poly[None], 0.0, 0.0, scene.width, scene.height)
    return float(area_in[0] / area[0]) if area[0] > 0 else 0.0


def _random_point(scene: Scene, margin: float = 0.0) -> np.ndarray:
    return scene.rng.uniform([-margin, -margin], [scene.width + margin, scene.height + margin])


def _class_choice(scene: Scene, weights: dict) -> str | None:
    """A class among the enabled ones with the given relative weights (None when none is enabled)."""
    names = [c for c in weights if c in scene.opts.classes and weights[c] > 0]
    if not names:
        return None
    return choose(scene.rng, names, [weights[c] for c in names])


# class mixes per kind of slot
_LANE_MIX = {"car": 1.0, "van": 0.3, "truck": 0.36, "bus": 0.3}
_KERB_MIX = {"car": 1.0, "van": 0.3, "truck": 0.06}
_STALL_MIX = {"car": 1.0, "van": 0.22}
_LARGE_STALL_MIX = {"bus": 1.0, "truck": 1.0}
_FREE_MIX = {"car": 1.0, "van": 0.35, "truck": 0.3, "bus": 0.2}


# ---------------------------------------------------------------------------------------------------
# Layout: roads
# ---------------------------------------------------------------------------------------------------

@dataclass
class _Road:
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


def _road_span(scene: Scene, road: _Road) -> tuple[float, float]:
    """The u range of ``road`` that can be seen in the image (with a margin)."""
    corners = np.array([[0, 0], [scene.width, 0], [scene.width, scene.height], [0, scene.height]], float)
    u = road.uv(corners)[:, 0]
    return float(u.min()) - scene.m(6), float(u.max()) + scene.m(6)


def _add_road(scene: Scene, origin, angle: float, *, lanes: int, median_m: float = 0.0, parking_m: float = 0.0,
              sidewalk_m: float = 2.5, marked: bool = True) -> _Road:
    road = _Road(np.asarray(origin, float), angle, lanes, scene.m(scene.rng.uniform(3.2, 3.7)), scene.m(median_m),
                 scene.m(parking_m), scene.m(sidewalk_m), marked)
    f, L = road.frame, scene.diag * 1.5
    if road.sidewalk > 0:
        scene.materials.append((1, SIDEWALK, f.rect(-L, L, -road.half_total, road.half_total)))
    scene.materials.append((2, ASPHALT, f.rect(-L, L, -road.half_carriage, road.half_carriage)))
    if road.median > 0:
        kerb = scene.m(0.25)
        scene.materials.append((3, SIDEWALK, f.rect(-L, L, -road.median / 2, road.median / 2)))
        scene.materials.append((3, GRASS, f.rect(-L, L, -road.median / 2 + kerb, road.median / 2 - kerb)))
    _mark(scene.reserve, f.rect(-L, L, -road.half_total, road.half_total))
    scene.roads.append(road)
    return road


def _blocked_intervals(scene: Scene, road: _Road, v: float, grow: float) -> list[tuple[float, float]]:
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


def _paint_line(scene: Scene, road: _Road, v: float, width_m: float, colour: str, dash_m: float = 0.0,
                gap_m: float = 0.0) -> None:
    """A solid (``dash_m == 0``) or dashed line along ``road`` at offset ``v``, broken at crossing roads."""
    u0, u1 = _road_span(scene, road)
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


def _road_markings(scene: Scene, road: _Road) -> None:
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


def _parking_ticks(scene: Scene, road: _Road, side: int) -> None:
    u0, u1 = _road_span(scene, road)
    f = road.frame
    v0 = side * (road.median / 2 + road.lanes * road.lane_w)
    v1 = v0 + side * road.parking
    pitch = scene.m(scene.rng.uniform(5.8, 6.5))
    half = scene.m(0.07)
    blocked = _blocked_intervals(scene, road, (v0 + v1) / 2, scene.m(2.0))
    for u in np.arange(u0 + scene.rng.uniform(0, pitch), u1, pitch):
        if _free_segments(u - 1, u + 1, blocked) == [(u - 1, u + 1)]:
            scene.paint.append(paint_poly("white", f.rect(u - half, u + half, min(v0, v1), max(v0, v1))))


def _zebra(scene: Scene, road: _Road) -> None:
    """A zebra crossing: stripes 0.5 m wide along the road, 3 m long, across the carriageway."""
    u0, u1 = _road_span(scene, road)
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
    _mark(scene.reserve, f.rect(u, u + scene.m(3.0), -span, span))


def _lane_candidates(scene: Scene, road: _Road, p_traffic: float, p_kerb: float) -> None:
    """Vehicles driving in every lane (right-hand traffic) and parked along the kerbs, as candidates."""
    rng = scene.rng
    u0, u1 = _road_span(scene, road)
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


def _queue(scene: Scene, road: _Road, v: float, heading: float, u0: float, u1: float, mix: dict,
           gap_m: tuple[float, float], lateral_m: float, weight: float, kind: str, reverse_p: float = 0.0,
           skip_crossings: bool = False) -> None:
    """Candidates bumper to bumper along a line of ``road`` (their selection leaves realistic gaps)."""
    rng = scene.rng
    e_u, e_v = road.axes
    blocked = _blocked_intervals(scene, road, v, scene.m(1.5)) if skip_crossings else []
    u = u0 + rng.uniform(0, scene.m(4))
    while u < u1:
        cls = _class_choice(scene, mix)
        if cls is None:
            return
        h = heading + (math.pi if rng.random() < reverse_p else 0.0) + math.radians(rng.normal(0, 1.0))
        veh = make_vehicle(scene, cls, (0.0, 0.0), h, kind, weight)
        centre_u = u + veh.length / 2
        free = _free_segments(u, u + veh.length, blocked) == [(u, u + veh.length)]
        if free:
            pos = road.origin + centre_u * e_u + (v + scene.m(rng.normal(0, lateral_m))) * e_v
            veh.cx, veh.cy = float(pos[0]), float(pos[1])
            scene.candidates.append(_eager(veh))
        u += veh.length + scene.m(rng.uniform(*gap_m))


# ---------------------------------------------------------------------------------------------------
# Layout: parking lots
# ---------------------------------------------------------------------------------------------------

def _add_lot(scene: Scene, centre, angle: float, length: float, depth: float, *, large: bool = False,
             p_occ: float | None = None, beta_deg: float = 90.0, check: bool = False) -> bool:
    """A parking lot (rows of stalls along ``angle``), its markings, islands and stall candidates.

    ``length`` along the rows and ``depth`` across them are in px. With ``check``, the lot is only added when
    its area is free of roads and buildings. Returns whether it was added.
    """
    rng = scene.rng
    f = Frame(centre[0], centre[1], angle)
    kerb = scene.m(1.2)
    outer = f.rect(-length / 2 - kerb, length / 2 + kerb, -depth / 2 - kerb, depth / 2 + kerb)
    if check and (_mask_hits(scene.reserve, outer) or _inside_fraction(scene, outer) < 0.05):
        return False
    scene.materials.append((1, SIDEWALK, outer))
    scene.materials.append((2, LOT, f.rect(-length / 2, length / 2, -depth / 2, depth / 2)))
    _mark(scene.reserve, outer)
    if p_occ is None:
        p_occ = rng.uniform(0.85, 1.0) if scene.opts.dense else rng.uniform(0.3, 0.95)
    beta = math.radians(beta_deg)
    if large:
        stall_w, stall_d, aisle = scene.m(rng.uniform(3.9, 4.6)), scene.m(rng.uniform(15.0, 17.5)), scene.m(
            rng.uniform(12.0, 16.0))
    else:
        stall_w, stall_d, aisle = scene.m(rng.uniform(2.4, 2.75)), scene.m(rng.uniform(5.0, 5.6)), scene.m(
            rng.uniform(5.8, 7.2))
    row_depth = stall_d * math.sin(beta) + scene.m(0.3)
    lot = dict(frame=f, angle=angle, length=length, beta=beta, lean=1 if rng.random() < 0.5 else -1,
               stall_w=stall_w, stall_d=stall_d, large=large, p_occ=p_occ,
               colour="yellow" if rng.random() < 0.3 else "white",
               islands=rng.random() < 0.6, island_every=int(rng.integers(8, 15)) if rng.random() < 0.35 else 0,
               back_line=rng.random() < 0.75)
    margin = scene.m(0.8)
    v = -depth / 2 + margin
    rows = [(v, -1)]
    v += row_depth
    while v + aisle + row_depth <= depth / 2 - margin:
        v += aisle
        _aisle_marks(scene, lot, v - aisle / 2, aisle)
        rows.append((v, 1))
        v += row_depth
        if v + row_depth <= depth / 2 - margin:
            rows.append((v, -1))
            v += row_depth
        else:
            break
    for v_low, into in rows:
        _add_row(scene, lot, v_low, row_depth, into)
    return True


def _aisle_marks(scene: Scene, lot: dict, v_mid: float, aisle: float) -> None:
    """Painted arrows / text in a drive aisle (hard negatives)."""
    if not scene.opts.hard_negatives or scene.rng.random() > 0.5:
        return
    f, rng = lot["frame"], scene.rng
    u = rng.uniform(-lot["length"] / 2 + scene.m(5), lot["length"] / 2 - scene.m(5))
    direction = lot["angle"] + (0.0 if rng.random() < 0.5 else math.pi)
    centre = f.pts([(u, v_mid + rng.uniform(-0.2, 0.2) * aisle)])[0]
    if rng.random() < 0.7:
        scene.paint.append(arrow_painter(scene, centre, direction))
    else:
        scene.paint.append(text_painter(scene, str(rng.choice(["SLOW", "EXIT", "STOP", "ONE WAY"])), centre,
                                         direction, min(aisle * 0.6, scene.m(3.0))))


def _add_row(scene: Scene, lot: dict, v_low: float, row_depth: float, into: int) -> None:
    """One row of stalls: ``into`` = -1 puts the back line at ``v_low``, +1 at ``v_low + row_depth``."""
    rng, f = scene.rng, lot["frame"]
    beta, lean = lot["beta"], lot["lean"]
    axis = np.array([lean * math.cos(beta), into * math.sin(beta)])  # from the aisle into the stall (u, v)
    v_aisle = v_low + row_depth if into < 0 else v_low
    v_back = v_low if into < 0 else v_low + row_depth
    pitch = lot["stall_w"] / math.sin(beta)
    half_len = lot["length"] / 2 - scene.m(0.6) - abs(axis[0]) * lot["stall_d"]
    n = int(2 * half_len / pitch)
    if n < 1:
        return
    us = (np.arange(n) - (n - 1) / 2) * pitch - axis[0] * lot["stall_d"] / 2
    line_half = scene.m(0.06)
    colour = lot["colour"]
    if lot["back_line"]:
        scene.paint.append(paint_poly(colour, f.rect(us[0] - pitch / 2 + axis[0] * lot["stall_d"],
                                                      us[-1] + pitch / 2 + axis[0] * lot["stall_d"],
                                                      v_back - line_half, v_back + line_half)))
    d_axis = axis * lot["stall_d"]
    for b in np.concatenate([us - pitch / 2, us[-1:] + pitch / 2]):
        p0 = np.array([b, v_aisle])
        normal = np.array([-axis[1], axis[0]]) * line_half
        quad = np.array([p0 - normal, p0 + d_axis - normal, p0 + d_axis + normal, p0 + normal])
        scene.paint.append(paint_poly(colour, f.pts(quad)))
    stall_angle = lot["angle"] + math.atan2(axis[1], axis[0])
    for k, u in enumerate(us):
        island = lot["islands"] and k in (0, n - 1) or (lot["island_every"] and k % lot["island_every"] == 0
                                                        and 0 < k < n - 1)
        p0 = np.array([u - pitch / 2, v_aisle])
        stall = f.pts(np.array([p0, p0 + [pitch, 0], p0 + [pitch, 0] + d_axis, p0 + d_axis]))
        if island:
            _add_island(scene, stall)
            continue
        _stall_candidate(scene, lot, f.pts([(u, v_aisle)])[0], stall_angle, stall)


def _stall_candidate(scene: Scene, lot: dict, entry: np.ndarray, stall_angle: float, stall: np.ndarray) -> None:
    mix = _LARGE_STALL_MIX if lot["large"] else _STALL_MIX
    where = (stall.mean(axis=0), stall_angle)
    if not scene.enabled(*mix):
        scene.free_stalls.append(where)
        return
    scene.candidates.append(_Slot(lot["p_occ"], lambda: _stall_vehicle(scene, lot, mix, entry, stall_angle), where))


def _stall_vehicle(scene: Scene, lot: dict, mix: dict, entry: np.ndarray, stall_angle: float) -> Vehicle:
    """A vehicle parked in a stall: nose or tail in, a little off-centre and askew."""
    rng = scene.rng
    veh = make_vehicle(scene, _class_choice(scene, mix), (0, 0), stall_angle, "stall", lot["p_occ"],
                       max_length_m=lot["stall_d"] / scene.ppm + 0.3)
    gap = scene.m(rng.uniform(0.15, 0.7))
    along = lot["stall_d"] - gap - veh.length / 2
    slack = max((lot["stall_w"] - veh.width) / 2 - scene.m(0.15), 0.0)
    lateral = float(np.clip(rng.normal(0, slack / 2.5), -slack, slack))
    e = np.array([math.cos(stall_angle), math.sin(stall_angle)])
    centre = entry + along * e + lateral * np.array([-e[1], e[0]])
    veh.cx, veh.cy = float(centre[0]), float(centre[1])
    nose_in = rng.random() < (0.7 if not lot["large"] else 0.85)
    veh.heading = stall_angle + (0.0 if nose_in else math.pi) + math.radians(float(np.clip(rng.normal(0, 1.5), -4, 4)))
    return veh


def _add_island(scene: Scene, stall: np.ndarray) -> None:
    """A kerbed island in place of a stall: grass, shrubs or a flowerbed, sometimes with a tree."""
    rng = scene.rng
    _mark(scene.obstacle, stall)
    centre = stall.mean(axis=0)
    inner = centre + (stall - centre) * 0.86
    kind = rng.choice(["grass", "flowers", "shrubs"], p=[0.4, 0.3, 0.3]) if scene.opts.hard_negatives else "grass"
    scene.flat.append(bed_drawer(scene, stall, inner, str(kind)))
    if rng.random() < 0.4:
        r = min(np.linalg.norm(stall[1] - stall[0]), np.linalg.norm(stall[3] - stall[0])) * rng.uniform(0.5, 0.8)
        _add_tree(scene, centre, r, check=False)


# ---------------------------------------------------------------------------------------------------
# Layout: buildings, trees, containers, flowerbeds, painted text
# ---------------------------------------------------------------------------------------------------

def _try_building(scene: Scene, centre, angle: float, length_m: float, width_m: float, *,
                  roof: str | None = None, margin_m: float = 1.5) -> bool:
    length, width = scene.m(max(length_m, width_m)), scene.m(min(length_m, width_m))
    if length_m < width_m:
        angle += math.pi / 2
    f = Frame(centre[0], centre[1], angle)
    grown = f.rect(-length / 2 - scene.m(margin_m), length / 2 + scene.m(margin_m),
                   -width / 2 - scene.m(margin_m), width / 2 + scene.m(margin_m))
    if _mask_hits(scene.reserve, grown) or _inside_fraction(scene, grown) < 0.1:
        return False
    rng = scene.rng
    if roof is None:
        roof = "flat" if max(length_m, width_m) > 22 else str(rng.choice(["gable", "hip", "flat"], p=[0.45, 0.3, 0.25]))
    height_m = rng.uniform(6, 14) if roof == "flat" else rng.uniform(5, 9)
    foot = f.rect(-length / 2, length / 2, -width / 2, width / 2)
    _mark(scene.reserve, grown)
    _mark(scene.obstacle, foot)
    shift = scene.shadow_dir * scene.shadow_k * height_m
    scene.shadow_high.append((255, hull(np.concatenate([foot, foot + shift]))))
    scene.high.append(roof_drawer(scene, f, length, width, roof))
    return True


def _add_tree(scene: Scene, centre, radius: float, *, check: bool = True) -> bool:
    rng = scene.rng
    crown = circle_poly(centre, radius, 16)
    if check and _mask_hits(scene.reserve, crown):
        return False
    _mark_circle(scene.obstacle, centre, radius)
    _mark_circle(scene.reserve, centre, radius)
    height = rng.uniform(5, 11)
    shadow_c = np.asarray(centre) + scene.shadow_dir * scene.shadow_k * height * 0.7
    scene.shadow_high.append((225, circle_poly(shadow_c, radius * 0.95, 20)))
    base = jitter(rng, (46, 74, 36) if rng.random() < 0.8 else (84, 88, 40), 8)
    light = -scene.shadow_dir
    blobs = []
    for _ in range(int(rng.integers(7, 14))):
        off = rng.normal(0, radius * 0.35, 2)
        r = radius * rng.uniform(0.3, 0.55)
        lit = float(np.clip(off @ light / (radius * 0.5), -1, 1))
        blobs.append((np.asarray(centre) + off, r, shade(base, 1.0 + 0.35 * lit + rng.normal(0, 0.06))))
    blobs.sort(key=lambda b: float((b[0] - centre) @ light))  # lit blobs on top

    def draw(canvas):
        fill_circle(canvas, centre, radius, shade(base, 0.8))
        for pt, r, colour in blobs:
            fill_circle(canvas, pt, r, colour)
    scene.high.append(draw)
    return True


def _add_trees(scene: Scene, n: int) -> None:
    for _ in range(n * 4):
        if n <= 0:
            return
        if _add_tree(scene, _random_point(scene, scene.m(2)), scene.m(scene.rng.uniform(1.8, 4.5))):
            n -= 1


def _add_buildings(scene: Scene, attempts: int, *, align: float | None = None, size_m=(8.0, 24.0)) -> int:
    rng = scene.rng
    placed = 0
    for _ in range(attempts):
        angle = (scene.phi if align is None else align) + (rng.choice([0, math.pi / 2]) if rng.random() < 0.85
                                                           else rng.uniform(0, math.pi))
        angle += math.radians(rng.normal(0, 2))
        length = rng.uniform(*size_m)
        width = length * rng.uniform(0.45, 0.9)
        placed += _try_building(scene, _random_point(scene, scene.m(4)), angle, length, width)
    return placed


def _add_container_group(scene: Scene, centre, angle: float, count: int) -> None:
    rng = scene.rng
    long = rng.random() < 0.4
    length, width = scene.m(12.19 if long else 6.06), scene.m(2.44)
    gap = scene.m(rng.uniform(0.2, 1.2))
    n_perp = np.array([-math.sin(angle), math.cos(angle)])
    for i in range(count):
        c = np.asarray(centre) + n_perp * (i - (count - 1) / 2) * (width + gap)
        f = Frame(c[0], c[1], angle + math.radians(rng.normal(0, 1.0)))
        foot = f.rect(-length / 2, length / 2, -width / 2, width / 2)
        if _mask_hits(scene.reserve, foot) or _inside_fraction(scene, foot) < 0.3:
            continue
        _mark(scene.obstacle, foot)
        _mark(scene.reserve, foot)
        shift = scene.shadow_dir * scene.shadow_k * 2.6
        scene.shadow_low.append((255, hull(np.concatenate([foot, foot + shift]))))
        colour = jitter(rng, pick(rng, CONTAINER_COLOURS), 6)
        scene.low.append(container_drawer(scene, f, length, width, colour))


def _add_flowerbeds(scene: Scene, n: int) -> None:
    """Kerbed 2:1 beds and hedges on open ground: vehicle-sized hard negatives."""
    rng = scene.rng
    for _ in range(n * 5):
        if n <= 0:
            return
        c = _random_point(scene)
        length = scene.m(rng.uniform(3.5, 6.0))
        width = length / rng.uniform(1.8, 2.4)
        angle = scene.phi + (rng.choice([0, math.pi / 2]) if rng.random() < 0.7 else rng.uniform(0, math.pi))
        f = Frame(c[0], c[1], angle)
        outer = f.rect(-length / 2, length / 2, -width / 2, width / 2)
        if _mask_hits(scene.reserve, outer):
            continue
        kerb = scene.m(0.2)
        inner = f.rect(-length / 2 + kerb, length / 2 - kerb, -width / 2 + kerb, width / 2 - kerb)
        _mark(scene.reserve, outer)
        _mark(scene.obstacle, outer)
        scene.flat.append(bed_drawer(scene, outer, inner, str(rng.choice(["flowers", "shrubs"]))))
        n -= 1


def _road_text_and_arrows(scene: Scene, road: _Road) -> None:
    rng = scene.rng
    u0, u1 = _road_span(scene, road)
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


# ---------------------------------------------------------------------------------------------------
# Scene kinds
# ---------------------------------------------------------------------------------------------------

def _finish_roads(scene: Scene, p_traffic: float, p_kerb: float) -> None:
    for road in scene.roads:
        if road.marked:
            _road_markings(scene, road)
            if scene.opts.hard_negatives and scene.rng.random() < 0.7:
                _road_text_and_arrows(scene, road)
        _lane_candidates(scene, road, p_traffic, p_kerb if road.parking == 0 else max(p_kerb, 0.5))


def _random_road(scene: Scene, angle: float, offset_frac: float = 0.25, **kw) -> _Road:
    rng = scene.rng
    e_v = np.array([-math.sin(angle), math.cos(angle)])
    origin = scene.centre + e_v * rng.uniform(-offset_frac, offset_frac) * min(scene.width, scene.height)
    return _add_road(scene, origin, angle, **kw)


def _dressing(scene: Scene, buildings: int, trees: int, beds: int, containers: int) -> None:
    """Buildings, trees and the loose hard negatives in whatever space the layout left free."""
    area = scene.width * scene.height / scene.ppm ** 2 / 3000.0  # in units of a 55 m x 55 m scene
    _add_buildings(scene, int(buildings * max(area, 0.5)))
    if scene.opts.hard_negatives:
        for _ in range(int(round(containers * max(area, 0.5) * scene.rng.uniform(0.5, 1.5)))):
            c = _random_point(scene)
            angle = scene.phi + (0 if scene.rng.random() < 0.7 else scene.rng.uniform(0, math.pi))
            _add_container_group(scene, c, angle, int(scene.rng.integers(1, 4)))
        _add_flowerbeds(scene, int(scene.rng.poisson(beds * max(area, 0.5))))
    _add_trees(scene, int(scene.rng.poisson(trees * max(area, 0.5))))


def _layout_parking(scene: Scene) -> None:
    rng, W, H = scene.rng, scene.width, scene.height
    phi, diag = scene.phi, scene.diag
    e_v = np.array([-math.sin(phi), math.cos(phi)])
    if scene.opts.dense and rng.random() < 0.5:  # a road through the middle, lots on both sides
        road = _random_road(scene, phi, 0.1, lanes=1, sidewalk_m=rng.uniform(1.5, 2.5))
        for side in (-1, 1):
            depth = diag * 0.75
            c = road.origin + side * e_v * (road.half_total + scene.m(1.5) + depth / 2)
            _add_lot(scene, c, phi, diag * 1.4, depth, beta_deg=90.0 if rng.random() < 0.7 else 60.0)
    elif scene.opts.dense:
        _add_lot(scene, scene.centre + rng.uniform(-0.05, 0.05, 2) * (W, H), phi, diag * 1.3, diag * 1.2)
    else:
        depth = min(W, H) * rng.uniform(0.5, 1.1)
        c = scene.centre + rng.uniform(-0.15, 0.15, 2) * (W, H)
        beta = 90.0 if rng.random() < 0.75 else float(rng.choice([45.0, 60.0]))
        _add_lot(scene, c, phi, diag * rng.uniform(0.7, 1.4), depth, beta_deg=beta)
        if rng.random() < 0.6:
            road_c = c + e_v * (depth / 2 + scene.m(1.2) + scene.m(rng.uniform(3.5, 6.0)) * 2.2)
            _add_road(scene, road_c, phi, lanes=1, sidewalk_m=rng.uniform(1.5, 3.0))
        if rng.random() < 0.35:
            angle = phi + math.pi / 2 if rng.random() < 0.6 else rng.uniform(0, math.pi)
            _add_lot(scene, _random_point(scene), angle, scene.m(rng.uniform(25, 50)), scene.m(rng.uniform(14, 30)),
                     check=True)
    _finish_roads(scene, rng.uniform(0.1, 0.5), 0.0)
    _dressing(scene, buildings=6, trees=3, beds=1.5, containers=0.5)


def _layout_street(scene: Scene) -> None:
    rng, phi = scene.rng, scene.phi
    lanes = 1 if rng.random() < 0.6 else 2
    _random_road(scene, phi, lanes=lanes, median_m=rng.uniform(1.5, 4.0) if lanes == 2 and rng.random() < 0.35 else 0,
                 parking_m=rng.uniform(2.1, 2.5) if rng.random() < 0.5 else 0.0, sidewalk_m=rng.uniform(1.8, 3.5))
    if rng.random() < 0.35:
        _random_road(scene, phi + math.pi / 2 + math.radians(rng.normal(0, 4)), lanes=1,
                     parking_m=rng.uniform(2.1, 2.5) if rng.random() < 0.4 else 0.0, sidewalk_m=rng.uniform(1.8, 3))
    if rng.random() < 0.35:
        for _ in range(6):
            if _add_lot(scene, _random_point(scene), phi + (0 if rng.random() < 0.6 else math.pi / 2),
                        scene.m(rng.uniform(20, 45)), scene.m(rng.uniform(13, 28)), check=True):
                break
    _finish_roads(scene, rng.uniform(0.15, 0.6), rng.uniform(0.0, 0.3))
    _dressing(scene, buildings=10, trees=4, beds=1.0, containers=0.3)


def _layout_suburb(scene: Scene) -> None:
    rng, phi = scene.rng, scene.phi
    road = _random_road(scene, phi, 0.2, lanes=1, sidewalk_m=rng.uniform(1.5, 2.5) if rng.random() < 0.7 else 0.0,
                        marked=rng.random() < 0.5)
    e_u, e_v = road.axes
    u0, u1 = _road_span(scene, road)
    for side in (-1, 1):
        u = u0 + rng.uniform(0, scene.m(8))
        while u < u1:
            plot = scene.m(rng.uniform(15, 24))
            setback = scene.m(rng.uniform(5, 9))
            house_l, house_w = rng.uniform(9, 14), rng.uniform(7, 10)
            dist = road.half_total + setback + scene.m(house_w) / 2
            centre = road.origin + (u + plot / 2) * e_u + side * dist * e_v
            if _try_building(scene, centre, phi, house_l, house_w, roof=str(rng.choice(["gable", "hip"])),
                             margin_m=0.8):
                _driveway(scene, road, side, u + plot / 2 + side * scene.m(house_l / 2 + 2.0), setback)
            u += plot
    _finish_roads(scene, rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.35))
    _dressing(scene, buildings=2, trees=8, beds=2.0, containers=0.1)


def _driveway(scene: Scene, road: _Road, side: int, u: float, length: float) -> None:
    rng = scene.rng
    e_u, e_v = road.axes
    width = scene.m(rng.uniform(3.0, 5.5))
    start = road.half_carriage
    f = road.frame
    drive = f.rect(u - width / 2, u + width / 2, min(side * start, side * (road.half_total + length)),
                   max(side * start, side * (road.half_total + length)))
    if _mask_hits(scene.obstacle, drive):
        return
    scene.materials.append((1.5, CONCRETE if rng.random() < 0.6 else PAVERS, drive))
    _mark(scene.reserve, drive)
    heading = road.angle + side * math.pi / 2 + (math.pi if rng.random() < 0.5 else 0.0)
    n_cars = int(rng.integers(1, 3)) if width > scene.m(4.5) else 1
    for i in range(n_cars):
        cls = _class_choice(scene, {"car": 1.0, "van": 0.2})
        if cls is None:
            return
        veh = make_vehicle(scene, cls, (0, 0), heading + math.radians(rng.normal(0, 4)), "driveway", 0.6)
        offset = (i - (n_cars - 1) / 2) * width / max(n_cars, 1)
        along = road.half_total + length * rng.uniform(0.35, 0.6)
        pos = road.origin + (u + offset) * e_u + side * along * e_v
        veh.cx, veh.cy = float(pos[0]), float(pos[1])
        scene.candidates.append(_eager(veh))


def _layout_depot(scene: Scene) -> None:
    rng, phi, W, H = scene.rng, scene.phi, scene.width, scene.height
    e_v = np.array([-math.sin(phi), math.cos(phi)])
    depth = min(W, H) * rng.uniform(0.55, 1.0) if not scene.opts.dense else scene.diag * 1.1
    c = scene.centre + rng.uniform(-0.12, 0.12, 2) * (W, H)
    _add_lot(scene, c, phi, scene.diag * rng.uniform(0.8, 1.4), depth, large=True,
             beta_deg=90.0 if rng.random() < 0.7 else 60.0)
    if rng.random() < 0.6:
        road_c = c + e_v * (depth / 2 + scene.m(1.2) + scene.m(8))
        _add_road(scene, road_c, phi, lanes=1, sidewalk_m=rng.uniform(0, 2.0))
    if rng.random() < 0.5:
        for _ in range(5):
            if _add_lot(scene, _random_point(scene), phi + (0 if rng.random() < 0.5 else math.pi / 2),
                        scene.m(rng.uniform(20, 45)), scene.m(rng.uniform(13, 26)), check=True):
                break
    for _ in range(4):
        if _try_building(scene, _random_point(scene), phi, rng.uniform(20, 45), rng.uniform(14, 30), roof="flat"):
            break
    _finish_roads(scene, rng.uniform(0.1, 0.4), 0.0)
    _dressing(scene, buildings=2, trees=2, beds=0.5, containers=1.5)


def _layout_yard(scene: Scene) -> None:
    rng, phi = scene.rng, scene.phi
    ground = CONCRETE if rng.random() < 0.4 else (SOIL if rng.random() < 0.5 else LOT)
    f = Frame(*(scene.centre + rng.uniform(-0.1, 0.1, 2) * (scene.width, scene.height)), phi)
    size = scene.diag * rng.uniform(0.6, 1.2)
    yard = f.rect(-size / 2, size / 2, -size * 0.4, size * 0.4)
    scene.materials.append((1, ground, yard))
    area_m2 = _inside_fraction(scene, yard) * size * size * 0.8 / scene.ppm ** 2
    scene.free_count = int(area_m2 / rng.uniform(90, 260))
    if rng.random() < 0.5:
        _random_road(scene, phi + math.pi / 2, 0.45, lanes=1, sidewalk_m=rng.uniform(0, 2.0))
    _finish_roads(scene, rng.uniform(0.1, 0.4), 0.0)
    _dressing(scene, buildings=3, trees=2, beds=0.3, containers=2.5)


_LAYOUTS = {"parking": _layout_parking, "street": _layout_street, "suburb": _layout_suburb, "depot": _layout_depot,
            "yard": _layout_yard}
_KIND_WEIGHTS = {"parking": 0.28, "street": 0.3, "suburb": 0.12, "depot": 0.18, "yard": 0.12}
_DENSE_KIND_WEIGHTS = {"parking": 0.75, "depot": 0.25}


# ---------------------------------------------------------------------------------------------------
# Vehicles: selection and placement
# ---------------------------------------------------------------------------------------------------

def _try_place(scene: Scene, veh: Vehicle) -> bool:
    """Place ``veh`` unless it overlaps an obstacle or a vehicle, or too little of it is in the image."""
    poly = veh.poly()
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    inside = lo[0] >= 0 and lo[1] >= 0 and hi[0] <= scene.width and hi[1] <= scene.height
    visible = 1.0 if inside else _inside_fraction(scene, poly)
    if visible < MIN_VISIBLE:
        return False
    if _mask_hits(scene.obstacle, poly) or _mask_hits(scene.occupied, veh.poly(scene.m(0.12))):
        return False
    _mark(scene.occupied, poly)
    scene.vehicles.append((veh, visible))
    shift = scene.shadow_dir * scene.shadow_k * veh.height_m
    scene.shadow_low.append((140, veh.poly(scene.m(0.22))))  # contact shadow
    scene.shadow_low.append((255, hull(np.concatenate([poly, poly + shift]))))
    drawer = VEHICLE_DRAWERS[veh.cls]
    scene.low.append(lambda canvas, v=veh, ppm=scene.ppm: drawer(canvas, v, ppm))
    return True


def _place_free(scene: Scene, n: int, materials, attempts: int) -> int:
    """Up to ``n`` vehicles at arbitrary angles on the given ground materials (None: any). Returns how many.

    Centres are drawn from the pixels that are at least half a car width away from obstacles and placed
    vehicles, so a full scene gives up at once instead of after thousands of rejections.
    """
    if n <= 0:
        return 0
    rng = scene.rng
    free = (scene.obstacle == 0) & (scene.occupied == 0)
    if materials is not None:
        free &= np.isin(scene.material_map, materials)
    radius = max(int(scene.m(CAR_WIDTH_M / 2)), 1)
    free = cv2.erode(free.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2))
    candidates = np.flatnonzero(free)
    placed = 0
    for _ in range(attempts):
        if placed >= n or len(candidates) == 0:
            break
        y, x = divmod(int(candidates[rng.integers(len(candidates))]), scene.width)
        cls = _class_choice(scene, _FREE_MIX)
        if cls is None:
            break
        pt = (x + rng.random(), y + rng.random())
        placed += _try_place(scene, make_vehicle(scene, cls, pt, rng.uniform(-math.pi, math.pi), "free"))
    return placed


def _target_count(scene: Scene) -> int | None:
    if scene.opts.n_vehicles is None:
        return None
    low, high = _as_range(scene.opts.n_vehicles)
    return int(scene.rng.integers(int(low), int(high) + 1))


def _place_vehicles(scene: Scene) -> None:
    rng, slots = scene.rng, scene.candidates
    target = _target_count(scene)
    area = scene.width * scene.height / scene.ppm ** 2 / 3000.0
    used = np.zeros(len(slots), bool)
    if target is None:
        for i, slot in enumerate(slots):
            if rng.random() < slot.weight:
                veh = slot.make()
                used[i] = veh is not None and _try_place(scene, veh)
        n_free = scene.free_count + int(rng.poisson(0.6 * area))
        _place_free(scene, n_free, _OPEN_GROUND, 40 * n_free)
    else:
        placed = 0
        if slots and target > 0:
            weights = np.array([slot.weight for slot in slots], float) + 1e-6
            # a weighted random order of all slots (Efraimidis-Spirakis keys), filled until the target
            order = np.argsort(-np.log(rng.random(len(slots))) / weights)
            for i in order:
                if placed >= target:
                    break
                veh = slots[i].make()
                used[i] = veh is not None and _try_place(scene, veh)
                placed += int(used[i])
        missing = target - placed
        if missing > 0:
            missing -= _place_free(scene, missing, _OPEN_GROUND, 30 * missing)
        if missing > 0:
            missing -= _place_free(scene, missing, None, 60 * missing)
        if missing > 0:
            logger.warning("synthetic scene (%s, %dx%d): room for %d of %d vehicles", scene.kind, scene.width,
                           scene.height, target - missing, target)
    scene.free_stalls += [slot.stall for slot, u in zip(slots, used) if slot.stall is not None and not u]


def _stains_and_shadows(scene: Scene) -> None:
    """Oil stains in empty stalls and car-sized shadows with no car (hard negatives)."""
    rng = scene.rng
    for centre, angle in scene.free_stalls:
        if rng.random() < 0.3:
            f = Frame(centre[0], centre[1], angle)
            a, b = scene.m(rng.uniform(0.5, 1.2)), scene.m(rng.uniform(0.4, 0.8))
            scene.shadow_low.append((int(rng.integers(50, 110)), f.pts(circle_poly((0, 0), 1.0, 14) * (a, b))))
    n = int(rng.poisson(1.5 * max(scene.width * scene.height / scene.ppm ** 2 / 3000.0, 0.5)))
    for _ in range(n * 10):
        if n <= 0:
            break
        pt = rng.uniform([0, 0], [scene.width, scene.height])
        if scene.material_map[int(pt[1]), int(pt[0])] not in (ASPHALT, LOT, CONCRETE):
            continue
        angle = scene.phi + (0 if rng.random() < 0.5 else rng.uniform(0, math.pi))
        f = Frame(pt[0], pt[1], angle)
        length, width = scene.m(rng.uniform(4.0, 5.2)), scene.m(rng.uniform(1.7, 2.2))
        poly = f.rounded(-length / 2, length / 2, -width / 2, width / 2, width * 0.3, width * 0.3)
        if _mask_hits(scene.occupied, poly) or _mask_hits(scene.obstacle, poly):
            continue
        scene.shadow_low.append((255, poly))
        n -= 1


# ---------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------

def _material_map(scene: Scene) -> np.ndarray:
    ground = SOIL if scene.rng.random() < 0.1 else GRASS
    mat = np.full((scene.height, scene.width), ground, np.uint8)
    for _, material, poly in sorted(scene.materials, key=lambda t: t[0]):
        fill_poly(mat, poly, material, aa=False)
    return mat


def _ground(scene: Scene) -> np.ndarray:
    """Textured ground ``[H, W, 3]`` float32 from the material map: two-colour mix plus grain per material."""
    rng, H, W = scene.rng, scene.height, scene.width
    mat = scene.material_map
    mat3 = cv2.merge([mat, mat, mat])
    base = cv2.LUT(mat3, lut({m: scene.palette[m][0] for m in TEXTURE}, 3))
    spread = cv2.LUT(mat3, lut({m: np.subtract(scene.palette[m][1], scene.palette[m][0]) for m in TEXTURE}, 3))
    mix = cv2.LUT(mat, lut({m: k[0] for m, k in TEXTURE.items()}, 1))
    amp_mid = cv2.LUT(mat, lut({m: k[1] for m, k in TEXTURE.items()}, 1))
    amp_fine = cv2.LUT(mat, lut({m: k[2] for m, k in TEXTURE.items()}, 1))
    n_low = smooth_noise(rng, H, W, scene.m(10))
    n_mid = smooth_noise(rng, H, W, scene.m(1.2))
    t = np.clip(0.5 + 0.5 * mix * n_low + 0.12 * n_mid, 0.0, 1.0)
    grain = amp_mid * n_mid + amp_fine * fine_noise(rng, H, W)
    img = base + spread * t[..., None] + grain[..., None]
    scene.wear = np.clip(0.8 + 0.3 * n_mid, 0.25, 1.0) * rng.uniform(0.7, 0.95)
    return img


def _apply_paint(scene: Scene, img: np.ndarray) -> None:
    H, W = scene.height, scene.width
    masks = {name: np.zeros((H, W), np.uint8) for name in ("white", "yellow", "dark")}
    for paint in scene.paint:
        paint(masks)
    flat = img.reshape(-1, 3)
    wear = scene.wear.reshape(-1)
    for name, mask in masks.items():
        idx = np.flatnonzero(mask)  # paint covers a few per cent of the image: work on those pixels only
        if len(idx) == 0:
            continue
        alpha = mask.reshape(-1)[idx].astype(np.float32) * (1.0 / 255.0) * wear[idx]
        flat[idx] += (np.asarray(scene.palette[name], np.float32) - flat[idx]) * alpha[:, None]


def _apply_shadows(scene: Scene, canvas: np.ndarray, items: list, blur_m: float) -> None:
    """Darken ``canvas`` under the shadow polygons ``(value 0..255, poly)``: soft edges, a blue cast."""
    if not items:
        return
    mask = np.zeros(canvas.shape[:2], np.uint8)
    for value, poly in sorted(items, key=lambda t: t[0]):
        fill_poly(mask, poly, value)
    mask = cv2.GaussianBlur(mask, (0, 0), max(scene.m(blur_m), 0.5))
    # per-channel transmission for every mask value, blue-tinted (skylight fills shadows)
    tint = np.array([1.0, 0.96, 0.84])
    table = 255.0 * (1.0 - np.arange(256)[:, None] / 255.0 * scene.shadow_strength * tint)
    factor = cv2.LUT(cv2.merge([mask, mask, mask]), np.round(table).astype(np.uint8).reshape(256, 1, 3))
    cv2.multiply(canvas, factor, dst=canvas, scale=1.0 / 255.0)


def _post(scene: Scene, canvas: np.ndarray) -> np.ndarray:
    """Camera look: slight blur, white balance, contrast, saturation (one colour matrix) and sensor noise."""
    rng = scene.rng
    canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.35, 0.7))
    mean = float(canvas[::4, ::4].mean())
    contrast = rng.uniform(0.88, 1.12)
    gain = rng.normal(1.0, 0.035, 3) * contrast
    offset = (mean * (1 - contrast) + rng.normal(0, 6)) * gain / contrast
    saturation = rng.uniform(0.75, 1.1)
    luma = np.array([0.299, 0.587, 0.114])
    mix = (1 - saturation) * np.outer(np.ones(3), luma) + saturation * np.eye(3)
    matrix = np.concatenate([mix * gain[None, :], (mix @ offset)[:, None]], axis=1).astype(np.float32)
    graded = cv2.transform(canvas, matrix)
    noise = cv2.merge([fine_noise(rng, scene.height, scene.width) for _ in range(3)])
    noise *= rng.uniform(1.0, 3.5)
    return cv2.add(graded, noise, dtype=cv2.CV_8U)


def _render(scene: Scene) -> np.ndarray:
    img = _ground(scene)
    _apply_paint(scene, img)
    canvas = np.clip(img, 0, 255).astype(np.uint8)
    for draw in scene.flat:
        draw(canvas)
    _apply_shadows(scene, canvas, scene.shadow_low, 0.12)
    for draw in scene.low:
        draw(canvas)
    _apply_shadows(scene, canvas, scene.shadow_high, 0.3)
    for draw in scene.high:
        draw(canvas)
    return _post(scene, canvas)


def _labels(scene: Scene) -> ImageLabels:
    n = len(scene.vehicles)
    boxes = np.zeros((n, BOX_DIM), np.float64)
    visible = np.ones(n)
    for i, (veh, vis) in enumerate(scene.vehicles):
        boxes[i] = (veh.cx, veh.cy, veh.length, veh.width, veh.heading)
        visible[i] = vis
    cut = np.flatnonzero(visible < 1.0)
    if len(cut):  # the visible part of vehicles cut by the image border, refitted
        clipped, _, _ = clip_polys_to_rect(xywha_to_poly(boxes[cut]), 0.0, 0.0, scene.width, scene.height)
        boxes[cut] = poly_to_xywha(clipped, warn=False)
    heading = np.array([wrap_angle(v.heading, -math.pi, 2 * math.pi) for v, _ in scene.vehicles], np.float64)
    return ImageLabels(width=scene.width, height=scene.height, boxes=normalize_xywha(boxes) if n else boxes,
                       classes=[v.cls for v, _ in scene.vehicles], difficult=visible < DIFFICULT_BELOW,
                       ignore=np.zeros(n, bool), heading=heading)


def _new_scene(rng: np.random.Generator, width: int, height: int, opts: SceneOptions) -> Scene:
    kind = opts.scene
    if kind is None:
        table = _DENSE_KIND_WEIGHTS if opts.dense else _KIND_WEIGHTS
        names = list(table)
        if not {"bus", "truck"} & set(opts.classes):
            names.remove("depot")
        w = np.array([table[k] for k in names])
        kind = names[int(rng.choice(len(names), p=w / w.sum()))]
    low, high = _as_range(opts.vehicle_width)
    ppm = rng.uniform(low, high) / CAR_WIDTH_M
    azimuth = rng.uniform(-math.pi, math.pi)
    zenith = math.radians(rng.uniform(20, 60))
    overcast = rng.random() < 0.15
    return Scene(rng=rng, width=width, height=height, opts=opts, kind=kind, ppm=ppm, phi=rng.uniform(0, math.pi),
                  shadow_dir=np.array([math.cos(azimuth), math.sin(azimuth)]), shadow_k=math.tan(zenith) * ppm,
                  shadow_strength=rng.uniform(0.1, 0.25) if overcast else rng.uniform(0.35, 0.6),
                  palette=make_palette(rng), reserve=np.zeros((height, width), np.uint8),
                  obstacle=np.zeros((height, width), np.uint8), occupied=np.zeros((height, width), np.uint8))


def render_scene(seed: int, width: int = 512, height: int = 512, **options) -> tuple[np.ndarray, ImageLabels]:
    """Render one synthetic aerial scene.

    Args:
        seed: the scene's integer seed (the same seed and options always give the same image and labels).
        width, height: image size in pixels.
        **options: :class:`SceneOptions` fields (``vehicle_width``, ``n_vehicles``, ``dense``, ``classes``,
            ``hard_negatives``, ``scene``).

    Returns:
        ``(image [H, W, 3] uint8 RGB, labels)``: ``labels.boxes`` ``[N, 5]`` float64 xywha le90 (continuous
        pixel coordinates), ``labels.classes`` names from ``SYNTHETIC_CLASSES``, ``labels.heading`` ``[N]``
        radians in ``[-pi, pi)`` (the vehicle's front), ``labels.difficult`` for vehicles mostly cut off
        by the image border.
    """
    opts = SceneOptions.from_kwargs(options)
    if width < 32 or height < 32:
        raise ValueError(f"scene size must be at least 32 x 32 px, got {width} x {height}")
    scene = _new_scene(np.random.default_rng(seed), int(width), int(height), opts)
    _LAYOUTS[scene.kind](scene)
    scene.material_map = _material_map(scene)
    _place_vehicles(scene)
    if opts.hard_negatives:
        _stains_and_shadows(scene)
    image = _render(scene)
    return image, _labels(scene)
