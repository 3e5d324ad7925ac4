"""Vehicle placement in the synthetic aerial scenes: slots, selection, collision tests, free vehicles.

This module owns how the slots a layout offers become vehicles: :class:`Slot` (a lazily built vehicle and
its occupancy weight), :func:`place_vehicles` (a natural count, or a target count made up with vehicles
at arbitrary angles on open ground), the visibility and collision test every vehicle passes before it
joins the scene's layers, and :func:`stains_and_shadows`, the oil stains and car-sized shadows left where
no vehicle stands (hard negatives).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from .synthetic_draw import Frame, circle_poly, hull
from .synthetic_ground import ASPHALT, CONCRETE, LOT, PAVERS, SOIL
from .scale import CAR_WIDTH_M
from .synthetic_options import as_range
from .synthetic_state import Scene, class_choice, inside_fraction, mark, mask_hits
from .synthetic_vehicles import VEHICLE_DRAWERS, Vehicle, make_vehicle

logger = logging.getLogger(__name__)

MIN_VISIBLE = 0.15  # vehicle slots less visible than this (cut by the image border) stay empty
_OPEN_GROUND = (LOT, CONCRETE, PAVERS, SOIL)  # where vehicles may stand at arbitrary angles
_FREE_MIX = {"car": 1.0, "van": 0.35, "truck": 0.3, "bus": 0.2}


@dataclass
class Slot:
    """A place the layout offers a vehicle: ``make()`` builds it (lazily: dense lots offer thousands)."""

    weight: float  # probability of being occupied in a natural scene; relative weight for a target count
    make: Callable[[], "Vehicle | None"]
    stall: tuple | None = None  # (centre, angle) of a parking stall, for oil stains when it stays empty


def eager_slot(veh: Vehicle) -> Slot:
    return Slot(veh.weight, lambda: veh)


# ---------------------------------------------------------------------------------------------------
# Selection and placement
# ---------------------------------------------------------------------------------------------------

def vehicle_shadows(scene: Scene, veh: Vehicle) -> list[tuple[int, np.ndarray]]:
    """The low shadows ``(darkness 0..255, polygon)`` of a vehicle: its contact shadow and its cast shadow."""
    poly = veh.poly()
    shift = scene.shadow_dir * scene.shadow_k * veh.height_m
    return [(140, veh.poly(scene.m(0.22))), (255, hull(np.concatenate([poly, poly + shift])))]


def _try_place(scene: Scene, veh: Vehicle) -> bool:
    """Place ``veh`` unless it overlaps an obstacle or a vehicle, or too little of it is in the image."""
    poly = veh.poly()
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    inside = lo[0] >= 0 and lo[1] >= 0 and hi[0] <= scene.width and hi[1] <= scene.height
    visible = 1.0 if inside else inside_fraction(scene, poly)
    if visible < MIN_VISIBLE:
        return False
    if mask_hits(scene.obstacle, poly) or mask_hits(scene.occupied, veh.poly(scene.m(0.12))):
        return False
    mark(scene.occupied, poly)
    scene.vehicles.append((veh, visible))
    scene.shadow_low += vehicle_shadows(scene, veh)
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
        cls = class_choice(scene, _FREE_MIX)
        if cls is None:
            break
        pt = (x + rng.random(), y + rng.random())
        placed += _try_place(scene, make_vehicle(scene, cls, pt, rng.uniform(-math.pi, math.pi), "free"))
    return placed


def _target_count(scene: Scene) -> int | None:
    if scene.opts.n_vehicles is None:
        return None
    low, high = as_range(scene.opts.n_vehicles)
    return int(scene.rng.integers(int(low), int(high) + 1))


def place_vehicles(scene: Scene) -> None:
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


def stains_and_shadows(scene: Scene) -> None:
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
        if mask_hits(scene.occupied, poly) or mask_hits(scene.obstacle, poly):
            continue
        scene.shadow_low.append((255, poly))
        n -= 1
