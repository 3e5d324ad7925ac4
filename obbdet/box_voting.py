"""Box voting for oriented boxes: each box NMS keeps becomes the score-weighted mean of the candidates overlapping it.

NMS keeps one candidate per vehicle and drops the others, although neighbouring feature-map locations (and, with
test-time augmentation, the other views of the image) each placed that box independently; their weighted mean
is a better estimate than any single one. What mAP at IoU 0.85-0.95 rewards: on the quickstart model, voting
took mAP at 0.85 from 0.24 to 0.39 and with eight views from 0.24 to 0.58 (``bench/quality.py``).

Averaging le90 boxes needs what axis-aligned voting (the peers' WBF) does not: the angles are averaged as their
differences to the kept box's angle wrapped to ``[-pi/2, pi/2)``, so boxes on both sides of the le90 boundary
average to the boundary, not to 0; a candidate turned by more than 45 degrees from the kept box can only overlap
it as a near-square box described from its other side, ``(h, w, a + pi/2)``, and is averaged in that form, so
the result does not depend on which of a square's equivalent descriptions each candidate came with.
"""
from __future__ import annotations

import math

import torch

from obbdet.boxes import BOX_DIM, HALF_PI, normalize_xywha, wrap_angle
from obbdet.iou import box_iou_rotated_sparse

# the default of infer.py, Predictor and validation (TrainConfig.vote_iou): measured best of 0.5-0.7 with and
# without test-time augmentation (bench/quality.py)
DEFAULT_VOTE_IOU = 0.6


def vote_pairs(kept: torch.Tensor, kept_scores: torch.Tensor, kept_labels: torch.Tensor, candidates: torch.Tensor,
               candidate_scores: torch.Tensor, candidate_labels: torch.Tensor,
               vote_iou: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The voting pairs ``(kept index [P], candidate index [P])``.

    kept ``[K, 5]`` (NMS order: scores descending) and candidates ``[N, 5]`` xywha (le90, radians), with scores
    ``[K]`` / ``[N]`` and labels ``[K]`` / ``[N]`` int64. A candidate votes for one kept box at most: the
    best-scored one of its class that it overlaps at exact rotated IoU >= ``vote_iou`` and that scores at least as
    high as itself. So a candidate another kept box beat in NMS cannot drag a lower-scored neighbour onto that
    box (in a dense car park two adjacent vehicles stay two boxes), and no candidate counts twice. Every kept box
    pairs with itself when it is among the candidates (IoU 1).
    """
    if not 0 < vote_iou <= 1:
        raise ValueError(f"vote_iou must be in (0, 1], got {vote_iou}")
    idx_k, idx_c, _ = box_iou_rotated_sparse(kept.double(), candidates.double(), min_iou=vote_iou)
    ok = (kept_labels[idx_k] == candidate_labels[idx_c]) & (candidate_scores[idx_c] <= kept_scores[idx_k])
    idx_k, idx_c = idx_k[ok], idx_c[ok]
    first = torch.full((len(candidates),), len(kept), dtype=idx_k.dtype, device=idx_k.device)
    first = first.scatter_reduce(0, idx_c, idx_k, reduce="amin")  # kept boxes come in descending score order
    own = idx_k == first[idx_c]
    return idx_k[own], idx_c[own]


def weighted_mean_boxes(kept: torch.Tensor, candidates: torch.Tensor, weights: torch.Tensor,
                        idx_k: torch.Tensor, idx_c: torch.Tensor) -> torch.Tensor:
    """For each kept box ``[K, 5]``, the ``weights``-weighted mean of its paired ``candidates [N, 5]`` (pairs
    ``idx_k``/``idx_c`` ``[P]``, weights ``[N]`` > 0), as le90 xywha ``[K, 5]`` float32.

    Centres and sides are averaged directly; the angle as the mean difference to the kept box's angle (see the
    module docstring). A kept box without pairs is returned unchanged.
    """
    k = kept.double()
    c = candidates.double()[idx_c]
    w = weights.double()[idx_c]
    diff = wrap_angle(c[:, 4] - k[idx_k, 4])  # [-pi/2, pi/2)
    turned = diff.abs() > math.pi / 4  # the other description of a near-square box: (h, w, a + pi/2)
    long_side = torch.where(turned, c[:, 3], c[:, 2])
    short_side = torch.where(turned, c[:, 2], c[:, 3])
    diff = torch.where(turned, wrap_angle(diff + HALF_PI), diff)
    values = torch.stack([c[:, 0], c[:, 1], long_side, short_side, diff], dim=1) * w[:, None]
    sums = torch.zeros(len(k), BOX_DIM, dtype=torch.float64, device=k.device).index_add_(0, idx_k, values)
    total = torch.zeros(len(k), dtype=torch.float64, device=k.device).index_add_(0, idx_k, w)
    has = total > 0
    mean = k.clone()
    mean[has] = sums[has] / total[has, None]
    mean[has, 4] = k[has, 4] + mean[has, 4]
    return normalize_xywha(mean).to(torch.float32)


def view_agreement_scores(scores: torch.Tensor, views: torch.Tensor, num_views: int, num_kept: int,
                          idx_k: torch.Tensor, idx_c: torch.Tensor) -> torch.Tensor:
    """Scores ``[K]`` of boxes fused over ``num_views`` views of the image (test-time augmentation): per kept box,
    the sum over views of the best paired candidate's score, divided by ``num_views``. A vehicle seen in every
    view keeps its score, one seen in a single view (a likely false positive) scores 1/``num_views`` of it.

    scores ``[N]`` and views ``[N]`` (int64 in ``[0, num_views)``) of the candidates; pairs ``idx_k``/``idx_c``.
    """
    best = torch.zeros(num_kept * num_views, dtype=torch.float64, device=scores.device)
    best = best.scatter_reduce(0, idx_k * num_views + views[idx_c], scores.double()[idx_c], reduce="amax")
    return (best.view(num_kept, num_views).sum(dim=1) / num_views).to(torch.float32)
