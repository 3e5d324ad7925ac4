"""Scenery of the synthetic aerial scenes: buildings, trees, shipping containers and flowerbeds.

This module owns the objects that fill the space a layout leaves free: buildings with their cast shadows
and roofs, trees with their crowns and shadows, groups of shipping containers and kerbed flowerbeds
(vehicle-sized hard negatives), each reserving its footprint in the occupancy masks; :func:`dressing`
scatters them in proportion to the scene's area.
"""
from __future__ import annotations

import math

import numpy as np

from .synthetic_draw import CONTAINER_COLOURS, Frame, circle_poly, fill_circle, hull, jitter, pick, shade
from .synthetic_objects import bed_drawer, container_drawer, roof_drawer
from .synthetic_state import Scene, inside_fraction, mark, mark_circle, mask_hits, random_point


def try_building(scene: Scene, centre, angle: float, length_m: float, width_m: float, *,
                  roof: str | None = None, margin_m: float = 1.5) -> bool:
    length, width = scene.m(max(length_m, width_m)), scene.m(min(length_m, width_m))
    if length_m < width_m:
        angle += math.pi / 2
    f = Frame(centre[0], centre[1], angle)
    grown = f.rect(-length / 2 - scene.m(margin_m), length / 2 + scene.m(margin_m),
                   -width / 2 - scene.m(margin_m), width / 2 + scene.m(margin_m))
    if mask_hits(scene.reserve, grown) or inside_fraction(scene, grown) < 0.1:
        return False
    rng = scene.rng
    if roof is None:
        roof = "flat" if max(length_m, width_m) > 22 else str(rng.choice(["gable", "hip", "flat"], p=[0.45, 0.3, 0.25]))
    height_m = rng.uniform(6, 14) if roof == "flat" else rng.uniform(5, 9)
    foot = f.rect(-length / 2, length / 2, -width / 2, width / 2)
    mark(scene.reserve, grown)
    mark(scene.obstacle, foot)
    shift = scene.shadow_dir * scene.shadow_k * height_m
    scene.shadow_high.append((255, hull(np.concatenate([foot, foot + shift]))))
    scene.high.append(roof_drawer(scene, f, length, width, roof))
    return True


def add_tree(scene: Scene, centre, radius: float, *, check: bool = True) -> bool:
    rng = scene.rng
    crown = circle_poly(centre, radius, 16)
    if check and mask_hits(scene.reserve, crown):
        return False
    mark_circle(scene.obstacle, centre, radius)
    mark_circle(scene.reserve, centre, radius)
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
        if add_tree(scene, random_point(scene, scene.m(2)), scene.m(scene.rng.uniform(1.8, 4.5))):
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
        placed += try_building(scene, random_point(scene, scene.m(4)), angle, length, width)
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
        if mask_hits(scene.reserve, foot) or inside_fraction(scene, foot) < 0.3:
            continue
        mark(scene.obstacle, foot)
        mark(scene.reserve, foot)
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
        c = random_point(scene)
        length = scene.m(rng.uniform(3.5, 6.0))
        width = length / rng.uniform(1.8, 2.4)
        angle = scene.phi + (rng.choice([0, math.pi / 2]) if rng.random() < 0.7 else rng.uniform(0, math.pi))
        f = Frame(c[0], c[1], angle)
        outer = f.rect(-length / 2, length / 2, -width / 2, width / 2)
        if mask_hits(scene.reserve, outer):
            continue
        kerb = scene.m(0.2)
        inner = f.rect(-length / 2 + kerb, length / 2 - kerb, -width / 2 + kerb, width / 2 - kerb)
        mark(scene.reserve, outer)
        mark(scene.obstacle, outer)
        scene.flat.append(bed_drawer(scene, outer, inner, str(rng.choice(["flowers", "shrubs"]))))
        n -= 1


def dressing(scene: Scene, buildings: int, trees: int, beds: int, containers: int) -> None:
    """Buildings, trees and the loose hard negatives in whatever space the layout left free."""
    area = scene.width * scene.height / scene.ppm ** 2 / 3000.0  # in units of a 55 m x 55 m scene
    _add_buildings(scene, int(buildings * max(area, 0.5)))
    if scene.opts.hard_negatives:
        for _ in range(int(round(containers * max(area, 0.5) * scene.rng.uniform(0.5, 1.5)))):
            c = random_point(scene)
            angle = scene.phi + (0 if scene.rng.random() < 0.7 else scene.rng.uniform(0, math.pi))
            _add_container_group(scene, c, angle, int(scene.rng.integers(1, 4)))
        _add_flowerbeds(scene, int(scene.rng.poisson(beds * max(area, 0.5))))
    _add_trees(scene, int(scene.rng.poisson(trees * max(area, 0.5))))
