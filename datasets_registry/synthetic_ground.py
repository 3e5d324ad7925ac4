"""Ground of the synthetic aerial scenes: material ids, the per-scene palette, texture and noise.

This module owns what the ground looks like before anything stands on it: the material ids the layout
puts on its ground map (``GRASS`` ... ``SIDEWALK``), the per-scene two-colour palette of every material and
of road paint, the texture table, smooth and fine noise, and the ground pass (:func:`material_map`
rasterises the layout's material polygons into ``[H, W]`` uint8 ids, :func:`textured_ground` turns that
map into a textured ``[H, W, 3]`` float32 image).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from .synthetic_draw import fill_poly

if TYPE_CHECKING:
    from .synthetic_state import Scene

# materials of the ground map
GRASS, SOIL, ASPHALT, LOT, CONCRETE, PAVERS, SIDEWALK = range(7)


# ---------------------------------------------------------------------------------------------------
# Palette and texture
# ---------------------------------------------------------------------------------------------------

def make_palette(rng: np.random.Generator) -> dict:
    road = rng.uniform(72, 122)
    lot = float(np.clip(road + rng.normal(0, 12), 65, 135))
    concrete = rng.uniform(140, 190)
    tint = rng.normal(0, 3, 3)
    return {
        GRASS: ((rng.uniform(60, 95), rng.uniform(95, 125), rng.uniform(40, 62)),
                (rng.uniform(115, 145), rng.uniform(118, 138), rng.uniform(70, 92))),
        SOIL: ((128, 104, 78), (98, 82, 62)),
        ASPHALT: (tuple(road * np.array([0.97, 0.99, 1.0]) + tint), tuple((road + 16) * np.array([1.0, 1.0, 0.98]))),
        LOT: (tuple(lot * np.array([0.98, 0.99, 1.0]) + tint), tuple((lot + 14) * np.array([1.0, 0.99, 0.97]))),
        CONCRETE: (tuple(concrete * np.array([1.0, 0.99, 0.95])), tuple((concrete - 18) * np.array([1.0, 1.0, 0.97]))),
        PAVERS: ((150, 122, 106), (128, 108, 98)),
        SIDEWALK: (tuple((concrete + 10) * np.array([1.0, 0.99, 0.96])), tuple(concrete * np.array([1.0, 0.99, 0.96]))),
        "white": (226, 226, 220),
        "yellow": (218, 182, 58),
        "dark": (40, 40, 42),
    }


# (low-frequency colour mix amount, mid-frequency brightness, fine grain) per material
TEXTURE = {GRASS: (0.8, 10.0, 9.0), SOIL: (0.6, 8.0, 8.0), ASPHALT: (0.35, 4.0, 5.0), LOT: (0.35, 4.0, 5.0),
            CONCRETE: (0.3, 4.0, 3.5), PAVERS: (0.5, 6.0, 6.0), SIDEWALK: (0.3, 3.0, 3.5)}


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Zero-mean, unit-ish variance noise ``[H, W]`` float32 with features about ``cell`` px across."""
    gh, gw = max(int(height / cell) + 2, 2), max(int(width / cell) + 2, 2)
    small = rng.standard_normal((gh, gw), dtype=np.float32)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC) * 1.3


# ---------------------------------------------------------------------------------------------------
# Noise
# ---------------------------------------------------------------------------------------------------

_NOISE_BANK_SIZE = 1024
_noise_bank: np.ndarray | None = None


def fine_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Per-pixel N(0, 1) noise ``[H, W]`` float32: a random window of a fixed, wrapped noise bank.

    Drawing fresh normal variates costs more than the rest of a scene's ground; grain needs no fresh
    randomness, only a random offset (and turn) per use. The bank is seeded with a constant, so scenes stay
    deterministic in every process.
    """
    global _noise_bank
    if _noise_bank is None:  # the bank tiled 2 x 2, so any window up to the bank's size is one slice
        bank = np.random.default_rng(20240607).standard_normal((_NOISE_BANK_SIZE,) * 2, dtype=np.float32)
        _noise_bank = np.tile(bank, (2, 2))
    if height > _NOISE_BANK_SIZE or width > _NOISE_BANK_SIZE:  # big scenes: blocks from random windows
        out = np.empty((height, width), np.float32)
        for y in range(0, height, _NOISE_BANK_SIZE):
            for x in range(0, width, _NOISE_BANK_SIZE):
                h, w = min(_NOISE_BANK_SIZE, height - y), min(_NOISE_BANK_SIZE, width - x)
                out[y:y + h, x:x + w] = fine_noise(rng, h, w)
        return out
    turn = int(rng.integers(4))
    tiled = np.rot90(_noise_bank, turn) if turn else _noise_bank
    oy, ox = (int(v) for v in rng.integers(0, _NOISE_BANK_SIZE, 2))
    return tiled[oy:oy + height, ox:ox + width]


def lut(values: dict, channels: int) -> np.ndarray:
    """A 256-entry float32 OpenCV lookup table from ``{index: value}``."""
    table = np.zeros((256, 1, channels) if channels > 1 else (256, 1), np.float32)
    for i, value in values.items():
        table[i, 0] = value
    return table


# ---------------------------------------------------------------------------------------------------
# The ground pass
# ---------------------------------------------------------------------------------------------------

def material_map(scene: Scene) -> np.ndarray:
    ground = SOIL if scene.rng.random() < 0.1 else GRASS
    mat = np.full((scene.height, scene.width), ground, np.uint8)
    for _, material, poly in sorted(scene.materials, key=lambda t: t[0]):
        fill_poly(mat, poly, material, aa=False)
    return mat


def textured_ground(scene: Scene) -> np.ndarray:
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
