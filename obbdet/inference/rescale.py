"""Rescaling images so vehicles appear at the width the network was trained on, and mapping boxes back.

Boxes are le90 xywha rows ``[cx, cy, w, h, a]`` (pixels, radians; see ``obbdet.boxes``); headings are radians
in ``[-pi, pi)`` (NaN unknown). Coordinates use the pixel-corner convention (``x_new = x * sx``).
The resize and the box/heading mapping live in ``obbdet.imageio`` and ``obbdet.boxes`` (training resamples
datasets with the same code); they are re-exported here.
"""
from __future__ import annotations

from obbdet.boxes import scale_heading, scale_xywha
from obbdet.imageio import resize_image

__all__ = ["NO_RESCALE", "rescale_factor", "resize_image", "scale_heading", "scale_xywha"]

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
