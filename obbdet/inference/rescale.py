"""Rescaling images so vehicles appear at the width the network was trained on, and mapping boxes back.

Boxes are le90 xywha rows ``[cx, cy, w, h, a]`` (pixels, radians; see ``obbdet.boxes``); headings are radians
in ``[-pi, pi)`` (NaN unknown). Coordinates use the pixel-corner convention (``x_new = x * sx``).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from obbdet.boxes import BOX_DIM, poly_to_xywha, xywha_to_poly

NO_RESCALE = -1.0  # vehicle_width value meaning "run at the image's own resolution"


def rescale_factor(train_vehicle_width: float | None, vehicle_width: float) -> float:
    """Factor taking image pixels to network pixels: ``train_vehicle_width / vehicle_width``.

    ``vehicle_width == -1`` (NO_RESCALE) means 1. ``train_vehicle_width`` is the median short side of the
    main class in training pixels, stored in the checkpoint.
    """
    if vehicle_width == NO_RESCALE:
        return 1.0
    if not vehicle_width > 0:
        raise ValueError(f"vehicle_width must be > 0 (or -1 for no rescaling), got {vehicle_width}")
    if train_vehicle_width is None or not train_vehicle_width > 0:
        raise ValueError("the checkpoint stores no training vehicle width; pass vehicle_width -1 to run "
                         "without rescaling")
    return float(train_vehicle_width) / float(vehicle_width)


def resize_image(image: np.ndarray, scale: float) -> tuple[np.ndarray, tuple[float, float]]:
    """Resize ``[H, W, 3]`` by ``scale`` (sizes rounded, at least 1 px).

    Returns the resized image and the exact per-axis factors ``(sx, sy) = (new_w / W, new_h / H)`` that map
    image coordinates to resized coordinates (pixel-corner convention: ``x_new = x * sx``, as cv2.resize
    and albumentations use). INTER_AREA when shrinking (no aliasing), INTER_LINEAR when enlarging.
    """
    height, width = image.shape[:2]
    if scale == 1.0:
        return image, (1.0, 1.0)
    new_w, new_h = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    return resized, (new_w / width, new_h / height)


def scale_xywha(boxes: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Map boxes ``[N, 5]`` through ``x -> x * sx, y -> y * sy``.

    Equal factors scale centre and sides; unequal ones (rounding of the resized size, < 1 px over the image)
    map the corners and refit the minimum-area rectangle, so the result stays exact.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, BOX_DIM)
    if abs(sx - sy) <= 1e-12 * max(sx, sy):
        out = boxes.copy()
        out[:, :4] *= sx
        return out
    polys = xywha_to_poly(boxes) * np.array([sx, sy])
    return poly_to_xywha(polys, warn=False)


def scale_heading(heading: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Headings ``[N]`` (radians, ``[-pi, pi)``, NaN unknown) after ``x -> x * sx, y -> y * sy``."""
    heading = np.asarray(heading, dtype=np.float64)
    if abs(sx - sy) <= 1e-12 * max(sx, sy):
        return heading.copy()
    turned = np.arctan2(np.sin(heading) * sy, np.cos(heading) * sx)
    return np.where(turned >= math.pi, turned - 2 * math.pi, turned)
