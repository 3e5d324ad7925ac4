"""The static world of a synthetic traffic sequence: a street scene with a junction, lots, trees over the lanes
and an overpass, rendered once.

This module owns :func:`build_world`: it lays out a scene with the synthetic scene generator's own pieces
(roads and their markings from ``synthetic_roads``, lots from ``synthetic_lots``, buildings, trees and
dressing from ``synthetic_dressing``, parked vehicles from ``synthetic_placement``), adds what traffic needs
(two crossing roads, trees whose canopies overhang the lanes, an overpass band across the main road), and
renders the layers that do not change from frame to frame: the ground with the parked vehicles, the
transmission of the high shadows, and the occluders (roofs, canopies, the overpass) as a premultiplied
overlay ``cover + through * frame / 255`` whose alpha gives the occluded fraction of every vehicle.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .synthetic_draw import Frame, fill_poly, shade
from .synthetic_dressing import add_tree, dressing
from .synthetic_ground import LOT, material_map
from .synthetic_lots import add_lot
from .synthetic_placement import place_vehicles, stains_and_shadows
from .synthetic_render import apply_shadows, render_ground, shadow_factor
from .synthetic_roads import Road, finish_roads, random_road, road_span
from .synthetic_scene import new_scene
from .synthetic_state import Scene, mark
from .synthetic_options import SceneOptions


@dataclass
class TrafficWorld:
    """A traffic sequence's static scene and its pre-rendered layers (all ``[H, W, ...]`` uint8 unless noted).

    base: ``[H, W, 3]`` ground, paint, flat objects, parked vehicles and their shadows (no high shadows).
    high_shadow: ``[H, W, 3]`` transmission (255 = lit) of buildings', trees' and the overpass' shadows, or None.
    cover, through: ``[H, W, 3]`` the occluders (roofs, canopies, overpass) as colour and transmission: a frame
        ``x`` with them on top is ``cover + through * x / 255``.
    occluder: ``[H, W]`` float32 in [0, 1], the occluders' coverage (1 = vehicle fully hidden there).
    roads: the scene's roads (``roads[0]`` the main road, ``roads[1]`` the crossing road).
    parked: ``(Vehicle, visible fraction)`` of the vehicles parked for the whole sequence.
    free_stalls: ``(centre [2], angle)`` of empty parking stalls (angle from the aisle into the stall).
    """

    scene: Scene
    base: np.ndarray
    high_shadow: np.ndarray | None
    cover: np.ndarray
    through: np.ndarray
    occluder: np.ndarray
    roads: list
    parked: list
    free_stalls: list


def _lots_along(scene: Scene, road: Road) -> list[np.ndarray]:
    """Up to two parking lots beside ``road`` with their aisles opening onto it (rows at right angles to the
    road), on free ground (not across the other road), with room left in them; each with an entrance paved
    over the verge. Returns the entrances' polygons (to keep free of kerb-parked vehicles)."""
    rng = scene.rng
    e_u, e_v = road.axes
    u0, u1 = road_span(scene, road)
    entrances: list[np.ndarray] = []
    for _ in range(12):
        if len(entrances) >= 2:
            break
        side = -1 if rng.random() < 0.5 else 1
        across, along = scene.m(rng.uniform(14, 30)), scene.m(rng.uniform(20, 40))
        if u1 - u0 <= across:  # a small frame: no room along the road
            continue
        u = rng.uniform(u0 + across / 2, u1 - across / 2)
        centre = road.origin + u * e_u + side * e_v * (road.half_total + scene.m(1.6) + along / 2)
        if add_lot(scene, centre, road.angle + math.pi / 2, along, across, p_occ=rng.uniform(0.4, 0.8), check=True):
            far = side * (road.half_total + scene.m(1.6))
            paved = sorted((side * road.half_carriage, far))
            scene.materials.append((2.5, LOT, road.frame.rect(u - across / 2, u + across / 2, *paved)))
            kerb = sorted((side * (road.half_carriage - road.parking), far))
            entrances.append(road.frame.rect(u - across / 2, u + across / 2, *kerb))
    return entrances


def _overpass(scene: Scene, road: Road, avoid: Road) -> None:
    """An overpass deck across ``road`` (away from its junction with ``avoid``): drawn above the vehicles,
    casting its shadow, kept free of buildings, lots and trees."""
    rng = scene.rng
    u0, u1 = road_span(scene, road)
    u_junction = float(road.uv(avoid.origin)[0])  # the crossing road passes through its own origin
    width = scene.m(rng.uniform(9.0, 13.0))
    clear = avoid.half_total + width + scene.m(6)
    choices = [u for u in np.linspace(u0 + width, u1 - width, 41) if abs(u - u_junction) > clear]
    if not choices:
        choices = [u1 - width]
    u = float(choices[int(rng.integers(len(choices)))])
    angle = road.angle + math.pi / 2 + math.radians(rng.normal(0, 8))
    centre = road.origin + u * road.axes[0]
    f, span = Frame(centre[0], centre[1], angle), scene.diag * 1.5
    deck = f.rect(-span, span, -width / 2, width / 2)
    mark(scene.reserve, deck)
    shift = scene.shadow_dir * scene.shadow_k * rng.uniform(5.0, 7.0)
    scene.shadow_high.append((255, deck + shift))
    concrete = shade((168, 166, 160), 1.0, rng.normal(0, 8))  # grey: one brightness offset for all channels
    asphalt = shade((86, 86, 88), 1.0, rng.normal(0, 6))
    rail, half = scene.m(0.5), width / 2
    dash, gap = scene.m(3.0), scene.m(6.0)
    dashes = [f.rect(a, a + dash, -scene.m(0.08), scene.m(0.08)) for a in np.arange(-span, span, dash + gap)]

    def draw(canvas):
        fill_poly(canvas, deck, shade(concrete, 0.8))
        fill_poly(canvas, f.rect(-span, span, -half + rail, half - rail), asphalt)
        for side in (-1, 1):  # parapets, lit on one side
            v = side * (half - rail / 2)
            fill_poly(canvas, f.rect(-span, span, v - rail / 3, v + rail / 3), shade(concrete, 1.0 + 0.1 * side))
        fill_poly(canvas, dashes, (214, 214, 208))
    scene.high.append(draw)


def _trees_over_lanes(scene: Scene, road: Road, avoid: Road) -> None:
    """Street trees on the verges whose canopies reach over the outer lanes (away from the junction)."""
    rng = scene.rng
    e_u, e_v = road.axes
    u0, u1 = road_span(scene, road)
    u_junction = float(road.uv(avoid.origin)[0])
    n = int(rng.poisson(max((u1 - u0) / scene.m(45), 1.0))) + 1
    for _ in range(n):
        u = rng.uniform(u0, u1)
        if abs(u - u_junction) < avoid.half_total + scene.m(6):
            continue
        side = -1 if rng.random() < 0.5 else 1
        radius = scene.m(rng.uniform(3.0, 5.0))
        v = side * (road.half_carriage + radius * rng.uniform(-0.2, 0.6))  # the canopy reaches over the lane
        add_tree(scene, road.origin + u * e_u + v * e_v, radius, check=False)


def _traffic_layout(scene: Scene) -> list[np.ndarray]:
    """Lay out the street junction; returns the lot entrances (see :func:`_lots_along`)."""
    rng, phi = scene.rng, scene.phi
    lanes = 1 if rng.random() < 0.6 else 2
    main = random_road(scene, phi, 0.15, lanes=lanes,
                       median_m=rng.uniform(1.5, 3.0) if lanes == 2 and rng.random() < 0.3 else 0.0,
                       parking_m=rng.uniform(2.1, 2.5) if rng.random() < 0.7 else 0.0,
                       sidewalk_m=rng.uniform(1.8, 3.0))
    cross = random_road(scene, phi + math.pi / 2 + math.radians(rng.normal(0, 3)), 0.2, lanes=1,
                        sidewalk_m=rng.uniform(1.8, 3.0))
    _overpass(scene, main, cross)
    entrances = _lots_along(scene, main)
    finish_roads(scene, 0.0, 0.0)  # no vehicles in the lanes: the traffic drives there
    for road, other in ((main, cross), (cross, main)):
        _trees_over_lanes(scene, road, other)
    dressing(scene, buildings=8, trees=3, beds=1.0, containers=0.2)
    return entrances


def _overlay(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """The high layer as (colour on black, transmission): drawing is linear in the background, so drawing it
    on black and on white gives both."""
    on_black = np.zeros((scene.height, scene.width, 3), np.uint8)
    on_white = np.full_like(on_black, 255)
    for draw in scene.high:
        draw(on_black)
        draw(on_white)
    through = cv2.subtract(on_white, on_black)
    return on_black, through


def build_world(rng: np.random.Generator, width: int, height: int, opts: SceneOptions) -> TrafficWorld:
    """Lay out and pre-render the static scene of a traffic sequence (``opts.scene`` and ``n_vehicles`` are
    ignored: the layout is always a street junction, parked vehicles fill its stalls and kerbs naturally)."""
    opts = SceneOptions(vehicle_width=opts.vehicle_width, n_vehicles=None, dense=False, classes=opts.classes,
                        hard_negatives=opts.hard_negatives, scene="street")
    scene = new_scene(rng, width, height, opts)
    entrances = _traffic_layout(scene)
    scene.material_map = material_map(scene)
    obstacle = scene.obstacle.copy()
    for entrance in entrances:  # no vehicle parks in front of a lot's entrance
        mark(scene.obstacle, entrance)
    place_vehicles(scene)
    scene.obstacle = obstacle
    if opts.hard_negatives:
        stains_and_shadows(scene)
    base = render_ground(scene)
    apply_shadows(scene, base, scene.shadow_low, 0.12)
    for draw in scene.low:
        draw(base)
    cover, through = _overlay(scene)
    occluder = 1.0 - through[..., 0].astype(np.float32) / 255.0
    return TrafficWorld(scene=scene, base=base, high_shadow=shadow_factor(scene, scene.shadow_high, 0.3),
                        cover=cover, through=through, occluder=occluder, roads=list(scene.roads[:2]),
                        parked=list(scene.vehicles), free_stalls=list(scene.free_stalls))
