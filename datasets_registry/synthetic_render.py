"""Rendering of a composed synthetic aerial scene: road paint, shadows, layers and the camera look.

This module owns the order in which a scene's layers become an image (:func:`render`): the textured
ground, worn road paint, flat objects, soft low shadows, vehicles and containers, high shadows, roofs and
canopies, then a slight blur, colour grading and sensor noise, giving ``[H, W, 3]`` uint8 RGB. Its steps
(:func:`render_ground`, :func:`shadow_factor`, :func:`grade`, :func:`add_sensor_noise`) are public for
renderers that draw many frames over one background.
"""
from __future__ import annotations

from dataclasses import dataclass

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


def shadow_factor(scene: Scene, items: list, blur_m: float, shape: tuple[int, int] | None = None
                  ) -> np.ndarray | None:
    """Per-pixel transmission ``[H, W, 3]`` uint8 (255 = no shadow) of the shadow polygons ``(value 0..255,
    poly)``: soft edges, a blue cast; None when there are none. ``shape`` ``(h, w)``: of a window instead of
    the scene (the polygons then in the window's coordinates)."""
    if not items:
        return None
    mask = np.zeros(shape or (scene.height, scene.width), np.uint8)
    for value, poly in sorted(items, key=lambda t: t[0]):
        fill_poly(mask, poly, value)
    mask = cv2.GaussianBlur(mask, (0, 0), max(scene.m(blur_m), 0.5))
    # per-channel transmission for every mask value, blue-tinted (skylight fills shadows)
    tint = np.array([1.0, 0.96, 0.84])
    table = 255.0 * (1.0 - np.arange(256)[:, None] / 255.0 * scene.shadow_strength * tint)
    return cv2.LUT(cv2.merge([mask, mask, mask]), np.round(table).astype(np.uint8).reshape(256, 1, 3))


def apply_shadows(scene: Scene, canvas: np.ndarray, items: list, blur_m: float) -> None:
    """Darken ``canvas`` ``[H, W, 3]`` uint8 in place under the shadow polygons ``(value 0..255, poly)``."""
    factor = shadow_factor(scene, items, blur_m)
    if factor is not None:
        cv2.multiply(canvas, factor, dst=canvas, scale=1.0 / 255.0)


@dataclass(frozen=True)
class CameraLook:
    """A camera's look: blur sigma (px), contrast, per-channel gain ``[3]``, offset noise, saturation."""

    blur: float
    contrast: float
    gain: np.ndarray
    offset_noise: float
    saturation: float


def draw_camera_look(rng: np.random.Generator) -> CameraLook:
    blur = rng.uniform(0.35, 0.7)
    contrast = rng.uniform(0.88, 1.12)
    gain = rng.normal(1.0, 0.035, 3) * contrast
    offset_noise = rng.normal(0, 6)
    return CameraLook(blur, contrast, gain, offset_noise, rng.uniform(0.75, 1.1))


def grade(canvas: np.ndarray, look: CameraLook, brightness: float = 1.0) -> np.ndarray:
    """Slight blur, white balance, contrast, saturation and ``brightness`` (one colour matrix): ``[H, W, 3]``
    uint8 in and out."""
    canvas = cv2.GaussianBlur(canvas, (0, 0), look.blur)
    mean = float(canvas[::4, ::4].mean())
    offset = (mean * (1 - look.contrast) + look.offset_noise) * look.gain / look.contrast
    luma = np.array([0.299, 0.587, 0.114])
    mix = (1 - look.saturation) * np.outer(np.ones(3), luma) + look.saturation * np.eye(3)
    matrix = np.concatenate([mix * look.gain[None, :], (mix @ offset)[:, None]], axis=1) * brightness
    return cv2.transform(canvas, matrix.astype(np.float32))


def add_sensor_noise(rng: np.random.Generator, image: np.ndarray, amplitude: float | None = None) -> np.ndarray:
    """``image`` ``[H, W, 3]`` uint8 plus per-pixel grain of ``amplitude`` (drawn in [1, 3.5] when None)."""
    h, w = image.shape[:2]
    noise = cv2.merge([fine_noise(rng, h, w) for _ in range(3)])
    noise *= rng.uniform(1.0, 3.5) if amplitude is None else amplitude
    return cv2.add(image, noise, dtype=cv2.CV_8U)


def _post(scene: Scene, canvas: np.ndarray) -> np.ndarray:
    """Camera look: slight blur, white balance, contrast, saturation (one colour matrix) and sensor noise."""
    return add_sensor_noise(scene.rng, grade(canvas, draw_camera_look(scene.rng)))


def render_ground(scene: Scene) -> np.ndarray:
    """The ground with its paint and flat objects, ``[H, W, 3]`` uint8: the first layers of :func:`render`."""
    img = textured_ground(scene)
    _apply_paint(scene, img)
    canvas = np.clip(img, 0, 255).astype(np.uint8)
    for draw in scene.flat:
        draw(canvas)
    return canvas


def render(scene: Scene) -> np.ndarray:
    canvas = render_ground(scene)
    apply_shadows(scene, canvas, scene.shadow_low, 0.12)
    for draw in scene.low:
        draw(canvas)
    apply_shadows(scene, canvas, scene.shadow_high, 0.3)
    for draw in scene.high:
        draw(canvas)
    return _post(scene, canvas)
