"""Differentiable exact IoU of rotated rectangles, for the ``riou`` localization loss.

Boxes are rows ``[cx, cy, w, h, a]`` (pixels, ``a`` in radians from +x towards +y, any angle range: the area and
its gradient do not depend on which of the equivalent ``(w, h, a)`` / ``(h, w, a + pi/2)`` / ``a + pi`` forms a
box is given in).

Forward: the intersection area is the project's one exact rotated intersection,
:func:`obbdet.iou.intersection_area_rotated` (float64), so the loss sees the IoU that NMS and the evaluation see.

Backward: the exact derivative of the intersection area ``I`` of two convex sets under a motion of one of them is
the integral, over the part of its boundary that lies inside the other, of the boundary's normal velocity. For a
rectangle every edge is straight with a constant outward normal ``n``, so with ``L`` the length of an edge's
segment inside the other box and ``m`` that segment's midpoint (the velocities are affine along an edge):

- centre: ``dI/dc = sum_edges L n``;
- long side ``w``: the two edges at ``u = +-w/2`` move out at speed 1/2, the other two only slide along
  themselves: ``dI/dw = (L_right + L_left) / 2`` (same for ``h`` with the other pair);
- angle: a point ``p`` moves with ``perp(p - c) = (-(p_y - c_y), p_x - c_x)``: ``dI/da = sum_edges L perp(m - c) . n``.

Each edge is clipped against the other box (Liang-Barsky, in that box's frame); there is no division by a
quantity that vanishes for parallel or coincident edges, so the gradient is finite for identical, touching and
disjoint boxes (0 for disjoint ones). Where the area is not differentiable (coincident edges: identical boxes,
boxes touching along an edge) the boundary counts as inside, which gives one of the one-sided derivatives.
Only first derivatives are provided.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from obbdet.boxes import xywha_to_poly
from obbdet.iou import intersection_area_rotated

_NO_RANGE = 1e30  # "no limit" for a segment parallel to a slab it lies within


def _slab_params(start: torch.Tensor, delta: torch.Tensor, half: torch.Tensor):
    """Parameter range ``(t_lo, t_hi)`` where ``start + t * delta`` lies in ``[-half, half]`` (broadcast arrays).

    A segment parallel to the slab (``delta == 0``) is wholly inside or wholly outside it.
    """
    parallel = delta == 0
    safe = torch.where(parallel, torch.ones_like(delta), delta)
    t_a, t_b = (-half - start) / safe, (half - start) / safe
    inside = (start >= -half) & (start <= half)
    t_lo = torch.where(parallel, torch.where(inside, -_NO_RANGE, _NO_RANGE), torch.minimum(t_a, t_b))
    t_hi = torch.where(parallel, torch.where(inside, _NO_RANGE, -_NO_RANGE), torch.maximum(t_a, t_b))
    return t_lo, t_hi


def _edge_overlaps(moving: torch.Tensor, other: torch.Tensor):
    """For each edge of the boxes ``moving [P, 5]``, its segment inside the boxes ``other [P, 5]``.

    Returns (corners ``[P, 4, 2]`` of ``moving``, clipped parameters ``t0, t1 [P, 4]`` along edge ``k`` from
    corner ``k`` to corner ``k + 1``, empty where ``t1 <= t0``).
    """
    corners = xywha_to_poly(moving)  # [P, 4, 2], edges 0/2 along w, 1/3 along h
    cos_o, sin_o = torch.cos(other[:, 4])[:, None], torch.sin(other[:, 4])[:, None]
    rel = corners - other[:, None, :2]
    u = rel[..., 0] * cos_o + rel[..., 1] * sin_o  # [P, 4] corners in the other box's frame
    v = -rel[..., 0] * sin_o + rel[..., 1] * cos_o
    du, dv = u.roll(-1, dims=1) - u, v.roll(-1, dims=1) - v
    half_w, half_h = other[:, 2:3].abs() / 2, other[:, 3:4].abs() / 2
    u_lo, u_hi = _slab_params(u, du, half_w)
    v_lo, v_hi = _slab_params(v, dv, half_h)
    t0 = torch.maximum(torch.maximum(u_lo, v_lo), torch.zeros_like(u_lo))
    t1 = torch.minimum(torch.minimum(u_hi, v_hi), torch.ones_like(u_hi))
    return corners, t0, t1


def intersection_area_gradient(moving: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``dI / d moving`` ``[P, 5]`` (per ``cx, cy, w, h, a``) of the intersection areas ``I [P]`` of the aligned
    pairs ``(moving[i], other[i])`` of ``xywha`` boxes (module notes); ``other`` held fixed."""
    corners, t0, t1 = _edge_overlaps(moving, other)
    w, h, a = moving[:, 2:3].abs(), moving[:, 3:4].abs(), moving[:, 4]
    edge_len = torch.cat([w, h, w, h], dim=1)  # [P, 4]
    inside_len = (t1 - t0).clamp(min=0) * edge_len
    mid_t = ((t0 + t1) / 2).clamp(0, 1)[..., None]
    mid = corners + mid_t * (corners.roll(-1, dims=1) - corners)  # [P, 4, 2]
    cos_a, sin_a = torch.cos(a), torch.sin(a)
    # outward normals of edges 0..3: -v, +u, +v, -u (u = (cos a, sin a), v = (-sin a, cos a))
    normals = torch.stack([torch.stack([sin_a, -cos_a], -1), torch.stack([cos_a, sin_a], -1),
                           torch.stack([-sin_a, cos_a], -1), torch.stack([-cos_a, -sin_a], -1)], dim=1)
    flux = inside_len[..., None] * normals  # [P, 4, 2]
    grad_centre = flux.sum(1)
    grad_w = (inside_len[:, 1] + inside_len[:, 3]) / 2
    grad_h = (inside_len[:, 0] + inside_len[:, 2]) / 2
    rel = mid - moving[:, None, :2]
    grad_a = (flux[..., 1] * rel[..., 0] - flux[..., 0] * rel[..., 1]).sum(1)  # perp(rel) . flux
    # a negative side length is the same rectangle: d|w|/dw = sign(w)
    sign_w = torch.where(moving[:, 2] < 0, -1.0, 1.0).to(moving.dtype)
    sign_h = torch.where(moving[:, 3] < 0, -1.0, 1.0).to(moving.dtype)
    return torch.stack([grad_centre[:, 0], grad_centre[:, 1], grad_w * sign_w, grad_h * sign_h, grad_a], dim=1)


class _IntersectionArea(torch.autograd.Function):
    """Exact intersection areas ``[P]`` of aligned pairs of boxes ``[P, 5]``, with their exact gradient."""

    @staticmethod
    def forward(ctx, boxes1, boxes2):
        ctx.save_for_backward(boxes1, boxes2)
        area = intersection_area_rotated(boxes1.detach(), boxes2.detach(), dtype=torch.float64)
        return area.to(boxes1.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_area):
        boxes1, boxes2 = (b.detach().double() for b in ctx.saved_tensors)
        grad = grad_area.double()[:, None]
        grad1 = (grad * intersection_area_gradient(boxes1, boxes2)).to(ctx.saved_tensors[0].dtype)
        grad2 = (grad * intersection_area_gradient(boxes2, boxes1)).to(ctx.saved_tensors[1].dtype)
        return (grad1 if ctx.needs_input_grad[0] else None), (grad2 if ctx.needs_input_grad[1] else None)


def intersection_area_differentiable(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Exact intersection areas ``[P]`` of aligned pairs of ``xywha`` boxes ``[P, 5]`` (pixels, radians), with
    gradients for both inputs (module notes)."""
    if boxes1.shape != boxes2.shape or boxes1.ndim != 2 or boxes1.shape[1] != 5:
        raise ValueError(f"expected two [P, 5] box tensors, got {tuple(boxes1.shape)} and {tuple(boxes2.shape)}")
    return _IntersectionArea.apply(boxes1, boxes2)


def rotated_iou_differentiable(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Exact IoU ``[P]`` of aligned pairs of ``xywha`` boxes ``[P, 5]``, differentiable in both (0 where the
    union is empty)."""
    inter = intersection_area_differentiable(boxes1, boxes2)
    area1 = (boxes1[:, 2] * boxes1[:, 3]).abs()
    area2 = (boxes2[:, 2] * boxes2[:, 3]).abs()
    return inter / (area1 + area2 - inter).clamp(min=eps)
