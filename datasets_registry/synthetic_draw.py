"""Drawing primitives of the synthetic aerial scenes: anti-aliased polygons and circles, local frames, colours.

This module owns the low-level drawing every other synthetic module builds on. Coordinates are continuous
pixels: pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``, so polygons are shifted by half a pixel for OpenCV
(which puts pixel centres on integers) and drawn at 1/16 px precision, anti-aliased. Shapes are built in a
local :class:`Frame` (``+u`` along a vehicle's front, ``+v`` 90 degrees clockwise on screen). Colours are
drawn from ``[(colour, weight), ...]`` tables with :func:`pick`; ``CONTAINER_COLOURS`` is shared by truck
loads and shipping containers.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

_SHIFT = 4  # OpenCV fixed-point bits: polygons are drawn at 1/16 px
_ONE = 1 << _SHIFT


# ---------------------------------------------------------------------------------------------------
# Drawing primitives (continuous coordinates: pixel (i, j) covers [i, i+1) x [j, j+1))
# ---------------------------------------------------------------------------------------------------

def _fixed(poly: np.ndarray) -> np.ndarray:
    """Polygon ``[P, 2]`` in continuous coordinates -> OpenCV fixed-point vertices (pixel centres at ints)."""
    return np.round((np.asarray(poly, np.float64) - 0.5) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def fill_poly(img: np.ndarray, polys, color, aa: bool = True) -> None:
    """Fill polygons (each ``[P, 2]``) with ``color`` (a scalar for masks), anti-aliased on uint8."""
    if isinstance(polys, np.ndarray) and polys.ndim == 2:
        polys = [polys]
    color = tuple(map(float, color)) if isinstance(color, (tuple, list, np.ndarray)) else float(color)
    cv2.fillPoly(img, [_fixed(p) for p in polys], color, cv2.LINE_AA if aa else cv2.LINE_8, _SHIFT)


def fill_circle(img: np.ndarray, centre, radius: float, color, aa: bool = True) -> None:
    color = tuple(float(c) for c in color) if np.ndim(color) else float(color)
    c = np.round((np.asarray(centre, np.float64) - 0.5) * _ONE).astype(int)
    cv2.circle(img, (int(c[0]), int(c[1])), max(int(round(radius * _ONE)), 1), color, -1,
               cv2.LINE_AA if aa else cv2.LINE_8, _SHIFT)


_ARC = np.linspace(0.0, math.pi / 2, 4)  # corner arcs of rounded rectangles


class Frame:
    """A local frame: origin (cx, cy), +u along ``angle`` (a vehicle's front), +v 90 degrees clockwise."""

    def __init__(self, cx: float, cy: float, angle: float):
        self.cx, self.cy = cx, cy
        self.cos, self.sin = math.cos(angle), math.sin(angle)
        self._rot = np.array([[self.cos, self.sin], [-self.sin, self.cos]])
        self._origin = np.array([cx, cy])

    def pts(self, uv) -> np.ndarray:
        """Image coordinates ``[P, 2]`` of frame points ``[P, 2]``."""
        return np.asarray(uv, np.float64).reshape(-1, 2) @ self._rot + self._origin

    def rect(self, u0, u1, v0, v1) -> np.ndarray:
        return self.pts([(u0, v0), (u1, v0), (u1, v1), (u0, v1)])

    def trapezoid(self, u0, half0, u1, half1) -> np.ndarray:
        """Quadrilateral with half-width ``half0`` at ``u0`` and ``half1`` at ``u1`` (symmetric about v=0)."""
        return self.pts([(u0, -half0), (u1, -half1), (u1, half1), (u0, half0)])

    def rounded(self, u0, u1, v0, v1, r_front, r_rear) -> np.ndarray:
        """Rectangle ``[u0, u1] x [v0, v1]`` with corner radii ``r_front`` (at ``u1``) and ``r_rear`` (px)."""
        pts = []
        rf = min(r_front, (u1 - u0) / 2, (v1 - v0) / 2)
        rr = min(r_rear, (u1 - u0) / 2, (v1 - v0) / 2)
        for (cu, cv, r, start) in ((u1 - rf, v0 + rf, rf, -math.pi / 2), (u1 - rf, v1 - rf, rf, 0.0),
                                   (u0 + rr, v1 - rr, rr, math.pi / 2), (u0 + rr, v0 + rr, rr, math.pi)):
            pts.append(np.stack([cu + r * np.cos(start + _ARC), cv + r * np.sin(start + _ARC)], axis=-1))
        return self.pts(np.concatenate(pts))


def shade(color, factor: float, add: float = 0.0) -> tuple:
    return tuple(float(min(max(c * factor + add, 0.0), 255.0)) for c in color)


def jitter(rng: np.random.Generator, color, amount: float) -> tuple:
    return tuple(float(np.clip(c + rng.normal(0, amount), 0, 255)) for c in color)


def hull(points: np.ndarray) -> np.ndarray:
    return cv2.convexHull(points.astype(np.float32)).reshape(-1, 2).astype(np.float64)


def circle_poly(centre, radius: float, n: int = 20) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.stack([centre[0] + radius * np.cos(t), centre[1] + radius * np.sin(t)], axis=-1)


# ---------------------------------------------------------------------------------------------------
# Palettes
# ---------------------------------------------------------------------------------------------------

CONTAINER_COLOURS = [((238, 238, 234), 0.5), ((150, 50, 36), 0.15), ((40, 80, 140), 0.12),
                     ((60, 110, 70), 0.08), ((200, 120, 40), 0.08), ((130, 130, 130), 0.07)]


def choose(rng: np.random.Generator, options, weights):
    """One of ``options`` drawn with relative ``weights`` (a cheap stand-in for ``rng.choice(p=...)``)."""
    total = float(sum(weights))
    x = rng.random() * total
    for option, w in zip(options, weights):
        x -= w
        if x < 0:
            return option
    return options[-1]


def pick(rng: np.random.Generator, table) -> tuple:
    """A colour from a ``[(colour, weight), ...]`` table."""
    return choose(rng, [c for c, _ in table], [w for _, w in table])
