"""Scene kinds of the synthetic aerial scenes: how a parking, street, suburb, depot or yard scene is laid out.

This module owns one layout per entry of ``SCENE_KINDS`` (``LAYOUTS``): each puts roads, lots, driveways,
open ground and dressing along the scene's dominant orientation, and leaves the vehicle slots and the
count of free-standing vehicles for placement.
"""
from __future__ import annotations

import math

import numpy as np

from .synthetic_draw import Frame
from .synthetic_dressing import dressing, try_building
from .synthetic_ground import CONCRETE, LOT, PAVERS, SOIL
from .synthetic_lots import add_lot
from .synthetic_placement import eager_slot
from .synthetic_roads import Road, add_road, finish_roads, random_road, road_span
from .synthetic_state import Scene, class_choice, inside_fraction, mark, mask_hits, random_point
from .synthetic_vehicles import make_vehicle


def _layout_parking(scene: Scene) -> None:
    rng, W, H = scene.rng, scene.width, scene.height
    phi, diag = scene.phi, scene.diag
    e_v = np.array([-math.sin(phi), math.cos(phi)])
    if scene.opts.dense and rng.random() < 0.5:  # a road through the middle, lots on both sides
        road = random_road(scene, phi, 0.1, lanes=1, sidewalk_m=rng.uniform(1.5, 2.5))
        for side in (-1, 1):
            depth = diag * 0.75
            c = road.origin + side * e_v * (road.half_total + scene.m(1.5) + depth / 2)
            add_lot(scene, c, phi, diag * 1.4, depth, beta_deg=90.0 if rng.random() < 0.7 else 60.0)
    elif scene.opts.dense:
        add_lot(scene, scene.centre + rng.uniform(-0.05, 0.05, 2) * (W, H), phi, diag * 1.3, diag * 1.2)
    else:
        depth = min(W, H) * rng.uniform(0.5, 1.1)
        c = scene.centre + rng.uniform(-0.15, 0.15, 2) * (W, H)
        beta = 90.0 if rng.random() < 0.75 else float(rng.choice([45.0, 60.0]))
        add_lot(scene, c, phi, diag * rng.uniform(0.7, 1.4), depth, beta_deg=beta)
        if rng.random() < 0.6:
            road_c = c + e_v * (depth / 2 + scene.m(1.2) + scene.m(rng.uniform(3.5, 6.0)) * 2.2)
            add_road(scene, road_c, phi, lanes=1, sidewalk_m=rng.uniform(1.5, 3.0))
        if rng.random() < 0.35:
            angle = phi + math.pi / 2 if rng.random() < 0.6 else rng.uniform(0, math.pi)
            add_lot(scene, random_point(scene), angle, scene.m(rng.uniform(25, 50)), scene.m(rng.uniform(14, 30)),
                     check=True)
    finish_roads(scene, rng.uniform(0.1, 0.5), 0.0)
    dressing(scene, buildings=6, trees=3, beds=1.5, containers=0.5)


def _layout_street(scene: Scene) -> None:
    rng, phi = scene.rng, scene.phi
    lanes = 1 if rng.random() < 0.6 else 2
    random_road(scene, phi, lanes=lanes, median_m=rng.uniform(1.5, 4.0) if lanes == 2 and rng.random() < 0.35 else 0,
                 parking_m=rng.uniform(2.1, 2.5) if rng.random() < 0.5 else 0.0, sidewalk_m=rng.uniform(1.8, 3.5))
    if rng.random() < 0.35:
        random_road(scene, phi + math.pi / 2 + math.radians(rng.normal(0, 4)), lanes=1,
                     parking_m=rng.uniform(2.1, 2.5) if rng.random() < 0.4 else 0.0, sidewalk_m=rng.uniform(1.8, 3))
    if rng.random() < 0.35:
        for _ in range(6):
            if add_lot(scene, random_point(scene), phi + (0 if rng.random() < 0.6 else math.pi / 2),
                        scene.m(rng.uniform(20, 45)), scene.m(rng.uniform(13, 28)), check=True):
                break
    finish_roads(scene, rng.uniform(0.15, 0.6), rng.uniform(0.0, 0.3))
    dressing(scene, buildings=10, trees=4, beds=1.0, containers=0.3)


def _layout_suburb(scene: Scene) -> None:
    rng, phi = scene.rng, scene.phi
    road = random_road(scene, phi, 0.2, lanes=1, sidewalk_m=rng.uniform(1.5, 2.5) if rng.random() < 0.7 else 0.0,
                        marked=rng.random() < 0.5)
    e_u, e_v = road.axes
    u0, u1 = road_span(scene, road)
    for side in (-1, 1):
        u = u0 + rng.uniform(0, scene.m(8))
        while u < u1:
            plot = scene.m(rng.uniform(15, 24))
            setback = scene.m(rng.uniform(5, 9))
            house_l, house_w = rng.uniform(9, 14), rng.uniform(7, 10)
            dist = road.half_total + setback + scene.m(house_w) / 2
            centre = road.origin + (u + plot / 2) * e_u + side * dist * e_v
            if try_building(scene, centre, phi, house_l, house_w, roof=str(rng.choice(["gable", "hip"])),
                             margin_m=0.8):
                _driveway(scene, road, side, u + plot / 2 + side * scene.m(house_l / 2 + 2.0), setback)
            u += plot
    finish_roads(scene, rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.35))
    dressing(scene, buildings=2, trees=8, beds=2.0, containers=0.1)


def _driveway(scene: Scene, road: Road, side: int, u: float, length: float) -> None:
    rng = scene.rng
    e_u, e_v = road.axes
    width = scene.m(rng.uniform(3.0, 5.5))
    start = road.half_carriage
    f = road.frame
    drive = f.rect(u - width / 2, u + width / 2, min(side * start, side * (road.half_total + length)),
                   max(side * start, side * (road.half_total + length)))
    if mask_hits(scene.obstacle, drive):
        return
    scene.materials.append((1.5, CONCRETE if rng.random() < 0.6 else PAVERS, drive))
    mark(scene.reserve, drive)
    heading = road.angle + side * math.pi / 2 + (math.pi if rng.random() < 0.5 else 0.0)
    n_cars = int(rng.integers(1, 3)) if width > scene.m(4.5) else 1
    for i in range(n_cars):
        cls = class_choice(scene, {"car": 1.0, "van": 0.2})
        if cls is None:
            return
        veh = make_vehicle(scene, cls, (0, 0), heading + math.radians(rng.normal(0, 4)), "driveway", 0.6)
        offset = (i - (n_cars - 1) / 2) * width / max(n_cars, 1)
        along = road.half_total + length * rng.uniform(0.35, 0.6)
        pos = road.origin + (u + offset) * e_u + side * along * e_v
        veh.cx, veh.cy = float(pos[0]), float(pos[1])
        scene.candidates.append(eager_slot(veh))


def _layout_depot(scene: Scene) -> None:
    rng, phi, W, H = scene.rng, scene.phi, scene.width, scene.height
    e_v = np.array([-math.sin(phi), math.cos(phi)])
    depth = min(W, H) * rng.uniform(0.55, 1.0) if not scene.opts.dense else scene.diag * 1.1
    c = scene.centre + rng.uniform(-0.12, 0.12, 2) * (W, H)
    add_lot(scene, c, phi, scene.diag * rng.uniform(0.8, 1.4), depth, large=True,
             beta_deg=90.0 if rng.random() < 0.7 else 60.0)
    if rng.random() < 0.6:
        road_c = c + e_v * (depth / 2 + scene.m(1.2) + scene.m(8))
        add_road(scene, road_c, phi, lanes=1, sidewalk_m=rng.uniform(0, 2.0))
    if rng.random() < 0.5:
        for _ in range(5):
            if add_lot(scene, random_point(scene), phi + (0 if rng.random() < 0.5 else math.pi / 2),
                        scene.m(rng.uniform(20, 45)), scene.m(rng.uniform(13, 26)), check=True):
                break
    for _ in range(4):
        if try_building(scene, random_point(scene), phi, rng.uniform(20, 45), rng.uniform(14, 30), roof="flat"):
            break
    finish_roads(scene, rng.uniform(0.1, 0.4), 0.0)
    dressing(scene, buildings=2, trees=2, beds=0.5, containers=1.5)


def _layout_yard(scene: Scene) -> None:
    rng, phi = scene.rng, scene.phi
    ground = CONCRETE if rng.random() < 0.4 else (SOIL if rng.random() < 0.5 else LOT)
    f = Frame(*(scene.centre + rng.uniform(-0.1, 0.1, 2) * (scene.width, scene.height)), phi)
    size = scene.diag * rng.uniform(0.6, 1.2)
    yard = f.rect(-size / 2, size / 2, -size * 0.4, size * 0.4)
    scene.materials.append((1, ground, yard))
    area_m2 = inside_fraction(scene, yard) * size * size * 0.8 / scene.ppm ** 2
    scene.free_count = int(area_m2 / rng.uniform(90, 260))
    if rng.random() < 0.5:
        random_road(scene, phi + math.pi / 2, 0.45, lanes=1, sidewalk_m=rng.uniform(0, 2.0))
    finish_roads(scene, rng.uniform(0.1, 0.4), 0.0)
    dressing(scene, buildings=3, trees=2, beds=0.3, containers=2.5)


LAYOUTS = {"parking": _layout_parking, "street": _layout_street, "suburb": _layout_suburb, "depot": _layout_depot,
            "yard": _layout_yard}
