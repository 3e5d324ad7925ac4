"""Inference options, exit codes and per-image failures: what the predictor, the runner and infer.py share."""
from __future__ import annotations

from dataclasses import dataclass

from obbdet.inference.merge import BORDER_MARGIN_PX

# Exit codes of infer.py (documented in its --help).
EXIT_OK = 0
EXIT_IMAGE_FAILURES = 1
EXIT_SETUP_ERROR = 2

DEFAULT_NMS_IOU = 0.4  # the training default (TrainConfig.nms_iou), for checkpoints that store none


class InferenceSetupError(RuntimeError):
    """Something that stops a run before any image is processed (one-line message)."""


@dataclass(frozen=True)
class InferenceOptions:
    """How images are cut, predicted and merged.

    tile, overlap: tile side (rounded up to a multiple of the network stride) and minimum overlap in
    network-scale (rescaled) pixels; ignored when ``whole``. Tile offsets are multiples of the stride.
    batch: tiles per forward pass (the memory bound). score_threshold, nms_iou: passed to the detector and
    used for the cross-tile NMS. pre_nms_topk: candidate locations per class decoded per tile before NMS
    (None: the detector's own setting). max_det: cap on detections per tile and per image (warned when reached).
    width_scale, length_scale: factors applied to the short / long side of every final box.
    half: float16 autocast on CUDA.
    """

    tile: int = 768
    overlap: int = 128
    whole: bool = False
    batch: int = 4
    score_threshold: float = 0.05
    nms_iou: float = DEFAULT_NMS_IOU  # infer.py and Predictor.from_checkpoint use the checkpoint's
    pre_nms_topk: int | None = None
    max_det: int = 1000
    width_scale: float = 1.0
    length_scale: float = 1.0
    half: bool = False
    border_margin: float = BORDER_MARGIN_PX

    def __post_init__(self):
        if not self.whole:
            if self.tile < 32:
                raise ValueError(f"tile must be at least 32 px, got {self.tile}")
            if not 0 <= self.overlap < self.tile:
                raise ValueError(f"overlap must be in [0, tile), got {self.overlap} with tile {self.tile}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        if self.pre_nms_topk is not None and self.pre_nms_topk < 1:
            raise ValueError(f"pre_nms_topk must be >= 1, got {self.pre_nms_topk}")
        if not 0 < self.nms_iou <= 1:
            raise ValueError(f"nms_iou must be in (0, 1], got {self.nms_iou}")
        if self.max_det < 1:
            raise ValueError(f"max_det must be >= 1, got {self.max_det}")
        if not (self.width_scale > 0 and self.length_scale > 0):
            raise ValueError(f"width/length scales must be > 0, got {self.width_scale}, {self.length_scale}")


@dataclass
class ImageFailure:
    """An image that could not be processed, and why (one line)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"
