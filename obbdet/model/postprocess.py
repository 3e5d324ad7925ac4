"""Raw detector outputs -> oriented detections: top-k candidates, decoding, class-aware rotated NMS."""
from __future__ import annotations

import logging

import torch

from obbdet.box_voting import DEFAULT_VOTE_IOU, view_agreement_scores, vote_pairs, weighted_mean_boxes
from obbdet.boxes import BOX_DIM, snap_heading_to_axis
from obbdet.model.coder import decode_xywha, vec_to_heading

logger = logging.getLogger(__name__)


class PostProcessor:
    """Decode, suppress and vote.

    score_threshold: candidates below are dropped. nms_iou: rotated IoU above which a lower-scored box of the
    same class is suppressed. vote_iou: each kept box becomes the score-weighted mean of its class's candidates
    overlapping it at least this much (``obbdet.box_voting``; 0: plain NMS). max_det_per_image: detections kept
    per image after NMS (default 1000: dense car parks hold 300+ vehicles). pre_nms_topk: best (location, class) candidates decoded per image before NMS; a
    configurable cap (per class) that warns when it cuts candidates above the score threshold.
    anchors_per_location: anchor shapes per feature-map location (consecutive in the anchor order). Each
    location proposes, per class, only its best-scoring shape: the other shapes there are near-copies of the
    same box that NMS would drop anyway, and with them a trained model's dozens of copies per vehicle would
    fill the cap in a dense car park (measured: 1000 per class found 193 of 287 cars in one 960 x 960 image,
    best shape per location 285).
    """

    def __init__(self, score_threshold: float = 0.05, nms_iou: float = 0.4, max_det_per_image: int = 1000,
                 pre_nms_topk: int = 1000, anchors_per_location: int = 1, vote_iou: float = DEFAULT_VOTE_IOU):
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.vote_iou = vote_iou
        self.max_det_per_image = max_det_per_image
        self.pre_nms_topk = pre_nms_topk
        self.anchors_per_location = anchors_per_location
        self._warned_topk = False

    def __call__(self, outputs: dict, anchors_xyxy: torch.Tensor, score_threshold: float | None = None,
                 nms_iou: float | None = None, max_det_per_image: int | None = None,
                 pre_nms_topk: int | None = None, vote_iou: float | None = None) -> list[dict]:
        """Detections per image.

        outputs: ``cls_logits [B, A, C]``, ``box_deltas [B, A, 4]``, ``angle_vec [B, A, 2]`` and optionally
        ``heading_vec [B, A, 2]``; anchors: an ``AnchorSet`` or ``[A, 4]`` xyxy. Returns one dict per image with ``boxes [K, 5]``
        float32 xywha (le90, radians, pixels of the network input), ``scores [K]`` float32, ``labels [K]``
        int64 and, with a heading head, ``heading [K]`` float32 radians in ``[-pi, pi)``; sorted by score.
        """
        nms_iou, max_det, vote_iou = self.settings(nms_iou, max_det_per_image, vote_iou)
        return [suppress(candidates, nms_iou, max_det, vote_iou)
                for candidates in self.candidates(outputs, anchors_xyxy, score_threshold, pre_nms_topk)]

    def settings(self, nms_iou: float | None, max_det: int | None, vote_iou: float | None) -> tuple:
        """``(nms_iou, max_det, vote_iou)``: the given values, this post-processor's where None."""
        return (self.nms_iou if nms_iou is None else nms_iou, self.max_det_per_image if max_det is None else max_det,
                self.vote_iou if vote_iou is None else vote_iou)

    def candidates(self, outputs: dict, anchors_xyxy: torch.Tensor, score_threshold: float | None = None,
                   pre_nms_topk: int | None = None) -> list[dict]:
        """The decoded candidates of each image before NMS (outputs and anchors as in :meth:`__call__`): per image
        ``boxes [N, 5]``, ``scores [N]``, ``labels [N]`` (and ``heading [N]``), the best ``pre_nms_topk``
        locations of each class above the score threshold."""
        score_threshold = self.score_threshold if score_threshold is None else score_threshold
        topk = self.pre_nms_topk if pre_nms_topk is None else pre_nms_topk
        return [self._one_image(outputs, b, anchors_xyxy, score_threshold, topk)
                for b in range(outputs["cls_logits"].shape[0])]

    def _keep(self, top_scores: torch.Tensor, score_threshold: float, num_locations: int, pre_nms_topk: int):
        """Which of the per-class top candidates ``top_scores [k, C]`` (descending along k) pass the threshold:
        (mask [k, C], labels [k, C]). Warns (once) when the cap ``k < num_locations`` cut candidates above it."""
        k, num_classes = top_scores.shape
        if k < num_locations and bool((top_scores[-1] > score_threshold).any()) and not self._warned_topk:
            logger.warning("pre_nms_topk=%d per class cut candidates scoring above %.3g; raise train.pre_nms_topk "
                           "(infer.py --pre-nms-topk) for denser scenes", pre_nms_topk, score_threshold)
            self._warned_topk = True
        labels = torch.arange(num_classes, device=top_scores.device).expand(k, num_classes)
        return top_scores > score_threshold, labels

    def _candidates(self, cls_logits: torch.Tensor, score_threshold: float, pre_nms_topk: int):
        """The best ``pre_nms_topk`` locations of each class above the threshold (per class, so that a frequent
        class cannot crowd a rare one out), each with its best anchor shape for that class:
        (scores [K], anchor index [K], labels [K])."""
        num_anchors, num_classes = cls_logits.shape
        shapes = self.anchors_per_location
        if shapes < 1 or num_anchors % shapes:
            raise ValueError(f"{num_anchors} anchors are not whole locations of {shapes} anchor shapes")
        num_locations = num_anchors // shapes
        top_scores, top_idx = top_candidates(cls_logits[None], shapes, min(pre_nms_topk, num_locations))
        keep, labels = self._keep(top_scores[0], score_threshold, num_locations, pre_nms_topk)
        return top_scores[0][keep], top_idx[0][keep], labels[keep]

    def _one_image(self, outputs, b, anchors_xyxy, score_threshold, pre_nms_topk) -> dict:
        scores, anchor_idx, labels = self._candidates(outputs["cls_logits"][b], score_threshold, pre_nms_topk)
        heading_vec = outputs["heading_vec"][b, anchor_idx] if "heading_vec" in outputs else None
        boxes, heading = decode_candidates(outputs["box_deltas"][b, anchor_idx], outputs["angle_vec"][b, anchor_idx],
                                           anchors_xyxy[anchor_idx], heading_vec)
        return _result(boxes, scores, labels, heading)

    def candidates_from_top(self, top_scores: torch.Tensor, boxes: torch.Tensor, heading: torch.Tensor | None,
                            num_locations: int, score_threshold: float, pre_nms_topk: int) -> dict:
        """The candidates of one image (as :meth:`candidates`) from its decoded per-class top candidates (what an
        exported graph computes, :class:`obbdet.model.export_graph.ExportGraph`): ``top_scores [k, C]``
        descending along k, ``boxes [k, C, 5]`` xywha (le90, radians, network-input pixels), ``heading [k, C]``
        or None; ``num_locations``: the input's feature-map locations (for the cap warning)."""
        keep, labels = self._keep(top_scores, score_threshold, num_locations, pre_nms_topk)
        return _result(boxes[keep], top_scores[keep], labels[keep], None if heading is None else heading[keep])


def top_candidates(cls_logits: torch.Tensor, anchors_per_location: int, k: int):
    """Per image and class, the ``k`` best feature-map locations, each with its best anchor shape for that class.

    cls_logits ``[B, A, C]`` (A = locations x ``anchors_per_location``, consecutive per location); ``k`` at most
    the number of locations. Returns (scores ``[B, k, C]`` float32 sigmoid, descending along k; anchor indices
    ``[B, k, C]`` int64). Traceable (no data-dependent Python), so exported graphs select the same candidates.
    """
    batch, _, num_classes = cls_logits.shape
    scores = cls_logits.float().sigmoid()  # (B, A, C)
    best_shape = None
    if anchors_per_location > 1:
        scores, best_shape = scores.reshape(batch, -1, anchors_per_location, num_classes).max(dim=2)  # (B, L, C)
    top_scores, top_idx = scores.topk(k, dim=1, sorted=True)  # (B, k, C)
    if best_shape is not None:
        top_idx = top_idx * anchors_per_location + best_shape.gather(1, top_idx)
    return top_scores, top_idx


def decode_candidates(box_deltas: torch.Tensor, angle_vec: torch.Tensor, anchors_xyxy: torch.Tensor,
                      heading_vec: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Boxes ``[N, 5]`` float32 xywha (le90, radians) and headings ``[N]`` float32 in ``[-pi, pi)`` (snapped to
    the box's long axis; None without ``heading_vec``) of candidates: deltas ``[N, 4]``, angle vectors ``[N, 2]``,
    anchors ``[N, 4]`` xyxy, heading vectors ``[N, 2]``. Traceable."""
    boxes = decode_xywha(box_deltas, angle_vec, anchors_xyxy).reshape(-1, BOX_DIM)
    if heading_vec is None:
        return boxes, None
    # the front is one end of the predicted box's long axis
    return boxes, snap_heading_to_axis(vec_to_heading(heading_vec.float()), boxes[:, 4].float())


def _result(boxes, scores, labels, heading) -> dict:
    result = {"boxes": boxes, "scores": scores, "labels": labels}
    if heading is not None:
        result["heading"] = heading
    return result


def suppress(result: dict, nms_iou: float, max_det: int, vote_iou: float = 0.0, num_views: int = 1) -> dict:
    """Class-aware exact rotated NMS of one image's candidates (``boxes [N, 5]`` le90 xywha, ``scores [N]``,
    ``labels [N]``, optional ``heading [N]``): the kept ones, sorted by score, at most ``max_det``.

    ``vote_iou`` > 0: each kept box becomes the score-weighted mean of the candidates of its class overlapping it
    at IoU >= ``vote_iou`` (``obbdet.box_voting``; its heading is moved onto the new long axis), and the voted
    boxes go through NMS once more (two that voting brought together are one vehicle). ``num_views`` > 1: the
    candidates come from that many views of the image (test-time augmentation, ``view [N]`` int64 in the
    result) and each kept box's score is the views' agreement (``box_voting.view_agreement_scores``).
    """
    from obbdet.nms import batched_nms_rotated

    views = result.pop("view", None)
    if num_views > 1 and (views is None or vote_iou <= 0):
        raise ValueError("candidates of several views need their 'view' ids and vote_iou > 0 to be fused")
    if not len(result["scores"]):
        return result
    keep = batched_nms_rotated(result["boxes"], result["scores"], result["labels"], nms_iou, max_output=max_det)
    keep = keep[:max_det]
    kept = {name: value[keep] for name, value in result.items()}
    if vote_iou <= 0:
        return kept
    idx_k, idx_c = vote_pairs(kept["boxes"], kept["scores"], kept["labels"], result["boxes"], result["scores"],
                              result["labels"], vote_iou)
    kept["boxes"] = weighted_mean_boxes(kept["boxes"], result["boxes"], result["scores"], idx_k, idx_c).to(
        result["boxes"].dtype)
    if "heading" in kept:
        kept["heading"] = snap_heading_to_axis(kept["heading"], kept["boxes"][:, 4].to(kept["heading"].dtype))
    if num_views > 1:
        kept["scores"] = view_agreement_scores(result["scores"], views, num_views, len(keep), idx_k, idx_c).to(
            result["scores"].dtype)
    # voted boxes can move closer than nms_iou to a neighbour: suppress again, so that what leaves here is NMS'd
    # (the cross-tile merge relies on it: it orders by position in the tile, not by score)
    again = batched_nms_rotated(kept["boxes"], kept["scores"], kept["labels"], nms_iou)
    return {name: value[again] for name, value in kept.items()}
