"""Parking lots of the synthetic aerial scenes: rows of stalls, their markings, islands and stall slots.

This module owns :func:`add_lot`: a lot's surface and kerb on the ground map, rows of perpendicular or
angled stalls (car stalls, or bus and truck stalls in a depot) along drive aisles, painted stall lines,
aisle arrows and text, planted islands, and a lazily built slot per stall for a vehicle parked nose- or
tail-in.
"""
from __future__ import annotations

import math

import numpy as np

from .synthetic_draw import Frame
from .synthetic_dressing import add_tree
from .synthetic_ground import LOT, SIDEWALK
from .synthetic_objects import arrow_painter, bed_drawer, paint_poly, text_painter
from .synthetic_placement import Slot
from .synthetic_state import Scene, class_choice, inside_fraction, mark, mask_hits
from .synthetic_vehicles import Vehicle, make_vehicle

# class mixes of the stalls
_STALL_MIX = {"car": 1.0, "van": 0.22}
_LARGE_STALL_MIX = {"bus": 1.0, "truck": 1.0}


def add_lot(scene: Scene, centre, angle: float, length: float, depth: float, *, large: bool = False,
             p_occ: float | None = None, beta_deg: float = 90.0, check: bool = False) -> bool:
    """A parking lot (rows of stalls along ``angle``), its markings, islands and stall candidates.

    ``length`` along the rows and ``depth`` across them are in px. With ``check``, the lot is only added when
    its area is free of roads and buildings. Returns whether it was added.
    """
    rng = scene.rng
    f = Frame(centre[0], centre[1], angle)
    kerb = scene.m(1.2)
    outer = f.rect(-length / 2 - kerb, length / 2 + kerb, -depth / 2 - kerb, depth / 2 + kerb)
    if check and (mask_hits(scene.reserve, outer) or inside_fraction(scene, outer) < 0.05):
        return False
    scene.materials.append((1, SIDEWALK, outer))
    scene.materials.append((2, LOT, f.rect(-length / 2, length / 2, -depth / 2, depth / 2)))
    mark(scene.reserve, outer)
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
    f = lot["frame"]
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
    scene.candidates.append(Slot(lot["p_occ"], lambda: _stall_vehicle(scene, lot, mix, entry, stall_angle), where))


def _stall_vehicle(scene: Scene, lot: dict, mix: dict, entry: np.ndarray, stall_angle: float) -> Vehicle:
    """A vehicle parked in a stall: nose or tail in, a little off-centre and askew."""
    rng = scene.rng
    veh = make_vehicle(scene, class_choice(scene, mix), (0, 0), stall_angle, "stall", lot["p_occ"],
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
    mark(scene.obstacle, stall)
    centre = stall.mean(axis=0)
    inner = centre + (stall - centre) * 0.86
    kind = rng.choice(["grass", "flowers", "shrubs"], p=[0.4, 0.3, 0.3]) if scene.opts.hard_negatives else "grass"
    scene.flat.append(bed_drawer(scene, stall, inner, str(kind)))
    if rng.random() < 0.4:
        r = min(np.linalg.norm(stall[1] - stall[0]), np.linalg.norm(stall[3] - stall[0])) * rng.uniform(0.5, 0.8)
        add_tree(scene, centre, r, check=False)
