"""Localization-quality aware classification (``loss.quality``): the class score learns the IoU of its box.

With ``qfl`` or ``varifocal`` the classification target of a positive anchor's own class is the IoU of the
anchor's decoded prediction with its ground-truth box (detached: it is a target, not a path for gradients),
instead of 1; all other entries keep the target 0. The network is unchanged, so at inference the class score
*is* the quality-aware score: detections whose boxes fit better rank higher, which is what AP at strict IoU
thresholds rewards.

- ``qfl`` (Li et al. 2020, "Generalized Focal Loss"): ``alpha_t |y - p|^gamma BCE(p, y)`` with ``alpha_t =
  alpha`` on the positives' class entries and ``1 - alpha`` elsewhere: the focal loss of
  ``obbdet.model.loss.sigmoid_focal_loss``, exactly, when every quality target is 1.
- ``varifocal`` (Zhang et al. 2021, "VarifocalNet"): ``y BCE(p, y)`` where ``y > 0`` (positives weighted by their
  quality, not down-weighted by the focal factor) and ``(1 - alpha) p^gamma BCE(p, 0)`` elsewhere (the focal
  loss's negative term; ``1 - alpha = 0.75`` with the default ``alpha = 0.25``, the paper's value).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

QUALITY_MODES = ("none", "qfl", "varifocal")


def quality_focal_loss(logits: torch.Tensor, targets: torch.Tensor, positive: torch.Tensor, alpha: float,
                       gamma: float) -> torch.Tensor:
    """Element-wise QFL (unreduced). logits, targets (soft, in [0, 1]) and positive (bool: the entries of
    positive anchors' own classes) of one shape."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    alpha_t = torch.where(positive, alpha, 1 - alpha)
    return alpha_t * (targets - prob).abs().pow(gamma) * ce


def varifocal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Element-wise varifocal loss (unreduced) of logits and soft targets in [0, 1] of one shape."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    weight = torch.where(targets > 0, targets, (1 - alpha) * prob.pow(gamma))
    return weight * ce
