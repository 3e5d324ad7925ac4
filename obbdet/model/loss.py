"""The criterion: anchor labeling + focal classification + box, angle and heading regression.

Losses come back as a named dict (``loss_cls``, ``loss_box``, ``loss_angle``, ``loss_iou``, ``loss_heading``) and
their weighted sum ``loss``. All terms are normalized by the number of positive anchors in the batch, as in effdet.

- ``loss_cls``: sigmoid focal loss over non-ignored anchors; with ``loss.quality`` ``qfl`` or ``varifocal`` the
  target of a positive is the IoU of its decoded prediction with its GT box (``obbdet.model.quality``).
- ``loss_box``: Huber on the deltas of ``obbdet.model.coder`` (centre offsets, log long side, log short side).
  For GT objects whose angle is unknown (``angle_known`` False: labelled by an axis-aligned box only) the
  predicted OBB's axis-aligned hull ``(w |cos a| + h |sin a|, w |sin a| + h |cos a|)`` is regressed onto the
  labelled AABB instead (centre offsets and log hull extents, see :func:`aabb_extent_deltas`): the AABB is
  all that is known, so the sizes and centre are supervised without inventing an angle, and the angle only
  gets the bounded pull towards orientations consistent with that AABB.
- ``loss_angle``: Huber on the ``(cos 2a, sin 2a)`` vector, weighted by the box anisotropy
  ``min(1, ((w - h) / (w + h)) / ANISOTROPY_FULL)``: a square box has no orientation, so its angle term
  vanishes and the loss is the same for ``a`` and ``a + 90 deg`` (both describe it); the weight goes to zero
  continuously, so the loss stays continuous as a box becomes square. Objects of unknown angle contribute
  none (their le90 box says angle 0 or -pi/2 only because an AABB was stored as a box).
- ``loss_iou``: ``loss.box_loss`` other than ``huber``: a loss on the overlap of the decoded predicted box with
  its GT box (``probiou``, ``kld``, ``gwd``, ``riou``: ``obbdet.model.box_losses``), for GT of known angle; it
  covers centre, sides and angle (periodic in pi, indifferent to a square's angle). ``loss.keep_huber`` keeps
  ``loss_box`` and ``loss_angle`` beside it; without, objects of known angle are localized by ``loss_iou``
  only (objects of unknown angle keep their hull term in ``loss_box``: an overlap with an AABB label would pull
  every box axis-aligned). 0 with ``huber``.
- ``loss_heading``: Huber on ``(cos h, sin h)`` for GT with a known heading (only with a heading head).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from obbdet.boxes import xywha_to_aabb
from obbdet.iou import box_iou_rotated
from obbdet.model.anchors import AnchorSet, aligned_box_iou, label_anchors, label_anchors_atss
from obbdet.model.box_losses import OVERLAP_LOSSES, overlap_loss
from obbdet.model.coder import anchor_centre_size, decode_sizes, decode_xywha, encode_xywha, heading_to_vec
from obbdet.model.quality import QUALITY_MODES, quality_focal_loss, varifocal_loss

ANISOTROPY_FULL = 0.1  # (w-h)/(w+h) at which the angle term reaches full weight (aspect ratio ~1.22)
# Predicted angle vectors shorter than this are scaled by 1 / HULL_MIN_NORM instead of normalized, so the hull
# term's gradient stays bounded when the head outputs a near-zero vector (an untrained head does); the
# known-angle term trains the vectors to unit length, where the hull is exactly the decoded box's.
HULL_MIN_NORM = 0.5
_MIN_SQUARED_EXTENT = 1e-12  # (anchor scales)^2: keeps log() finite for absurdly small predicted sides
LOSS_NAMES = ("loss_cls", "loss_box", "loss_angle", "loss_iou", "loss_heading")
BOX_LOSSES = ("huber",) + OVERLAP_LOSSES


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Element-wise focal loss (unreduced) for logits and 0/1 targets of the same shape."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = targets * prob + (1 - targets) * (1 - prob)
    alpha_t = targets * alpha + (1 - targets) * (1 - alpha)
    return alpha_t * (1 - p_t).pow(gamma) * ce


def angle_weight(boxes: torch.Tensor) -> torch.Tensor:
    """Anisotropy weights ``[N]`` in [0, 1] of boxes ``[N, 5]`` (0 for a square)."""
    w, h = boxes[:, 2], boxes[:, 3]
    anisotropy = (w - h) / (w + h).clamp(min=1e-6)
    return (anisotropy / ANISOTROPY_FULL).clamp(0.0, 1.0)


def aabb_extent_deltas(pred_deltas: torch.Tensor, pred_angle_vec: torch.Tensor) -> torch.Tensor:
    """Deltas ``[N, 4]`` of the axis-aligned hull of predicted OBBs: the predicted centre offsets, and the log
    hull extents over the anchor scale ``s`` (comparable with :func:`aabb_target_deltas`).

    pred_deltas ``[N, 4]`` (sizes already relative to the anchor scale), pred_angle_vec ``[N, 2]``
    ``(cos 2a, sin 2a)`` of any length.

    Why this form: the hull of a ``w x h`` box at angle ``a`` has extents ``ex = w |cos a| + h |sin a|`` and
    ``ey = w |sin a| + h |cos a|``. Written with ``|cos a| = sqrt((1 + cos 2a) / 2)`` the derivative is
    infinite where ``|cos a|`` or ``|sin a|`` is 0, i.e. at exactly the axis-aligned predictions an AABB label
    pulls towards. Squared, with ``(c, t) = (cos 2a, sin 2a)``, the extents are polynomials in ``c`` and
    ``|t|``::

        ex^2 = w^2 (1 + c) / 2 + h^2 (1 - c) / 2 + w h |t|      ey^2 = w^2 (1 - c) / 2 + h^2 (1 + c) / 2 + w h |t|

    and never fall below ``min(w, h)^2`` for ``|(c, t)| <= 1``, so ``log e = log(e^2) / 2`` has bounded
    derivatives: ``|d log e / d a| <= max(w, h) / min(w, h)``, ``0 <= d log e / d log w <= 1`` (same for
    ``h``), and the angle vector's length is floored at ``HULL_MIN_NORM``. Under the Huber penalty (slope at
    most ``delta``) the hull term's gradient is therefore bounded everywhere. ``|t|`` has a kink at ``t = 0``:
    at an axis-aligned target (the minimum) the Huber term is quadratic in ``|a|``, so the loss is smooth there.
    """
    w, h = decode_sizes(pred_deltas, torch.ones_like(pred_deltas[:, 0]))  # sides in anchor-scale units
    norm = pred_angle_vec.norm(dim=-1, keepdim=True).clamp(min=HULL_MIN_NORM)
    cos2, abs_sin2 = (pred_angle_vec / norm).unbind(-1)
    abs_sin2 = abs_sin2.abs()
    along, across = (1 + cos2) / 2, (1 - cos2) / 2  # cos^2 a, sin^2 a for a unit vector
    cross = w * h * abs_sin2  # 2 w h |cos a sin a|
    extent_x_sq = (w * w * along + h * h * across + cross).clamp(min=_MIN_SQUARED_EXTENT)
    extent_y_sq = (w * w * across + h * h * along + cross).clamp(min=_MIN_SQUARED_EXTENT)
    return torch.stack([pred_deltas[:, 0], pred_deltas[:, 1],
                        0.5 * torch.log(extent_x_sq), 0.5 * torch.log(extent_y_sq)], dim=-1)


def aabb_target_deltas(gt_boxes: torch.Tensor, anchors_xyxy: torch.Tensor) -> torch.Tensor:
    """Deltas ``[N, 4]`` of the GT boxes' AABBs: centre offsets and log x / y extents over the anchor scale."""
    xa, ya, wa, ha, scale = anchor_centre_size(anchors_xyxy)
    aabb = xywha_to_aabb(gt_boxes)
    extent_x = (aabb[:, 2] - aabb[:, 0]).clamp(min=1e-3)
    extent_y = (aabb[:, 3] - aabb[:, 1]).clamp(min=1e-3)
    return torch.stack([(gt_boxes[:, 0] - xa) / wa, (gt_boxes[:, 1] - ya) / ha,
                        torch.log(extent_x / scale), torch.log(extent_y / scale)], dim=-1)


def _target_angle_known(target: dict, device) -> torch.Tensor:
    """``[N]`` bool angle mask of one target dict (``angle_known``, else ``not aabb_only`` for every object)."""
    n = len(target["boxes"])
    known = target.get("angle_known")
    if known is None:
        return torch.full((n,), not bool(target.get("aabb_only", False)), dtype=torch.bool, device=device)
    known = torch.as_tensor(known, device=device).bool().reshape(-1)
    if len(known) != n:
        raise ValueError(f"target has {n} boxes but {len(known)} angle_known flags")
    return known


class OBBCriterion(nn.Module):
    """Turns the detector's raw outputs and the batch's targets into named losses.

    outputs: dict with ``cls_logits [B, A, C]``, ``box_deltas [B, A, 4]``, ``angle_vec [B, A, 2]`` and
    optionally ``heading_vec [B, A, 2]``. targets: one dict per image with ``boxes [N, 5]`` float xywha (le90,
    pixels of the network input), ``labels [N]`` int64, ``difficult [N]`` bool, ``angle_known [N]`` bool
    (absent: all True, or all ``not aabb_only`` for a legacy per-image ``aabb_only`` bool) and optionally
    ``heading [N]`` float (NaN where unknown). anchors: the ``AnchorSet`` of the batch's input size
    (``Detector.anchors_for(H, W)``).
    """

    def __init__(self, num_classes: int, match_iou: float = 0.5, unmatch_iou: float = 0.4,
                 focal_alpha: float = 0.25, focal_gamma: float = 1.5, huber_delta: float = 0.1,
                 box_weight: float = 50.0, angle_weight: float = 20.0, heading_weight: float = 5.0,
                 difficult: str = "positive", assigner: str = "atss", atss_topk: int = 9,
                 box_loss: str = "huber", box_loss_weight: float = 5.0, keep_huber: bool = True,
                 quality: str = "none"):
        super().__init__()
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"box_loss must be one of {', '.join(BOX_LOSSES)}, got {box_loss!r}")
        if quality not in QUALITY_MODES:
            raise ValueError(f"quality must be one of {', '.join(QUALITY_MODES)}, got {quality!r}")
        if box_loss == "huber" and not keep_huber:
            raise ValueError("box_loss=huber with keep_huber=False leaves no box loss")
        self.box_loss, self.keep_huber, self.quality = box_loss, keep_huber, quality
        self.num_classes = num_classes
        self.match_iou, self.unmatch_iou = match_iou, unmatch_iou
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.huber_delta = huber_delta
        self.weight_dict = {"loss_cls": 1.0, "loss_box": box_weight, "loss_angle": angle_weight,
                            "loss_iou": box_loss_weight, "loss_heading": heading_weight}
        self.ignore_difficult = difficult == "ignore"
        if assigner not in ("atss", "iou"):
            raise ValueError(f"assigner must be 'atss' or 'iou', got {assigner!r}")
        self.assigner, self.atss_topk = assigner, atss_topk

    @classmethod
    def from_config(cls, num_classes: int, loss_cfg) -> "OBBCriterion":
        """Build from a ``LossConfig``."""
        return cls(num_classes, match_iou=loss_cfg.match_iou, unmatch_iou=loss_cfg.unmatch_iou,
                   focal_alpha=loss_cfg.focal_alpha, focal_gamma=loss_cfg.focal_gamma,
                   huber_delta=loss_cfg.huber_delta, box_weight=loss_cfg.box_weight,
                   angle_weight=loss_cfg.angle_weight, heading_weight=loss_cfg.heading_weight,
                   difficult=loss_cfg.difficult, assigner=loss_cfg.assigner, atss_topk=loss_cfg.atss_topk,
                   box_loss=loss_cfg.box_loss, box_loss_weight=loss_cfg.box_loss_weight,
                   keep_huber=loss_cfg.keep_huber, quality=loss_cfg.quality)

    def _huber(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.huber_loss(pred, target, reduction="none", delta=self.huber_delta)

    def _label_batch(self, targets, anchors):
        labels, matched = [], []
        for target in targets:
            ignore = target["difficult"].bool() if self.ignore_difficult else None
            if self.assigner == "atss" and isinstance(anchors, AnchorSet):
                assigned = label_anchors_atss(anchors, target["boxes"], target["labels"], self.atss_topk,
                                              gt_ignore=ignore)
            else:
                assigned = label_anchors(anchors, target["boxes"], target["labels"], self.match_iou,
                                         self.unmatch_iou, gt_ignore=ignore)
            labels.append(assigned.labels)
            matched.append(assigned.matched)
        return torch.stack(labels), torch.stack(matched)  # (B, A) each

    def forward(self, outputs: dict, targets: list[dict], anchors) -> dict:
        cls_logits = outputs["cls_logits"].float()
        batch, num_anchors, num_classes = cls_logits.shape
        labels, matched = self._label_batch(targets, anchors)
        positive = labels >= 0
        num_pos = positive.sum().clamp(min=1).float()

        regression, quality = self._regression_losses(outputs, targets, anchors, positive, matched, num_pos)
        cls_targets = F.one_hot(labels.clamp(min=0), num_classes).float() * positive[..., None]
        if self.quality == "none":
            focal = sigmoid_focal_loss(cls_logits, cls_targets, self.focal_alpha, self.focal_gamma)
        else:
            focal = self._quality_cls_loss(cls_logits, cls_targets, labels, positive, quality)
        valid = (labels != -2).float()[..., None]  # IGNORED anchors contribute nothing
        losses = {"loss_cls": (focal * valid).sum() / num_pos}
        losses.update(regression)
        losses["loss"] = sum(self.weight_dict[name] * losses[name] for name in LOSS_NAMES)
        return losses

    def _quality_cls_loss(self, cls_logits, cls_targets, labels, positive, quality):
        """QFL / varifocal (``obbdet.model.quality``): the positives' class targets are their IoU ``quality``
        ``[P]`` (in the order of ``positive.nonzero()``; None when there are no positives)."""
        pos_entries = cls_targets > 0
        if quality is not None:
            img_idx, anchor_idx = positive.nonzero(as_tuple=True)
            cls_targets = cls_targets.index_put((img_idx, anchor_idx, labels[img_idx, anchor_idx]), quality)
        if self.quality == "qfl":
            return quality_focal_loss(cls_logits, cls_targets, pos_entries, self.focal_alpha, self.focal_gamma)
        return varifocal_loss(cls_logits, cls_targets, self.focal_alpha, self.focal_gamma)

    def _gather_positives(self, targets, anchors_xyxy, positive, matched):
        """Per-positive GT rows and flags, in the order of ``positive.nonzero()``."""
        img_idx, anchor_idx = positive.nonzero(as_tuple=True)
        boxes, heading, angle_known = [], [], []
        for b, target in enumerate(targets):
            sel = matched[b, anchor_idx[img_idx == b]]
            boxes.append(target["boxes"].float()[sel])
            head = target.get("heading")
            heading.append(head.float()[sel] if head is not None else
                           torch.full((len(sel),), float("nan"), device=positive.device))
            angle_known.append(_target_angle_known(target, positive.device)[sel])
        return img_idx, anchor_idx, torch.cat(boxes), torch.cat(heading), torch.cat(angle_known)

    def _regression_losses(self, outputs, targets, anchors_xyxy, positive, matched, num_pos):
        """(named regression losses, IoU ``[P]`` of each positive's decoded prediction with its GT, detached;
        None unless ``quality`` asks for it or without positives)."""
        zero = outputs["box_deltas"].sum() * 0.0  # keeps the graph (DDP needs every output used)
        angle_zero = zero + outputs["angle_vec"].sum() * 0.0
        losses = {"loss_box": zero, "loss_angle": angle_zero, "loss_iou": angle_zero, "loss_heading": zero}
        if "heading_vec" in outputs:
            losses["loss_heading"] = zero + outputs["heading_vec"].sum() * 0.0
        if not positive.any():
            return losses, None
        img_idx, anchor_idx, gt_boxes, gt_heading, angle_known = self._gather_positives(
            targets, anchors_xyxy, positive, matched)
        anchors = anchors_xyxy[anchor_idx]
        pred_deltas = outputs["box_deltas"][img_idx, anchor_idx].float()
        pred_angle = outputs["angle_vec"][img_idx, anchor_idx].float()
        gt_deltas, gt_angle = encode_xywha(gt_boxes, anchors)
        quality = self._quality(pred_deltas, pred_angle, anchors, gt_boxes, angle_known)
        if self.box_loss != "huber" and angle_known.any():
            term = self._overlap_term(pred_deltas[angle_known], pred_angle[angle_known], anchors[angle_known],
                                      gt_boxes[angle_known])
            losses["loss_iou"] = losses["loss_iou"] + term.sum() / num_pos

        # known angle: deltas of the box itself; unknown angle: deltas of the predicted box's axis-aligned hull
        # against the labelled AABB. The hull is computed for those rows only, so the other rows' values (and
        # gradients) are exactly those of the plain box term.
        unknown = ~angle_known
        if unknown.any():
            pred_deltas = pred_deltas.index_put(
                (unknown,), aabb_extent_deltas(pred_deltas[unknown], pred_angle[unknown]))
            gt_deltas = gt_deltas.index_put((unknown,), aabb_target_deltas(gt_boxes[unknown], anchors[unknown]))
        box_term = self._huber(pred_deltas, gt_deltas)
        if not self.keep_huber:  # the overlap loss localizes objects of known angle
            box_term = box_term * unknown[:, None].float()
        losses["loss_box"] = losses["loss_box"] + box_term.sum() / (num_pos * 4)

        if self.keep_huber:
            weight = angle_weight(gt_boxes) * angle_known.float()
            angle_term = self._huber(pred_angle, gt_angle).sum(-1) * weight
            losses["loss_angle"] = losses["loss_angle"] + angle_term.sum() / (num_pos * 2)

        if "heading_vec" in outputs:
            known = torch.isfinite(gt_heading)
            if known.any():
                pred_heading = outputs["heading_vec"][img_idx[known], anchor_idx[known]].float()
                term = self._huber(pred_heading, heading_to_vec(gt_heading[known])).sum()
                losses["loss_heading"] = losses["loss_heading"] + term / (num_pos * 2)
        return losses, quality

    def _overlap_term(self, pred_deltas, pred_angle, anchors, gt_boxes) -> torch.Tensor:
        """``loss.box_loss`` ``[N]`` of the predictions decoded from deltas ``[N, 4]`` and angle vectors ``[N, 2]``
        on anchors ``[N, 4]`` against GT boxes ``[N, 5]``."""
        xa, ya, wa, ha, scale = anchor_centre_size(anchors.float())
        centre = torch.stack([pred_deltas[:, 0] * wa + xa, pred_deltas[:, 1] * ha + ya], dim=-1)
        sides = torch.stack(decode_sizes(pred_deltas, scale), dim=-1)
        return overlap_loss(self.box_loss, centre, sides, pred_angle, gt_boxes)

    @torch.no_grad()
    def _quality(self, pred_deltas, pred_angle, anchors, gt_boxes, angle_known):
        """IoU ``[N]`` of decoded predictions with their GT (exact rotated IoU; for GT of unknown angle the IoU of
        the prediction's axis-aligned hull with the labelled AABB), or None when ``quality`` is ``none``."""
        if self.quality == "none":
            return None
        pred = decode_xywha(pred_deltas.detach(), pred_angle.detach(), anchors)
        iou = box_iou_rotated(pred, gt_boxes.float(), aligned=True)
        hull_iou = aligned_box_iou(xywha_to_aabb(pred), xywha_to_aabb(gt_boxes.float()))
        return torch.where(angle_known, iou, hull_iou).clamp(0, 1)
