"""Encoding of rotated boxes relative to axis-aligned anchors, and back.

Box deltas ``[..., 4]`` = ``(tx, ty, tw, th)`` of a box ``[cx, cy, w, h, a]`` (le90: ``w`` the long side, ``a`` in
radians, see ``obbdet.boxes``) relative to an anchor ``[x_min, y_min, x_max, y_max]`` with centre
``(xa, ya)``, sides ``(wa, ha)`` and scale ``s = sqrt(wa * ha)``::

    tx = (cx - xa) / wa     ty = (cy - ya) / ha     tw = log(w / s)     th = log(h / s)

The long and short sides are both measured against the anchor's scale ``s``, so the size targets do not depend
on the orientation (an axis-aligned anchor has no preferred direction for a rotated box).

The angle is encoded as the vector ``(cos 2a, sin 2a)`` (``ANGLE_DIM = 2``): the doubled angle makes ``a`` and
``a + pi`` (the same rectangle) identical and is continuous across the le90 boundary ``a = -pi/2 ~ pi/2``.
Decoding takes the direction of the predicted vector, so its length is free. The remaining ambiguity, a square
box whose ``a`` and ``a + pi/2`` are the same rectangle, is handled by the loss (``obbdet.model.loss``), which
weights the angle term by the box's anisotropy.

The optional heading (the vehicle's front, ``[-pi, pi)``) is encoded as ``(cos h, sin h)``.
"""
from __future__ import annotations

import math

import torch

from obbdet.boxes import normalize_xywha

DELTA_DIM = 4  # tx, ty, tw, th
ANGLE_DIM = 2  # cos 2a, sin 2a
HEADING_DIM = 2  # cos h, sin h
# exp() of size deltas is clamped so that a wild early prediction cannot overflow
MAX_LOG_SIZE = math.log(1000.0 / 16)


def anchor_centre_size(anchors_xyxy: torch.Tensor):
    """Centres ``(xa, ya)``, sides ``(wa, ha)`` and scales ``s`` of anchors ``[..., 4]`` xyxy."""
    x0, y0, x1, y1 = anchors_xyxy.unbind(-1)
    wa, ha = x1 - x0, y1 - y0
    return (x0 + x1) / 2, (y0 + y1) / 2, wa, ha, torch.sqrt(wa * ha)


def angle_to_vec(angle: torch.Tensor) -> torch.Tensor:
    """le90 angles ``[...]`` (radians) -> ``[..., 2]`` ``(cos 2a, sin 2a)``."""
    return torch.stack([torch.cos(2 * angle), torch.sin(2 * angle)], dim=-1)


def vec_to_angle(vec: torch.Tensor) -> torch.Tensor:
    """``[..., 2]`` (any length) -> le90 angles ``[...]`` in ``[-pi/2, pi/2)``."""
    angle = 0.5 * torch.atan2(vec[..., 1], vec[..., 0])  # (-pi/2, pi/2]
    return torch.where(angle >= math.pi / 2, angle - math.pi, angle)


def heading_to_vec(heading: torch.Tensor) -> torch.Tensor:
    """Headings ``[...]`` (radians) -> ``[..., 2]`` ``(cos h, sin h)``."""
    return torch.stack([torch.cos(heading), torch.sin(heading)], dim=-1)


def vec_to_heading(vec: torch.Tensor) -> torch.Tensor:
    """``[..., 2]`` -> headings ``[...]`` in ``[-pi, pi)``."""
    heading = torch.atan2(vec[..., 1], vec[..., 0])
    return torch.where(heading >= math.pi, heading - 2 * math.pi, heading)


def encode_xywha(boxes: torch.Tensor, anchors_xyxy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets for boxes ``[N, 5]`` xywha (le90) on their anchors ``[N, 4]`` xyxy.

    Returns (deltas ``[N, 4]``, angle vectors ``[N, 2]``), float32.
    """
    xa, ya, wa, ha, scale = anchor_centre_size(anchors_xyxy.float())
    boxes = boxes.float()
    w = boxes[:, 2].clamp(min=1e-3)
    h = boxes[:, 3].clamp(min=1e-3)
    deltas = torch.stack([(boxes[:, 0] - xa) / wa, (boxes[:, 1] - ya) / ha,
                          torch.log(w / scale), torch.log(h / scale)], dim=-1)
    return deltas, angle_to_vec(boxes[:, 4])


def decode_sizes(deltas: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Side lengths ``(w, h)`` ``[...]`` from deltas ``[..., 4]`` and anchor scales ``[...]``."""
    w = torch.exp(deltas[..., 2].clamp(max=MAX_LOG_SIZE)) * scale
    h = torch.exp(deltas[..., 3].clamp(max=MAX_LOG_SIZE)) * scale
    return w, h


def decode_xywha(deltas: torch.Tensor, angle_vec: torch.Tensor, anchors_xyxy: torch.Tensor) -> torch.Tensor:
    """Boxes ``[N, 5]`` xywha (le90, pixels) from deltas ``[N, 4]``, angle vectors ``[N, 2]``, anchors ``[N, 4]``.

    A predicted short side longer than the long side is fixed by ``normalize_xywha`` (sides swapped, angle
    turned by 90 degrees: the same rectangle).
    """
    xa, ya, wa, ha, scale = anchor_centre_size(anchors_xyxy.float())
    deltas = deltas.float()
    w, h = decode_sizes(deltas, scale)
    cx = deltas[:, 0] * wa + xa
    cy = deltas[:, 1] * ha + ya
    boxes = torch.stack([cx, cy, w, h, vec_to_angle(angle_vec.float())], dim=-1)
    return normalize_xywha(boxes)
