"""Inference options, exit codes and per-image failures: what the predictor, the runner and infer.py share."""
from __future__ import annotations

import math
from dataclasses import dataclass

from obbdet.box_voting import DEFAULT_VOTE_IOU
from obbdet.inference.merge import BORDER_MARGIN_PX
from obbdet.model.tta import check_tta

# Exit codes of infer.py (documented in its --help).
EXIT_OK = 0
EXIT_IMAGE_FAILURES = 1
EXIT_SETUP_ERROR = 2

DEFAULT_NMS_IOU = 0.4  # the training default (TrainConfig.nms_iou), for checkpoints that store none
# Rescale factors (network px per image px) accepted by default. Outside them a run is refused before any image is
# decoded: a vehicle width typed in the wrong unit asks for x158 (a 19.7 GB image), or x0 (nothing left to see).
DEFAULT_RESCALE_RANGE = (0.05, 8.0)


class InferenceSetupError(RuntimeError):
    """Something that stops a run before any image is processed (one-line message)."""


class RescaleRangeError(ValueError):
    """A rescale factor outside the allowed range (one-line message)."""


@dataclass(frozen=True)
class InferenceOptions:
    """How images are cut, predicted and merged.

    tile, overlap: tile side (rounded up to a multiple of the network stride) and minimum overlap in
    network-scale (rescaled) pixels; ignored when ``whole``. Tile offsets are multiples of the stride.
    batch: tiles per forward pass (the memory bound). score_threshold, nms_iou: passed to the detector and
    used for the cross-tile NMS. vote_iou: box voting in each tile (``obbdet.box_voting``; 0: plain NMS).
    tta: test-time augmentation of each tile (``obbdet.model.tta.VIEWS``: none, flip, rot4, d8; d8 runs eight
    forward passes). pre_nms_topk: candidate locations per class decoded per tile before NMS
    (None: the detector's own setting). max_det: cap on detections per tile, and the smallest cap per image;
    max_det_per_megapixel: the per-image cap grows with the image's network-scale area (the larger of the two
    applies), so mosaics keep all their vehicles. Caps are warned when reached.
    width_scale, length_scale: factors applied to the short / long side of every final box.
    half: float16 autocast on CUDA. bfloat16: bfloat16 autocast (CPU or CUDA). channels_last: images handed to the
    detector in NHWC memory format (for a detector converted to it). min_rescale, max_rescale: the rescale factors
    a Predictor accepts (see :func:`check_rescale`).
    """

    tile: int = 768
    overlap: int = 128
    whole: bool = False
    batch: int = 4
    score_threshold: float = 0.05
    nms_iou: float = DEFAULT_NMS_IOU  # infer.py and Predictor.from_checkpoint use the checkpoint's
    vote_iou: float = DEFAULT_VOTE_IOU  # likewise
    tta: str = "none"
    pre_nms_topk: int | None = None
    max_det: int = 1000
    max_det_per_megapixel: float = 2000.0
    width_scale: float = 1.0
    length_scale: float = 1.0
    half: bool = False
    bfloat16: bool = False
    channels_last: bool = False
    border_margin: float = BORDER_MARGIN_PX
    min_rescale: float = DEFAULT_RESCALE_RANGE[0]
    max_rescale: float = DEFAULT_RESCALE_RANGE[1]

    def __post_init__(self):
        if not self.whole:
            if self.tile < 32:
                raise ValueError(f"tile must be at least 32 px, got {self.tile}")
            if not 0 <= self.overlap < self.tile:
                raise ValueError(f"overlap must be in [0, tile), got {self.overlap} with tile {self.tile}")
        if self.half and self.bfloat16:
            raise ValueError("half (float16) and bfloat16 exclude each other")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        if self.pre_nms_topk is not None and self.pre_nms_topk < 1:
            raise ValueError(f"pre_nms_topk must be >= 1, got {self.pre_nms_topk}")
        if not 0 < self.nms_iou <= 1:
            raise ValueError(f"nms_iou must be in (0, 1], got {self.nms_iou}")
        if not 0 <= self.vote_iou <= 1:
            raise ValueError(f"vote_iou must be in [0, 1] (0: no box voting), got {self.vote_iou}")
        check_tta(self.tta, self.vote_iou)
        if self.max_det < 1:
            raise ValueError(f"max_det must be >= 1, got {self.max_det}")
        if not 0 <= self.max_det_per_megapixel < math.inf:
            raise ValueError(f"max_det_per_megapixel must be finite and >= 0, got {self.max_det_per_megapixel}")
        if not (0 < self.width_scale < math.inf and 0 < self.length_scale < math.inf):
            raise ValueError(f"width/length scales must be finite and > 0, got {self.width_scale}, "
                             f"{self.length_scale}")
        if not 0 <= self.score_threshold <= 1:
            raise ValueError(f"score threshold must be in [0, 1], got {self.score_threshold}")
        if not 0 < self.min_rescale <= self.max_rescale < math.inf:
            raise ValueError(f"rescale range must be finite with 0 < low <= high, got {self.min_rescale}, "
                             f"{self.max_rescale}")


def format_bytes(n: float) -> str:
    """``n`` bytes in a readable unit (decimal: 19.7 GB)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} EB" if n < 1e6 else f"{n * 1e18:.2g} B"


def check_rescale(scale: float, options: InferenceOptions, largest: tuple[int, int] | None = None) -> None:
    """Raise :class:`RescaleRangeError` (one line) when ``scale`` is not finite or lies outside ``options``'
    rescale range.

    ``largest``: ``(width, height)`` of the biggest image to be run, to say how large it would become and
    the memory its rescaled RGB copy would take.
    """
    low, high = options.min_rescale, options.max_rescale
    if math.isfinite(scale) and low <= scale <= high:
        return
    message = f"rescale x{scale:.4g} is outside the allowed range x{low:g}..x{high:g}"
    if largest is not None and math.isfinite(scale) and scale > 0:
        width, height = largest
        new_w, new_h = max(1.0, round(width * scale)), max(1.0, round(height * scale))
        side = lambda v: f"{v:.0f}" if v < 1e12 else f"{v:.3g}"  # noqa: E731 - exact while readable
        message += (f"; the largest image ({width}x{height} px) would become {side(new_w)}x{side(new_h)} px, about "
                    f"{format_bytes(new_w * new_h * 3)} as RGB")
    raise RescaleRangeError(message + " (check the vehicle width, or widen the range with --rescale-range LOW,HIGH)")


@dataclass
class ImageFailure:
    """An image that could not be processed, and why (one line)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"
