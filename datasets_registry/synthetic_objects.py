"""Drawers for the non-vehicle objects of the synthetic aerial scenes: roofs, kerbed beds, containers, paint.

This module owns the factories that turn a placed object into a draw callable: :func:`roof_drawer` (gable,
hip or flat roofs with eaves, tile courses, chimneys and roof fixtures), :func:`bed_drawer` (islands,
flowerbeds, planters), :func:`container_drawer`, and the painters of road lines, arrows and road text,
which draw into the scene's paint masks rather than the canvas. Factories take the scene being composed
(:class:`datasets_registry.synthetic_state.Scene`: ``rng``, ``m()`` metres to pixels, ``opts``, the sun's
``shadow_dir`` / ``shadow_k``) and draw all their random choices up front, so drawing consumes no
randomness.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np

from .synthetic_draw import Frame, fill_circle, fill_poly, jitter, pick, shade

if TYPE_CHECKING:
    from .synthetic_state import Scene

_ROOF_COLOURS = [((166, 84, 62), 0.28), ((110, 104, 100), 0.22), ((70, 70, 76), 0.18), ((140, 120, 100), 0.12),
                 ((96, 60, 50), 0.1), ((120, 130, 140), 0.1)]
_FLAT_ROOF_COLOURS = [((190, 188, 182), 0.4), ((150, 150, 148), 0.25), ((90, 90, 92), 0.2), ((200, 190, 170), 0.15)]


# ---------------------------------------------------------------------------------------------------
# Ground objects, roofs and paint
# ---------------------------------------------------------------------------------------------------

def paint_poly(colour: str, poly: np.ndarray) -> Callable:
    def paint(masks):
        fill_poly(masks[colour], poly, 255)
    return paint


def bed_drawer(scene: "Scene", outer: np.ndarray, inner: np.ndarray, kind: str) -> Callable:
    """A kerbed bed (island, flowerbed, planter): kerb, soil or grass, plants."""
    rng = scene.rng
    kerb = jitter(rng, (185, 184, 178), 8)
    base = {"grass": (84, 116, 56), "flowers": (92, 72, 54), "shrubs": (88, 74, 56)}[kind]
    base = jitter(rng, base, 6)
    centre = inner.mean(axis=0)
    extent = np.abs(inner - centre).max()
    blobs = []
    if kind != "grass":
        n = int(rng.integers(6, 18))
        for _ in range(n):
            pt = centre + (inner[int(rng.integers(4))] - centre) * rng.uniform(0, 0.8) + rng.normal(0, extent * 0.15, 2)
            if kind == "flowers":
                colour = pick(rng, [((200, 40, 60), 1), ((230, 200, 60), 1), ((240, 240, 240), 1),
                                     ((60, 110, 50), 3), ((170, 80, 170), 1)])
                blobs.append((pt, scene.m(rng.uniform(0.15, 0.35)), jitter(rng, colour, 10)))
            else:
                blobs.append((pt, scene.m(rng.uniform(0.3, 0.7)), jitter(rng, (48, 84, 40), 10)))

    def draw(canvas):
        fill_poly(canvas, outer, kerb)
        fill_poly(canvas, inner, base)
        for pt, r, colour in blobs:
            fill_circle(canvas, pt, r, colour)
    return draw


def _face_light(scene: "Scene", normal: np.ndarray) -> float:
    """Brightness factor of a roof face whose outward normal (image plane) is ``normal``."""
    return 1.0 + 0.3 * float(normal @ -scene.shadow_dir)


def roof_drawer(scene: "Scene", f: Frame, length: float, width: float, roof: str) -> Callable:
    rng = scene.rng
    hl, hw = length / 2, width / 2
    eave = scene.m(rng.uniform(0.3, 0.5)) if scene.opts.hard_negatives else 0.0
    colour = jitter(rng, pick(rng, _FLAT_ROOF_COLOURS if roof == "flat" else _ROOF_COLOURS), 8)
    fascia = jitter(rng, (228, 226, 220) if rng.random() < 0.5 else shade(colour, 0.6), 6)
    e_u = np.array([f.cos, f.sin])
    e_v = np.array([-f.sin, f.cos])
    ops: list[tuple[np.ndarray, tuple]] = [(f.rect(-hl, hl, -hw, hw), fascia if eave else colour)]
    hl_i, hw_i = hl - eave, hw - eave
    if roof == "gable":
        for side in (-1, 1):
            face = f.rect(-hl_i, hl_i, min(0, side * hw_i), max(0, side * hw_i))
            ops.append((face, shade(colour, _face_light(scene, side * e_v))))
        ops.append((f.rect(-hl_i, hl_i, -scene.m(0.12), scene.m(0.12)), shade(colour, 1.15, 10)))  # ridge
        ops += _roof_lines(scene, f, hl_i, hw_i, colour)
    elif roof == "hip":
        r = max(hl_i - hw_i, 0.0)
        faces = [([(-hl_i, -hw_i), (hl_i, -hw_i), (r, 0), (-r, 0)], -e_v),
                 ([(-hl_i, hw_i), (hl_i, hw_i), (r, 0), (-r, 0)], e_v),
                 ([(hl_i, -hw_i), (hl_i, hw_i), (r, 0)], e_u),
                 ([(-hl_i, -hw_i), (-hl_i, hw_i), (-r, 0)], -e_u)]
        for pts, normal in faces:
            ops.append((f.pts(pts), shade(colour, _face_light(scene, normal))))
    else:
        ops.append((f.rect(-hl_i, hl_i, -hw_i, hw_i), colour))
        for _ in range(int(rng.integers(0, 4))):  # membrane patches
            u, v = rng.uniform(-0.6, 0.6) * hl_i, rng.uniform(-0.6, 0.6) * hw_i
            a, b = rng.uniform(0.1, 0.3) * hl_i, rng.uniform(0.1, 0.3) * hw_i
            ops.append((f.rect(u - a, u + a, v - b, v + b), jitter(rng, colour, 6)))
    ops += _roof_fixtures(scene, f, hl_i, hw_i, roof, colour)
    if roof != "flat" and rng.random() < 0.5:  # chimney with its shadow
        u, v = rng.uniform(-0.7, 0.7) * hl_i, rng.uniform(-0.6, 0.6) * hw_i
        c = scene.m(0.35)
        sh = scene.shadow_dir * scene.shadow_k * 1.2
        ops.append((f.rect(u - c, u + c, v - c, v + c) + sh, shade(colour, 0.45)))
        ops.append((f.rect(u - c, u + c, v - c, v + c), jitter(rng, (120, 90, 80), 10)))

    def draw(canvas):
        for poly, col in ops:
            fill_poly(canvas, poly, col)
    return draw


def _roof_lines(scene: "Scene", f: Frame, hl: float, hw: float, colour) -> list:
    """Tile courses parallel to the ridge."""
    step = scene.m(0.9)
    if step < 2.5:
        return []
    line = shade(colour, 0.85)
    half = 0.25 if step < 6 else 0.5
    return [(f.rect(-hl, hl, v - half, v + half), line) for v in np.arange(-hw + step, hw - step / 2, step)
            if abs(v) > step / 2]


def _roof_fixtures(scene: "Scene", f: Frame, hl: float, hw: float, roof: str, colour) -> list:
    """Roof windows, solar panels, skylights and plant units: vehicle-sized hard negatives on roofs."""
    if not scene.opts.hard_negatives:
        return []
    rng = scene.rng
    ops = []
    for _ in range(int(rng.integers(0, 4))):
        kind = rng.choice(["window", "solar", "unit" if roof == "flat" else "window"], p=[0.45, 0.3, 0.25])
        if kind == "solar":
            nu, nv = int(rng.integers(1, 5)), int(rng.integers(1, 3))
            pu, pv = scene.m(1.0), scene.m(1.7)
        elif kind == "window":
            nu, nv = 1, 1
            pu, pv = scene.m(rng.uniform(0.8, 1.4)), scene.m(rng.uniform(1.1, 2.6))
        else:
            nu, nv = 1, 1
            pu, pv = scene.m(rng.uniform(1.2, 2.5)), scene.m(rng.uniform(2.0, 4.5))
        if nu * pu > 1.6 * hl or nv * pv > 0.9 * hw:
            continue
        u0 = rng.uniform(-hl + scene.m(0.5), hl - nu * pu - scene.m(0.5))
        side = -1 if rng.random() < 0.5 else 1
        v0 = side * rng.uniform(scene.m(0.4), max(hw - nv * pv - scene.m(0.3), scene.m(0.45)))
        v0 -= nv * pv if side < 0 else 0
        if roof == "flat":
            v0 = rng.uniform(-hw + scene.m(0.4), hw - nv * pv - scene.m(0.4))
        # vertical roof unit: its shadow first
        if kind == "unit":
            sh = scene.shadow_dir * scene.shadow_k * rng.uniform(0.8, 1.8)
            ops.append((f.rect(u0, u0 + pu, v0, v0 + pv) + sh, shade(colour, 0.55)))
            ops.append((f.rect(u0, u0 + pu, v0, v0 + pv), jitter(rng, (205, 205, 200), 12)))
            ops.append((f.rect(u0 + pu * 0.2, u0 + pu * 0.8, v0 + pv * 0.15, v0 + pv * 0.45), (95, 95, 98)))
            continue
        frame_col = (200, 200, 196) if kind == "window" else (150, 155, 165)
        glass = jitter(rng, (38, 48, 70) if kind == "solar" else (52, 60, 72), 8)
        ops.append((f.rect(u0, u0 + nu * pu, v0, v0 + nv * pv), frame_col))
        gap = max(scene.m(0.05), 0.35)
        for i in range(nu):
            for j in range(nv):
                ops.append((f.rect(u0 + i * pu + gap, u0 + (i + 1) * pu - gap, v0 + j * pv + gap,
                                   v0 + (j + 1) * pv - gap), glass))
    return ops


def container_drawer(scene: "Scene", f: Frame, length: float, width: float, colour) -> Callable:
    hl, hw = length / 2, width / 2
    e = max(0.5, scene.m(0.08))
    step = scene.m(0.6)

    def draw(canvas):
        fill_poly(canvas, f.rect(-hl, hl, -hw, hw), shade(colour, 0.6))
        fill_poly(canvas, f.rect(-hl + e, hl - e, -hw + e, hw - e), colour)
        if step >= 2.0:
            rib = shade(colour, 0.9)
            for u in np.arange(-hl + step, hl - step / 2, step):
                fill_poly(canvas, f.rect(u - step / 4, u + step / 4, -hw + e, hw - e), rib)
        c = scene.m(0.25)
        for su in (-1, 1):
            for sv in (-1, 1):
                fill_poly(canvas, f.rect(su * hl - c if su > 0 else -hl, su * hl if su > 0 else -hl + c,
                                     sv * hw - c if sv > 0 else -hw, sv * hw if sv > 0 else -hw + c),
                      shade(colour, 0.5))
    return draw


def arrow_painter(scene: "Scene", centre, direction: float) -> Callable:
    f = Frame(centre[0], centre[1], direction)
    m = scene.m
    shaft = f.rect(-m(2.5), m(0.9), -m(0.09), m(0.09))
    head = f.pts([(m(0.9), -m(0.45)), (m(2.5), 0.0), (m(0.9), m(0.45))])

    def paint(masks):
        fill_poly(masks["white"], [shaft, head], 255)
    return paint


ROAD_TEXT = ("BUS", "STOP", "SLOW", "BUS LANE", "TAXI", "30", "KEEP CLEAR", "SCHOOL", "LOOK")


def text_painter(scene: "Scene", text: str, centre, direction: float, across: float) -> Callable:
    """Road text read by a driver moving along ``direction``: letters stretched along the lane."""
    along = scene.m(scene.rng.uniform(1.6, 2.6))

    def paint(masks):
        font, fscale, thick = cv2.FONT_HERSHEY_SIMPLEX, 2.0, 5
        (tw, th), base = cv2.getTextSize(text, font, fscale, thick)
        patch = np.zeros((th + base + 8, tw + 8), np.uint8)
        cv2.putText(patch, text, (4, th + 4), font, fscale, 255, thick, cv2.LINE_AA)
        ph, pw = patch.shape
        d = np.array([math.cos(direction), math.sin(direction)])
        r = np.array([-d[1], d[0]])
        lin = np.stack([r * across / pw, -d * along / ph], axis=1)  # patch (x, y) -> image
        origin = np.asarray(centre) - lin @ np.array([pw / 2, ph / 2])
        corners = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], float) @ lin.T + origin
        x0, y0 = np.floor(corners.min(axis=0)).astype(int)
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 1
        mask = masks["white"]
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, mask.shape[1]), min(y1, mask.shape[0])
        if cx0 >= cx1 or cy0 >= cy1:
            return
        matrix = np.concatenate([lin, (origin - (x0, y0))[:, None]], axis=1)
        warped = cv2.warpAffine(patch, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
        roi = mask[cy0:cy1, cx0:cx1]
        np.maximum(roi, warped[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0], out=roi)
    return paint
