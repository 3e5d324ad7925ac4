"""Synthetic traffic sequences: a street junction seen from a still drone camera, frame by frame, with labels.

:func:`render_traffic_sequence` yields ``(frame [H, W, 3] uint8 RGB, ImageLabels)`` per frame. The static
scene (ground, roads, lots, buildings, dressing, parked vehicles; :mod:`~datasets_registry.synthetic_traffic_world`)
is rendered once; each frame draws the moving vehicles (:mod:`~datasets_registry.synthetic_traffic_sim`) with
their shadows, then the high shadows and the occluders on top (roofs, tree canopies over the lanes, an
overpass across the main road), so vehicles pass under them, then the camera look with slight brightness
drift and fresh sensor noise per frame (and, optionally, a small camera shake).

Labels per frame: the vehicles whose centre is in the image and that are not fully hidden; boxes xywha le90
(pixels, radians; cut by the border: the visible part refitted), ``heading`` radians in ``[-pi, pi)`` (the
direction of travel, along the long side), ``difficult`` when mostly cut off or mostly hidden
(``occluded > 0.5``), and ``extras`` per object: ``track_id`` (int >= 1, stable for a vehicle),
``speed`` (px/frame, the centre's displacement since the previous frame), ``parked`` (never moves in the
sequence) and ``occluded`` (the fraction of the vehicle's pixels under occluders, 0..1).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np

from .synthetic_draw import fill_poly
from .synthetic_options import SYNTHETIC_CLASSES, SceneOptions, option_fields
from .synthetic_placement import vehicle_shadows
from .synthetic_render import add_sensor_noise, draw_camera_look, grade, shadow_factor
from .synthetic_scene import vehicle_labels
from .synthetic_state import inside_fraction
from .synthetic_traffic_sim import Traffic, TrafficParams
from .synthetic_traffic_world import TrafficWorld, build_world
from .synthetic_vehicles import VEHICLE_DRAWERS
from obbdet.structures import ImageLabels

HIDDEN_ABOVE = 0.995  # vehicles hidden more than this are not labelled
MOSTLY_HIDDEN = 0.5  # vehicles hidden more than this are difficult


@dataclass(frozen=True)
class TrafficOptions:
    """Options of :func:`render_traffic_sequence` (every field can be passed as a keyword).

    vehicle_width: pixel width of a typical car (1.8 m), as in :class:`SceneOptions` (default 18 px).
    classes: the vehicle classes drawn (a subset of ``SYNTHETIC_CLASSES``).
    hard_negatives: roof fixtures, containers, stains, road text (as in the still scenes).
    spawn_rate: probability per frame and entry lane that a new vehicle drives in.
    p_park: probability that a car or van entering looks for an empty stall and parks there.
    camera_jitter: standard deviation (px) of a slow random camera shake; 0 (default) keeps the camera still.
    brightness_drift: scale of the slow global brightness drift (0.02 = about 2 %).
    """

    vehicle_width: float | tuple[float, float] = 18.0
    classes: tuple[str, ...] = SYNTHETIC_CLASSES
    hard_negatives: bool = True
    spawn_rate: float = TrafficParams.spawn_rate
    p_park: float = TrafficParams.p_park
    camera_jitter: float = 0.0
    brightness_drift: float = 0.02

    @classmethod
    def from_kwargs(cls, options: dict) -> "TrafficOptions":
        self = cls(**option_fields(cls, options, "synthetic traffic"))
        self.scene_options()  # validates vehicle_width and classes
        for name in ("spawn_rate", "p_park"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.camera_jitter <= 20.0 or not 0.0 <= self.brightness_drift <= 0.5:
            raise ValueError(f"camera_jitter must be in [0, 20] px and brightness_drift in [0, 0.5], got "
                             f"{self.camera_jitter} and {self.brightness_drift}")
        return self

    def scene_options(self) -> SceneOptions:
        return SceneOptions.from_kwargs(dict(vehicle_width=self.vehicle_width, classes=self.classes,
                                             hard_negatives=self.hard_negatives))

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def occluded_fraction(occluder: np.ndarray, poly: np.ndarray) -> float:
    """Mean occluder coverage (``occluder`` ``[H, W]`` in [0, 1]) over the pixels of ``poly`` ``[P, 2]`` that
    lie in the image (0 when none does)."""
    h, w = occluder.shape
    x0, y0 = np.maximum(np.floor(poly.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(poly.max(axis=0)).astype(int) + 1, (w, h))
    if x0 >= x1 or y0 >= y1:
        return 0.0
    local = np.zeros((y1 - y0, x1 - x0), np.uint8)
    fill_poly(local, poly - (x0, y0), 1, aa=False)
    inside = local > 0
    return float(occluder[y0:y1, x0:x1][inside].mean()) if inside.any() else 0.0


def _compose(world: TrafficWorld, movers: list) -> np.ndarray:
    """The frame before the camera: moving vehicles and their shadows on the background, then the high
    shadows and the occluders on top. ``[H, W, 3]`` uint8."""
    scene = world.scene
    canvas = world.base.copy()
    pad = int(math.ceil(scene.m(0.12) * 4)) + 1  # the blur's reach
    for m in movers:  # shadows in a window around each vehicle (a full-frame blur per frame costs more)
        items = vehicle_shadows(scene, m.veh)
        pts = np.concatenate([poly for _, poly in items])
        x0, y0 = np.maximum(np.floor(pts.min(axis=0)).astype(int) - pad, 0)
        x1, y1 = np.minimum(np.ceil(pts.max(axis=0)).astype(int) + pad, (scene.width, scene.height))
        if x0 >= x1 or y0 >= y1:
            continue
        factor = shadow_factor(scene, [(v, poly - (x0, y0)) for v, poly in items], 0.12, (y1 - y0, x1 - x0))
        roi = canvas[y0:y1, x0:x1]
        cv2.multiply(roi, factor, dst=roi, scale=1.0 / 255.0)
    for m in movers:
        VEHICLE_DRAWERS[m.veh.cls](canvas, m.veh, scene.ppm)
    if world.high_shadow is not None:
        cv2.multiply(canvas, world.high_shadow, dst=canvas, scale=1.0 / 255.0)
    return cv2.add(cv2.multiply(canvas, world.through, scale=1.0 / 255.0), world.cover)


class _Camera:
    """Per-frame camera effects: one look per sequence, brightness drift, fresh noise, optional shake."""

    def __init__(self, rng: np.random.Generator, opts: TrafficOptions):
        self.rng, self.opts = rng, opts
        self.look = draw_camera_look(rng)
        self.noise = rng.uniform(1.0, 2.5)
        self.drift = 0.0
        self.offset = np.zeros(2)

    def next(self) -> None:
        self.drift = float(np.clip(0.97 * self.drift + self.rng.normal(0, 0.25), -1.0, 1.0))
        if self.opts.camera_jitter > 0:  # a slow random walk pulled back to the centre
            self.offset = 0.9 * self.offset + self.rng.normal(0, self.opts.camera_jitter * 0.45, 2)

    def shoot(self, canvas: np.ndarray) -> np.ndarray:
        image = add_sensor_noise(self.rng, grade(canvas, self.look, 1.0 + self.opts.brightness_drift * self.drift),
                                 self.noise)
        if self.opts.camera_jitter > 0:
            matrix = np.array([[1.0, 0.0, self.offset[0]], [0.0, 1.0, self.offset[1]]])
            image = cv2.warpAffine(image, matrix, image.shape[1::-1], flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REFLECT)
        return image


def _frame_labels(world: TrafficWorld, items: list, offset: np.ndarray) -> ImageLabels:
    """Labels of ``items`` = ``(vehicle, track_id, speed, parked, occluded, visible)`` in a frame shifted by
    ``offset`` ``[2]`` px (``visible``, the fraction inside the unshifted frame, is recomputed when shifted)."""
    scene = world.scene
    keep, visible = [], []
    for item in items:
        veh, occluded = item[0], item[4]
        cx, cy = veh.cx + offset[0], veh.cy + offset[1]
        if occluded > HIDDEN_ABOVE or not (0 <= cx < scene.width and 0 <= cy < scene.height):
            continue
        keep.append(item)
        visible.append(inside_fraction(scene, veh.poly() + offset) if offset.any() else item[5])
    shifted = [_shifted(item[0], offset) for item in keep]
    labels = vehicle_labels(shifted, np.array(visible), scene.width, scene.height)
    occ = np.array([item[4] for item in keep])
    labels.difficult = labels.difficult | (occ > MOSTLY_HIDDEN)
    labels.extras = [{"track_id": int(t), "speed": round(float(s), 4), "parked": bool(p), "occluded": round(float(o), 4)}
                     for _, t, s, p, o, _ in keep]
    return labels


def _joined(a: ImageLabels, b: ImageLabels) -> ImageLabels:
    """The objects of ``a`` then ``b`` (labels of one frame, both with heading and extras)."""
    return ImageLabels(width=a.width, height=a.height, boxes=np.concatenate([a.boxes, b.boxes]),
                       classes=a.classes + b.classes, difficult=np.concatenate([a.difficult, b.difficult]),
                       ignore=np.concatenate([a.ignore, b.ignore]), heading=np.concatenate([a.heading, b.heading]),
                       extras=a.extras + b.extras)


def _shifted(veh, offset: np.ndarray):
    if not offset.any():
        return veh
    return replace(veh, cx=veh.cx + float(offset[0]), cy=veh.cy + float(offset[1]))


def render_traffic_sequence(seed: int, n_frames: int, width: int = 768, height: int = 768, **options):
    """Render a synthetic traffic sequence frame by frame.

    Args:
        seed: the sequence's integer seed (the same seed, size and options give the same frames and labels).
        n_frames: number of frames (>= 1).
        width, height: frame size in pixels (at least 64 x 64).
        **options: :class:`TrafficOptions` fields (``vehicle_width``, ``classes``, ``hard_negatives``,
            ``spawn_rate``, ``p_park``, ``camera_jitter``, ``brightness_drift``).

    Yields:
        ``(frame [H, W, 3] uint8 RGB, labels)`` per frame (see the module docstring for the labels).
    """
    opts = TrafficOptions.from_kwargs(options)
    if width < 64 or height < 64:
        raise ValueError(f"traffic frames must be at least 64 x 64 px, got {width} x {height}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    rng = np.random.default_rng(seed)
    world = build_world(rng, int(width), int(height), opts.scene_options())
    params = TrafficParams(spawn_rate=opts.spawn_rate, p_park=opts.p_park)
    traffic = Traffic(world, rng, params, first_id=len(world.parked) + 1)
    traffic.populate()
    camera = _Camera(np.random.default_rng([int(seed) & 0xFFFFFFFF, 1]), opts)
    static = [(veh, i + 1, 0.0, True, occluded_fraction(world.occluder, veh.poly()), visible)
              for i, (veh, visible) in enumerate(world.parked)]
    still = None
    for _ in range(n_frames):
        before = {m.track_id: (m.veh.cx, m.veh.cy) for m in traffic.movers}
        traffic.step()
        camera.next()
        moving = []
        for m in traffic.movers:
            prev = before.get(m.track_id)
            speed = math.hypot(m.veh.cx - prev[0], m.veh.cy - prev[1]) if prev is not None else 0.0
            poly = m.veh.poly()
            moving.append((m.veh, m.track_id, speed, False, occluded_fraction(world.occluder, poly),
                           inside_fraction(world.scene, poly)))
        frame = camera.shoot(_compose(world, traffic.movers))
        if camera.offset.any():
            parked = _frame_labels(world, static, camera.offset)
        else:  # labelled once, so that parked vehicles keep bit-identical boxes
            parked = still if still is not None else _frame_labels(world, static, camera.offset)
            still = parked
        yield frame, _joined(parked, _frame_labels(world, moving, camera.offset))
