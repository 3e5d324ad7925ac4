"""Running a trained detector over images: the Predictor and the folder runner behind ``infer.py``.

Modules, in pipeline order (boxes are le90 xywha rows ``[cx, cy, w, h, a]``, pixels, radians):

- ``options``: :class:`InferenceOptions`, exit codes, per-image failures;
- ``rescale``: vehicle-width rescaling of images and the inverse mapping of boxes;
- ``tiling``: stride-aligned overlapping tiles;
- ``merge``: cross-tile merging (cut vehicles, then class-aware exact rotated NMS);
- ``pipeline``: batches of tiles across images through ``detector.predict`` (:func:`pipeline.stream`);
- ``predictor``: :class:`Predictor` (a checkpoint's detector plus its options) and :class:`Detections`;
- ``runner``: folder runs writing obb_json (:func:`prepare_run`, :func:`run_inference`).
"""
from __future__ import annotations

from obbdet.imageio import ImageReadError, discover_images
from obbdet.inference.merge import RawDetections, merge_tile_detections
from obbdet.inference.options import (EXIT_IMAGE_FAILURES, EXIT_OK, EXIT_SETUP_ERROR, ImageFailure,
                                      InferenceOptions, InferenceSetupError, RescaleRangeError)
from obbdet.inference.predictor import (CheckpointInfo, Detections, Predictor, checkpoint_info, load_detector,
                                        resolve_device)
from obbdet.inference.rescale import NO_RESCALE, rescale_factor, resize_image, scale_heading, scale_xywha
from obbdet.inference.runner import InferenceSummary, PreparedRun, prepare_run, run_inference
from obbdet.inference.tiling import Tile, network_tile, plan_tiles, tile_origins

__all__ = ["CheckpointInfo", "Detections", "EXIT_IMAGE_FAILURES", "EXIT_OK", "EXIT_SETUP_ERROR", "ImageFailure",
           "ImageReadError", "InferenceOptions", "InferenceSetupError", "InferenceSummary", "NO_RESCALE",
           "Predictor", "PreparedRun", "RawDetections", "RescaleRangeError", "Tile", "checkpoint_info",
           "discover_images",
           "load_detector", "merge_tile_detections", "network_tile", "plan_tiles", "prepare_run", "rescale_factor",
           "resize_image", "resolve_device", "run_inference", "scale_heading", "scale_xywha", "tile_origins"]
