"""Test-time augmentation: detect on flipped and quarter-turned views of the input, fuse in the input's frame.

A view is one of the eight symmetries of the pixel grid (``VIEWS``), applied to the whole network input
``[B, 3, H, W]``: transpose (when ``view & 4``), then flip left-right (``view & 1``), then flip top-bottom
(``view & 2``). Each view's decoded candidates are mapped back into the input's pixels (pixel-corner
coordinates: a flip maps ``x`` to ``W - x``; le90 angles and headings transformed with them), all views'
candidates go through one class-aware NMS, and each kept box is voted from the candidates of every view
(``obbdet.box_voting``), its score the views' agreement. The views' errors are partly independent, so the
fused box is tighter: on the quickstart model eight views took mAP at IoU 0.85 from 0.39 (one view, voting) to
0.58, at eight times the forward passes (``bench/quality.py``).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from obbdet.boxes import wrap_angle
from obbdet.model.postprocess import suppress

# name -> views (see the module docstring): identity; + left-right flip; the four quarter turns; all eight
VIEWS = {"none": (0,), "flip": (0, 1), "rot4": (0, 3, 5, 6), "d8": tuple(range(8))}


def check_tta(name: str, vote_iou: float) -> tuple[int, ...]:
    """The views of the test-time augmentation ``name``; ValueError naming the choices, or when several views
    would have no box voting (``vote_iou`` <= 0) to fuse them."""
    if name not in VIEWS:
        raise ValueError(f"unknown test-time augmentation {name!r}; choose one of {', '.join(VIEWS)}")
    if len(VIEWS[name]) > 1 and vote_iou <= 0:
        raise ValueError(f"test-time augmentation {name!r} fuses its views by box voting: it needs vote_iou > 0")
    return VIEWS[name]


def view_images(images: torch.Tensor, view: int) -> torch.Tensor:
    """The view ``view`` (0-7) of images ``[B, C, H, W]``: ``[B, C, H, W]``, or ``[B, C, W, H]`` when it transposes."""
    if view & 4:
        images = images.transpose(-2, -1)
    if view & 1:
        images = images.flip(-1)
    if view & 2:
        images = images.flip(-2)
    return images


def boxes_from_view(boxes: torch.Tensor, heading: torch.Tensor | None, view: int, height: int, width: int):
    """Boxes ``[N, 5]`` le90 xywha (radians) and headings ``[N]`` (radians, or None) found in view ``view`` of an
    image, whose pixels are ``height x width`` (the view's own size), mapped back into the original image:
    ``(boxes [N, 5] le90, heading [N] in [-pi, pi) or None)``."""
    cx, cy, w, h, a = boxes.unbind(-1)
    if view & 2:  # undo in reverse order: top-bottom flip, left-right flip, transpose
        cy, a = height - cy, -a
        heading = None if heading is None else -heading
    if view & 1:
        cx, a = width - cx, -a
        heading = None if heading is None else math.pi - heading
    if view & 4:
        cx, cy, a = cy, cx, math.pi / 2 - a
        heading = None if heading is None else math.pi / 2 - heading
    boxes = torch.stack([cx, cy, w, h, wrap_angle(a)], dim=-1)
    return boxes, None if heading is None else wrap_angle(heading, low=-math.pi, period=2 * math.pi)


def predict_views(candidates_of: Callable[[torch.Tensor], list[dict]], images: torch.Tensor, tta: str, *,
                  nms_iou: float, max_det: int, vote_iou: float, score_threshold: float = 0.0) -> list[dict]:
    """Detections of images ``[B, 3, H, W]`` under test-time augmentation ``tta`` (a ``VIEWS`` name; ``"none"``:
    the images alone).

    ``candidates_of(view_images)`` returns each image's decoded candidates before NMS (``boxes [N, 5]`` le90
    xywha in the view's pixels, ``scores``, ``labels``, optional ``heading``), as ``PostProcessor.candidates``.
    Returns per image ``boxes [K, 5]``, ``scores [K]``, ``labels [K]`` (and ``heading``), sorted by score, in the
    input's pixels. Several views need ``vote_iou`` > 0: their candidates are fused by voting, and fused boxes
    whose agreement score falls below ``score_threshold`` (seen in too few views) are dropped.
    """
    views = check_tta(tta, vote_iou)
    if len(views) == 1:
        return [suppress(c, nms_iou, max_det, vote_iou) for c in candidates_of(images)]
    per_image = [[] for _ in range(images.shape[0])]
    layout = torch.channels_last if images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last) \
        else torch.contiguous_format  # a channels_last detector gets its views in that layout too
    for view in views:
        seen = view_images(images, view).contiguous(memory_format=layout)
        height, width = seen.shape[-2:]
        for found, candidates in zip(per_image, candidates_of(seen)):
            boxes, heading = boxes_from_view(candidates["boxes"], candidates.get("heading"), view, height, width)
            found.append({**candidates, "boxes": boxes, **({} if heading is None else {"heading": heading}),
                          "view": torch.full_like(candidates["labels"], views.index(view))})
    fused = [suppress({name: torch.cat([c[name] for c in found]) for name in found[0]}, nms_iou, max_det, vote_iou,
                      num_views=len(views)) for found in per_image]
    return [{name: value[keep] for name, value in result.items()}
            for result in fused for keep in [result["scores"] >= score_threshold]]
