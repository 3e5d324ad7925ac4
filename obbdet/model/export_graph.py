"""The exportable inference graph: network, in-graph anchors, per-class top-k candidates and their decoding.

``ExportGraph(detector, pre_nms_topk)`` is what ``tools/export.py`` hands to ``torch.onnx.export``. It runs
everything of :meth:`Detector.predict` that is plain tensor arithmetic, and leaves the score threshold and the
exact rotated NMS (``obbdet.nms``) to the caller, which runs them with the same code as the PyTorch path
(:meth:`PostProcessor.candidates_from_top`):

input  ``images [B, 3, H, W]`` float32 RGB in ``[0, 1]`` (H, W multiples of the stride; normalized in the graph);
outputs ``scores [B, k, C]`` float32 sigmoid scores of each class's ``k`` best locations, descending along k;
        ``boxes [B, k, C, 5]`` float32 xywha of those candidates (le90: ``w`` the long side, ``a`` radians in
        ``[-pi/2, pi/2)``, clockwise on screen; pixels of the input);
        ``heading [B, k, C]`` float32 radians in ``[-pi, pi)`` (with a heading head only).

``k`` is ``pre_nms_topk`` whatever the input size: when an input has fewer locations ``L`` than ``k``, the rows
past ``L`` hold padding with score 0, which no threshold keeps (candidates are kept when score > threshold >= 0).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from obbdet.boxes import BOX_DIM
from obbdet.model.postprocess import decode_candidates, top_candidates

OUTPUT_NAMES = ("scores", "boxes", "heading")
PAD_LOGIT = -1.0e4  # sigmoid -> 0: padded locations never pass a threshold


class ExportGraph(nn.Module):
    """A :class:`obbdet.model.detector.Detector` (eval mode) with anchors, candidate selection and decoding in
    the graph; see the module docstring for inputs and outputs."""

    def __init__(self, detector, pre_nms_topk: int):
        super().__init__()
        if pre_nms_topk < 1:
            raise ValueError(f"pre_nms_topk must be >= 1, got {pre_nms_topk}")
        self.detector = detector
        self.pre_nms_topk = int(pre_nms_topk)
        self.eval()  # torch.onnx.export restores the wrapper's mode on the detector afterwards: keep it eval

    @property
    def output_names(self) -> list[str]:
        return list(OUTPUT_NAMES if self.detector.has_heading else OUTPUT_NAMES[:2])

    def forward(self, images: torch.Tensor):
        outputs = self.detector(images)  # normalizes: images are RGB in [0, 1]
        batch, num_classes = images.shape[0], self.detector.num_classes
        shapes, k = self.detector.anchors.num_anchors, self.pre_nms_topk
        anchors = self.detector.anchors.traced_anchors_xyxy(images.shape[-2], images.shape[-1])  # (A, 4)
        # k padding locations after the real ones: topk(k) is valid for any input size
        pad = k * shapes
        logits = F.pad(outputs["cls_logits"], (0, 0, 0, pad), value=PAD_LOGIT)  # (B, A + pad, C)
        scores, anchor_idx = top_candidates(logits, shapes, k)  # (B, k, C) each
        flat_idx = anchor_idx.reshape(batch, k * num_classes)  # rows in (rank, class) order

        def take(values):  # (B, A, D) -> (B * k * C, D), padded rows zero
            values = F.pad(values, (0, 0, 0, pad))
            return values.gather(1, flat_idx[..., None].expand(-1, -1, values.shape[-1])).reshape(-1, values.shape[-1])

        anchors_taken = F.pad(anchors, (0, 0, 0, pad))[flat_idx.reshape(-1)]  # (B * k * C, 4)
        heading_vec = take(outputs["heading_vec"]) if self.detector.has_heading else None
        boxes, heading = decode_candidates(take(outputs["box_deltas"]), take(outputs["angle_vec"]), anchors_taken,
                                           heading_vec)
        result = [scores, boxes.reshape(batch, k, num_classes, BOX_DIM)]
        if heading is not None:
            result.append(heading.reshape(batch, k, num_classes))
        return tuple(result)
