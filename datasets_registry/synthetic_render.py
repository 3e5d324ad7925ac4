"""Rendering of a composed synthetic aerial scene: road paint, shadows, layers and the camera look.

This module owns the order in which a scene's layers become an image (:func:`render`): the textured
ground, worn road paint, flat objects, soft low shadows, vehicles and containers, high shadows, roofs and
canopies, then a slight blur, colour grading and sensor noise, giving ``[H, W, 3]`` uint8 RGB.
"""
from __future__ import annotations

import cv2
import numpy as np

from .synthetic_draw import fill_poly
from .synthetic_ground import fine_noise, textured_ground
from .synthetic_state import Scene


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


def render(scene: Scene) -> np.ndarray:
    img = textured_ground(scene)
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
