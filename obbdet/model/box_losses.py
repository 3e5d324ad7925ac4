"""Localization losses on the overlap of rotated boxes (``loss.box_loss``), per positive anchor.

Every loss takes the decoded prediction as its parts, centre ``[N, 2]`` and sides ``[N, 2]`` (pixels), plus the
raw angle vector ``[N, 2]`` ``(cos 2a, sin 2a)`` of any length (``obbdet.model.coder``), and the target boxes
``[N, 5]`` xywha (le90, radians, pixels). They return ``[N]`` losses, 0 (or a value within 1e-3 of it, see
``probiou``) for a perfect prediction, growing with errors of centre, sides and angle.

- ``probiou``: Hellinger distance ``sqrt(1 - exp(-B))`` of the boxes' Gaussians, ``B`` their Bhattacharyya
  distance (Llerena et al. 2021, "Gaussian Bounding Boxes and Probabilistic IoU"; covariance of a uniform
  distribution over the box, ``w^2 / 12``, as there).
- ``kld``: ``1 - 1 / (tau + log1p(sqrt(KL(pred || target))))``, ``tau = 1`` (Yang et al. 2021, "Learning High-
  Precision Bounding Box for Rotated Object Detection via Kullback-Leibler Divergence"; ``w^2 / 4``, as in
  mmrotate's ``GDLoss``). The centre term is weighted by the target's inverse covariance: an offset across an
  elongated box costs more than one along it, as it does for the IoU.
- ``gwd``: the same transform of the Gaussian Wasserstein distance, normalized by the geometric mean of the
  boxes' scales (Yang et al. 2021, "Rethinking Rotated Object Detection with Gaussian Wasserstein Distance
  Loss"; mmrotate's ``gwd_loss`` with ``normalize=True``).
- ``riou``: ``1 - IoU + rho^2 / c^2`` with the exact rotated IoU (``obbdet.model.rotated_iou``) and, as in DIoU,
  ``rho`` the distance of the centres and ``c`` the diagonal of the axis-aligned box enclosing both boxes, so
  disjoint boxes still get a gradient that pulls them together.

Angles: a Gaussian's covariance is ``(l1 + l2) / 2 * I + (l1 - l2) / 2 * [[c, s], [s, -c]]`` with ``(c, s) =
(cos 2a, sin 2a)``: a polynomial in the angle vector, the same for ``a`` and ``a + pi`` (so continuous across the
le90 boundary) and for a square independent of ``a``. The exact IoU has the same symmetries. The predicted
vector is normalized with a floor ``MIN_VEC_NORM`` on its length (shorter vectors are scaled, not normalized:
their Gaussian is rounder), so gradients stay bounded for the near-zero vectors of an untrained head; ``riou``
takes ``a = atan2(s, c) / 2`` with the same floor in its gradient.
"""
from __future__ import annotations

import torch

from obbdet.boxes import xywha_to_poly
from obbdet.model.rotated_iou import rotated_iou_differentiable

OVERLAP_LOSSES = ("probiou", "kld", "gwd", "riou")
MIN_VEC_NORM = 0.5  # predicted angle vectors shorter than this are scaled by 1 / MIN_VEC_NORM, not normalized
TAU = 1.0  # the 1 - 1 / (tau + f(D)) transform of the KLD and GWD distances
_EPS = 1e-7


def _unit_vec(vec: torch.Tensor) -> torch.Tensor:
    """Angle vectors ``[N, 2]`` divided by ``max(|v|, MIN_VEC_NORM)``."""
    return vec / vec.norm(dim=-1, keepdim=True).clamp(min=MIN_VEC_NORM)


def _target_parts(target: torch.Tensor):
    """(centre ``[N, 2]``, sides ``[N, 2]``, angle vector ``[N, 2]``) of xywha boxes ``[N, 5]``."""
    a = target[:, 4]
    return target[:, :2], target[:, 2:4], torch.stack([torch.cos(2 * a), torch.sin(2 * a)], dim=-1)


def gaussian_covariance(sides: torch.Tensor, vec: torch.Tensor, variance_scale: float):
    """Covariance entries ``(s_xx, s_xy, s_yy)`` ``[N]`` each of boxes with sides ``[N, 2]`` and angle vectors
    ``[N, 2]`` ``(cos 2a, sin 2a)`` of length <= 1; eigenvalues ``variance_scale * side^2``."""
    l1, l2 = variance_scale * sides[:, 0] ** 2, variance_scale * sides[:, 1] ** 2
    mean, half = (l1 + l2) / 2, (l1 - l2) / 2
    return mean + half * vec[:, 0], half * vec[:, 1], mean - half * vec[:, 0]


def _gaussians(centre, sides, vec, target, variance_scale: float):
    """Centre offset ``[N, 2]`` and covariances of prediction and target, all lengths divided by the target's
    scale ``sqrt(w h)`` (every loss here is scale-invariant; this keeps float32 well conditioned)."""
    t_centre, t_sides, t_vec = _target_parts(target)
    scale = (t_sides[:, 0] * t_sides[:, 1]).clamp(min=_EPS).sqrt()[:, None]
    offset = (centre - t_centre) / scale
    pred = gaussian_covariance(sides / scale, _unit_vec(vec), variance_scale)
    tgt = gaussian_covariance(t_sides / scale, t_vec, variance_scale)
    return offset, pred, tgt


def _det(cov):
    s_xx, s_xy, s_yy = cov
    return (s_xx * s_yy - s_xy * s_xy).clamp(min=_EPS)


def _mahalanobis(offset, cov):
    """``offset^T cov^-1 offset`` ``[N]``."""
    s_xx, s_xy, s_yy = cov
    dx, dy = offset[:, 0], offset[:, 1]
    return (s_yy * dx * dx - 2 * s_xy * dx * dy + s_xx * dy * dy) / _det(cov)


def probiou_loss(centre, sides, vec, target) -> torch.Tensor:
    """Hellinger distance of the boxes' Gaussians, ``[N]`` in ``[0, 1]`` (1 - ProbIoU)."""
    offset, pred, tgt = _gaussians(centre, sides, vec, target, 1.0 / 12)
    mixed = tuple((p + t) / 2 for p, t in zip(pred, tgt))
    bhattacharyya = (_mahalanobis(offset, mixed) / 8
                     + 0.5 * torch.log(_det(mixed) / (_det(pred) * _det(tgt)).sqrt()))
    return (1 - torch.exp(-bhattacharyya.clamp(min=0))).clamp(min=_EPS * _EPS).sqrt()


def _transform(distance: torch.Tensor) -> torch.Tensor:
    """``1 - 1 / (tau + log1p(distance))``: bounded in [0, 1), 0 at distance 0."""
    return 1 - 1 / (TAU + torch.log1p(distance))


def kld_loss(centre, sides, vec, target) -> torch.Tensor:
    """``1 - 1 / (tau + log1p(sqrt(KL(N_pred || N_target))))``, ``[N]``."""
    offset, pred, tgt = _gaussians(centre, sides, vec, target, 1.0 / 4)
    (p_xx, p_xy, p_yy), (t_xx, t_xy, t_yy) = pred, tgt
    trace = (t_yy * p_xx - 2 * t_xy * p_xy + t_xx * p_yy) / _det(tgt)  # tr(S_t^-1 S_p)
    kl = 0.5 * (_mahalanobis(offset, tgt) + trace + torch.log(_det(tgt) / _det(pred))) - 1
    return _transform(kl.clamp(min=_EPS).sqrt())


def gwd_loss(centre, sides, vec, target) -> torch.Tensor:
    """``1 - 1 / (tau + log1p(W / s))``, ``[N]``: ``W`` the 2-Wasserstein distance of the Gaussians, ``s = 2 (det
    S_p det S_t)^(1/8)``."""
    offset, pred, tgt = _gaussians(centre, sides, vec, target, 1.0 / 4)
    (p_xx, p_xy, p_yy), (t_xx, t_xy, t_yy) = pred, tgt
    det_sqrt = (_det(pred) * _det(tgt)).sqrt()
    trace_product = p_xx * t_xx + 2 * p_xy * t_xy + p_yy * t_yy  # tr(S_p S_t)
    # tr((S_p^1/2 S_t S_p^1/2)^1/2) = sqrt(tr(S_p S_t) + 2 sqrt(det S_p det S_t)) for 2 x 2 matrices
    shape = p_xx + p_yy + t_xx + t_yy - 2 * (trace_product + 2 * det_sqrt).clamp(min=0).sqrt()
    squared = (offset * offset).sum(-1) + shape
    distance = squared.clamp(min=_EPS).sqrt() / (2 * det_sqrt.sqrt().sqrt())
    return _transform(distance)


class _HalfAngle(torch.autograd.Function):
    """``a = atan2(s, c) / 2`` of vectors ``[N, 2]``, with the gradient's ``1 / |v|^2`` floored at
    ``1 / MIN_VEC_NORM^2`` (0 for the zero vector)."""

    @staticmethod
    def forward(ctx, vec):
        ctx.save_for_backward(vec)
        return 0.5 * torch.atan2(vec[:, 1], vec[:, 0])

    @staticmethod
    def backward(ctx, grad):
        (vec,) = ctx.saved_tensors
        norm2 = (vec * vec).sum(-1).clamp(min=MIN_VEC_NORM ** 2)
        return (0.5 * grad / norm2)[:, None] * torch.stack([-vec[:, 1], vec[:, 0]], dim=-1)


def riou_loss(centre, sides, vec, target) -> torch.Tensor:
    """``1 - IoU + rho^2 / c^2`` (exact rotated IoU, DIoU distance term), ``[N]``."""
    pred = torch.cat([centre, sides, _HalfAngle.apply(vec)[:, None]], dim=-1)
    iou = rotated_iou_differentiable(pred, target)
    corners = torch.cat([xywha_to_poly(pred), xywha_to_poly(target)], dim=1)  # [N, 8, 2]
    extent = corners.amax(dim=1) - corners.amin(dim=1)
    diagonal = (extent * extent).sum(-1).clamp(min=_EPS)
    rho = ((centre - target[:, :2]) ** 2).sum(-1)
    return 1 - iou + rho / diagonal


_LOSSES = {"probiou": probiou_loss, "kld": kld_loss, "gwd": gwd_loss, "riou": riou_loss}


def overlap_loss(name: str, centre: torch.Tensor, sides: torch.Tensor, vec: torch.Tensor,
                 target: torch.Tensor) -> torch.Tensor:
    """The localization loss ``name`` (one of ``OVERLAP_LOSSES``) per pair, ``[N]``: prediction centre ``[N, 2]``,
    sides ``[N, 2]``, angle vector ``[N, 2]`` (any length), target boxes ``[N, 5]`` xywha (le90)."""
    if name not in _LOSSES:
        raise ValueError(f"unknown box loss {name!r}; valid: {', '.join(OVERLAP_LOSSES)}")
    return _LOSSES[name](centre.float(), sides.float(), vec.float(), target.float())
