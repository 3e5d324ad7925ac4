"""The Predictor: a trained detector plus everything its checkpoint says about how to run it.

    from obbdet import Predictor
    p = Predictor.from_checkpoint("best.pt", device="cpu")
    det = p.predict("scene.png", vehicle_width=14.5)   # or p(image_rgb) for an image at the training scale
    det.boxes   # [K, 5] float64 le90 xywha in the original image's pixels (radians, clockwise on screen)

``infer.py`` is a loop over :meth:`Predictor.stream`, so both give the same detections for the same image,
checkpoint and options: rescaling by the vehicle width, tiling, cross-tile merging, the checkpoint's NMS IoU,
candidate cap and calibration factors, and the detection cap, with the same defaults.

Backends: a ``.pt`` checkpoint runs in PyTorch (float32, or ``precision="bf16"`` autocast; channels_last on the
CPU by default), an ``.onnx`` export (``tools/export.py``) in ONNX Runtime (``obbdet.inference.onnx_backend``);
``backend=`` overrides the choice by suffix.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from obbdet.boxes import aabb_to_xywha, xywha_to_aabb
from obbdet.imageio import DEFAULT_DEPTH, DepthScaling, read_image_rgb
from obbdet.inference.merge import RawDetections
from obbdet.inference.options import (DEFAULT_NMS_IOU, DEFAULT_RESCALE_RANGE, DEFAULT_VOTE_IOU, InferenceOptions,
                                      InferenceSetupError, check_rescale)
from obbdet.inference.pipeline import StreamResult, stream
from obbdet.inference.rescale import NO_RESCALE, rescale_factor
from obbdet.structures import ImageLabels

logger = logging.getLogger(__name__)


@dataclass
class Detections:
    """The detections of one image, in its own pixels.

    boxes ``[K, 5]`` float64 le90 xywha (``w`` the long side, ``a`` radians in ``[-pi/2, pi/2)``, clockwise on
    screen); scores ``[K]`` float64, descending; labels ``[K]`` int64 indices into ``class_names``; heading
    ``[K]`` float64 radians in ``[-pi, pi)`` (the vehicle's front; NaN where unknown) or None when the model
    has no heading head; ``image_size`` ``(width, height)``; ``capped``: a detection cap was reached;
    ``outside``: detections dropped because their centre lay outside the image (in the tiles' padding).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    heading: np.ndarray | None
    image_size: tuple[int, int]
    capped: bool = False
    outside: int = 0

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def classes(self) -> list[str]:
        """The class name of each detection."""
        names = self.class_names
        return [names[int(c)] if 0 <= int(c) < len(names) else str(int(c)) for c in self.labels]

    @classmethod
    def from_raw(cls, raw: RawDetections, class_names: Sequence[str], image_size: tuple[int, int],
                 capped: bool = False, outside: int = 0) -> "Detections":
        heading = raw.heading if np.isfinite(raw.heading).any() else None
        return cls(raw.boxes, raw.scores, raw.labels, list(class_names), heading, image_size, capped, outside)

    def above(self, thresholds: dict | None) -> "Detections":
        """The detections scoring at least their class's threshold (``{class name: score}``; a class without
        one keeps all its detections); all of them when ``thresholds`` is None."""
        if not thresholds:
            return self
        keep = self.scores >= class_thresholds(thresholds, self.class_names)[self.labels]
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], self.class_names,
                          None if self.heading is None else self.heading[keep], self.image_size, self.capped,
                          self.outside)

    def to_labels(self, *, image: str | None = None, mode: str = "obb") -> ImageLabels:
        """As :class:`ImageLabels` (what obb_json files hold), scores set.

        ``mode="aabb"``: each box becomes its axis-aligned hull, written as an OBB with angle 0 (or -90 deg when
        taller than wide: the long side is always ``length``), with ``aabb`` filled and the hull also kept as
        an extra ``bbox: [x_min, y_min, x_max, y_max]`` key, so obb_json readers and AABB tools both read it.
        """
        if mode not in ("obb", "aabb"):
            raise ValueError(f"mode must be 'obb' or 'aabb', got {mode!r}")
        n = len(self)
        width, height = self.image_size
        labels = ImageLabels(image=image, width=width, height=height, boxes=self.boxes.copy(), classes=self.classes,
                             scores=self.scores.copy(), difficult=np.zeros(n, bool), ignore=np.zeros(n, bool),
                             heading=None if self.heading is None else self.heading.copy())
        if mode == "aabb" and n:
            aabb = xywha_to_aabb(self.boxes)
            labels.boxes = aabb_to_xywha(aabb)
            labels.aabb = aabb
            labels.extras = [{"bbox": [round(float(v), 3) for v in row]} for row in aabb]
        return labels


def class_thresholds(thresholds: dict, class_names: Sequence[str]) -> np.ndarray:
    """``[C]`` per-class score thresholds from ``{class name: score or None}`` (missing or None: 0)."""
    return np.array([float(thresholds.get(name) or 0.0) for name in class_names])


@dataclass(frozen=True)
class CheckpointInfo:
    """What inference needs from a checkpoint besides the weights (None: the checkpoint does not say)."""

    class_names: list[str]
    train_vehicle_width: float | None
    width_scale: float | None
    length_scale: float | None
    nms_iou: float | None
    pre_nms_topk: int | None = None
    operating_point: dict | None = None  # class -> score threshold of best F1 (None per class: unknown)
    vote_iou: float | None = None  # box voting (None: checkpoints written before it; the default applies)


def checkpoint_info(ckpt: dict) -> CheckpointInfo:
    """Class names, training vehicle width, calibration factors, NMS IoU and candidate cap of a loaded checkpoint."""
    from obbdet.checkpoint import checkpoint_inference_meta

    meta = checkpoint_inference_meta(ckpt)
    return CheckpointInfo(list(meta["class_names"]), meta.get("vehicle_width"), meta.get("width_scale"),
                          meta.get("length_scale"), meta.get("nms_iou"), meta.get("pre_nms_topk"),
                          meta.get("operating_point"), meta.get("vote_iou"))


def resolve_device(device: str | None, half: bool) -> str:
    """The torch device string to run on (``None``: CUDA when available); raises InferenceSetupError."""
    from obbdet.device import resolve_device as resolve

    try:
        resolved = resolve(device)
    except ValueError as exc:
        raise InferenceSetupError(str(exc)) from None
    if half and resolved.type != "cuda":
        raise InferenceSetupError("--half needs a CUDA device")
    return str(resolved) if device is None else device


BACKENDS = ("torch", "onnxruntime")
PRECISIONS = ("fp32", "bf16")


def backend_for(checkpoint, backend: str | None = None) -> str:
    """The backend that runs ``checkpoint``: ``backend`` when given, else ``onnxruntime`` for a ``.onnx`` file
    and ``torch`` otherwise; raises InferenceSetupError for an unknown name."""
    if backend is None or backend == "auto":
        return "onnxruntime" if Path(checkpoint).suffix.lower() == ".onnx" else "torch"
    if backend not in BACKENDS:
        raise InferenceSetupError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def onnx_info(meta: dict) -> CheckpointInfo:
    """The :class:`CheckpointInfo` stored in an exported model's metadata (``onnx_backend.read_metadata``)."""
    return CheckpointInfo(list(meta["class_names"]), meta["vehicle_width"], meta["width_scale"],
                          meta["length_scale"], meta["nms_iou"], meta["pre_nms_topk"], meta["operating_point"],
                          meta.get("vote_iou"))  # exports written before box voting lack it


def load_detector(checkpoint, device: str, use_ema: bool = True, backend: str | None = None):
    """``(detector, CheckpointInfo)`` from a checkpoint file, or from an ONNX export (``tools/export.py``) run by
    ONNX Runtime (``backend``: see :func:`backend_for`); raises InferenceSetupError (one line)."""
    from obbdet.checkpoint import CheckpointError, build_detector_from_checkpoint, load_checkpoint

    if backend_for(checkpoint, backend) == "onnxruntime":
        from obbdet.inference.onnx_backend import load_onnx_detector

        detector = load_onnx_detector(checkpoint, device, use_ema)
        return detector, onnx_info(detector.meta)
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise InferenceSetupError(f"checkpoint {checkpoint} not found")
    try:
        ckpt = load_checkpoint(checkpoint, map_location="cpu")
        info = checkpoint_info(ckpt)
        detector = build_detector_from_checkpoint(ckpt, device=device, use_ema=use_ema, source=checkpoint)
    except CheckpointError as exc:
        raise InferenceSetupError(str(exc).splitlines()[0]) from None
    if hasattr(detector, "eval"):
        detector.eval()
    return detector, info


def prepare_torch_detector(detector, device: str, precision: str = "fp32", channels_last: bool | None = None):
    """Put a torch detector in the memory format inference runs it in and warn when bfloat16 is asked for on a
    CPU that only emulates it. Returns whether the detector is now channels_last (default: on the CPU, where
    it measured 1.1x (obbdet_tiny) to 1.5x (D0) faster at 768 px, and more with bfloat16)."""
    import torch

    on_cpu = torch.device(device).type == "cpu"
    if precision == "bf16" and on_cpu:
        from obbdet.training import cpu_bf16_supported

        if not cpu_bf16_supported():
            logger.warning("--precision bf16: this CPU has no native bfloat16 (AVX512-BF16/AMX); it is emulated "
                           "and slower than fp32")
    if channels_last is None:
        channels_last = on_cpu
    channels_last = bool(channels_last) and hasattr(detector, "to")
    if channels_last:
        detector.to(memory_format=torch.channels_last)
    return channels_last


def _first_set(*values):
    return next(v for v in values if v is not None)


def options_from_checkpoint(info: CheckpointInfo, options: InferenceOptions, *, nms_iou=None, pre_nms_topk=None,
                            width_scale=None, length_scale=None, vote_iou=None) -> tuple[InferenceOptions, dict]:
    """``options`` with what the caller left unset (None) taken from the checkpoint, else the defaults.

    Returns the options and, for the width and length factors, where each came from (``"argument"``,
    ``"checkpoint calibration"`` or ``"default"``).
    """
    sources = {name: "argument" if given is not None else "checkpoint calibration" if stored is not None
               else "default"
               for name, given, stored in (("width", width_scale, info.width_scale),
                                           ("length", length_scale, info.length_scale))}
    resolved = replace(options, nms_iou=_first_set(nms_iou, info.nms_iou, DEFAULT_NMS_IOU),
                       vote_iou=_first_set(vote_iou, info.vote_iou, DEFAULT_VOTE_IOU),
                       pre_nms_topk=pre_nms_topk if pre_nms_topk is not None else info.pre_nms_topk,
                       width_scale=_first_set(width_scale, info.width_scale, 1.0),
                       length_scale=_first_set(length_scale, info.length_scale, 1.0))
    return resolved, sources


class Predictor:
    """A detector with its class names, training vehicle width and inference options.

    ``detector``: anything with ``predict(images [B, 3, H, W] float in [0, 1], score_threshold=,
    max_det_per_image=, nms_iou=, pre_nms_topk=) -> list[dict]`` and a ``stride`` (an obbdet ``Detector``).
    ``depth`` and ``bands``: how image files deeper than 8 bits or with other than 3 bands are read
    (``obbdet.imageio.read_image_rgb``). ``operating_point``: per-class score thresholds of best F1 (from the
    checkpoint); ``score_auto``: keep only detections above them (``options.score_threshold`` should then be at
    most their minimum, as :meth:`from_checkpoint` sets it).
    """

    def __init__(self, detector, class_names: Sequence[str], *, train_vehicle_width: float | None = None,
                 options: InferenceOptions = InferenceOptions(), option_sources: dict | None = None,
                 depth: DepthScaling = DEFAULT_DEPTH, bands: Sequence[int] | None = None,
                 operating_point: dict | None = None, score_auto: bool = False):
        if score_auto and not operating_point:
            raise InferenceSetupError("--score auto: the checkpoint stores no operating point (validate it with "
                                      "train.py or tools/calibrate.py, or give a score threshold)")
        self.detector = detector
        self.class_names = list(class_names)
        self.train_vehicle_width = train_vehicle_width
        self.options = options
        self.option_sources = dict(option_sources or {})
        self.depth = depth
        self.bands = None if bands is None else tuple(bands)
        self.operating_point = dict(operating_point) if operating_point else None
        self.score_auto = score_auto

    @classmethod
    def from_checkpoint(cls, checkpoint, device: str | None = None, *, use_ema: bool = True,
                        tile: int = 768, overlap: int = 128, whole: bool = False, batch: int = 4,
                        score_threshold: float | str = 0.05, nms_iou: float | None = None,
                        vote_iou: float | None = None, tta: str = "none",
                        pre_nms_topk: int | None = None, max_det: int = 1000,
                        max_det_per_megapixel: float = 2000.0, width_scale: float | None = None,
                        length_scale: float | None = None, half: bool = False, depth: DepthScaling = DEFAULT_DEPTH,
                        bands: Sequence[int] | None = None, min_rescale: float = DEFAULT_RESCALE_RANGE[0],
                        max_rescale: float = DEFAULT_RESCALE_RANGE[1], backend: str | None = None,
                        precision: str = "fp32", channels_last: bool | None = None,
                        detector_loader=load_detector) -> "Predictor":
        """Load a checkpoint (or an ONNX export); options left None come from it (NMS IoU, box-voting IoU,
        candidate cap, calibrated width/length factors), else the defaults. ``tta``: test-time augmentation
        (``obbdet.model.tta.VIEWS``). ``score_threshold="auto"``: the checkpoint's
        per-class operating point. ``min_rescale``/``max_rescale``: the rescale factors accepted (vehicle widths
        that ask for more or less are refused). ``backend``: ``torch`` or ``onnxruntime`` (default: by the file's
        suffix, ``.onnx`` for ONNX Runtime). ``precision``: ``fp32`` or ``bf16`` (bfloat16 autocast, torch
        backend; on a CPU without native bfloat16 it runs, emulated and slower, with a warning).
        ``channels_last``: NHWC memory format for the torch backend (default: on the CPU, where it is faster,
        see ``bench/infer_speed.py``). Raises :class:`InferenceSetupError` (one line)."""
        auto = score_threshold == "auto"
        resolved_backend = backend_for(checkpoint, backend)
        if precision not in PRECISIONS:
            raise InferenceSetupError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        if resolved_backend == "onnxruntime" and (half or precision != "fp32"):
            raise InferenceSetupError(f"{'--half' if half else '--precision ' + precision} is for the torch backend; "
                                      "the onnxruntime backend runs the exported float32 graph")
        if half and precision != "fp32":
            raise InferenceSetupError(f"--half (float16) and --precision {precision} exclude each other")
        try:  # option ranges first: cheap, and nothing has been loaded yet
            options = InferenceOptions(tile=tile, overlap=overlap, whole=whole, batch=batch,
                                       score_threshold=0.0 if auto else float(score_threshold),
                                       nms_iou=nms_iou if nms_iou is not None else DEFAULT_NMS_IOU,
                                       vote_iou=_first_set(vote_iou, DEFAULT_VOTE_IOU), tta=tta,
                                       pre_nms_topk=pre_nms_topk, max_det=max_det,
                                       max_det_per_megapixel=max_det_per_megapixel,
                                       width_scale=_first_set(width_scale, 1.0),
                                       length_scale=_first_set(length_scale, 1.0), half=half,
                                       bfloat16=precision == "bf16", min_rescale=min_rescale,
                                       max_rescale=max_rescale)
        except ValueError as exc:
            raise InferenceSetupError(str(exc)) from None
        if resolved_backend == "onnxruntime" and device is None:
            from obbdet.inference.onnx_backend import default_device

            device = default_device()
        device = resolve_device(device, half)
        if backend is None:  # custom loaders (tests) take (checkpoint, device, use_ema)
            detector, info = detector_loader(checkpoint, device, use_ema)
        else:
            detector, info = detector_loader(checkpoint, device, use_ema, backend=resolved_backend)
        if resolved_backend == "onnxruntime":
            try:
                detector.check_topk(pre_nms_topk)
            except ValueError as exc:
                raise InferenceSetupError(str(exc)) from None
        else:
            channels_last = prepare_torch_detector(detector, device, precision, channels_last)
            options = replace(options, channels_last=channels_last)
        options, sources = options_from_checkpoint(info, options, nms_iou=nms_iou, vote_iou=vote_iou,
                                                   pre_nms_topk=pre_nms_topk,
                                                   width_scale=width_scale, length_scale=length_scale)
        known = [v for v in (info.operating_point or {}).values() if v is not None]
        if auto and known:  # candidates down to the lowest class threshold; each class cut at its own
            options = replace(options, score_threshold=min(known))
        return cls(detector, info.class_names, train_vehicle_width=info.train_vehicle_width, options=options,
                   option_sources=sources, depth=depth, bands=bands, operating_point=info.operating_point,
                   score_auto=auto)

    def read(self, path) -> np.ndarray:
        """An image file as ``[H, W, 3]`` uint8 RGB, read with this predictor's depth and band settings."""
        return read_image_rgb(path, depth=self.depth, bands=self.bands)

    def scale_for(self, vehicle_width: float | None, largest: tuple[int, int] | None = None) -> float:
        """Network pixels per image pixel for images whose cars are ``vehicle_width`` px wide (None or -1: 1).

        Raises ValueError for a width that is not finite and > 0 (or -1), or whose factor lies outside the
        options' rescale range (``largest``: ``(width, height)`` of the biggest image, named in the message
        with the size and memory it would take)."""
        width = NO_RESCALE if vehicle_width is None else float(vehicle_width)
        if width != NO_RESCALE and not 0 < width < float("inf"):
            raise ValueError(f"vehicle_width must be finite and > 0 (or -1 for no rescaling), got {vehicle_width}")
        factor = rescale_factor(self.train_vehicle_width, width)
        check_rescale(factor, self.options, largest)
        return factor

    def stream(self, items: Iterable, *, vehicle_width: float | None = None, scale: float | None = None,
               keep_original: bool = False) -> Iterator:
        """Detect on ``(key, image [H, W, 3] uint8 RGB)`` pairs, batching tiles across images; other items pass
        through in order. Yields ``StreamResult`` records (``obbdet.inference.pipeline``) with final raw
        detections in original pixels. ``scale`` overrides the factor computed from ``vehicle_width``."""
        factor = self.scale_for(vehicle_width) if scale is None else scale
        check_rescale(factor, self.options)
        cut = class_thresholds(self.operating_point, self.class_names) if self.score_auto else None
        for result in stream(self.detector, items, factor, self.options, keep_original=keep_original):
            if cut is not None and getattr(result, "detections", None) is not None:
                raw = result.detections
                result.detections = raw.select(np.flatnonzero(raw.scores >= cut[raw.labels]))
            yield result

    def predict(self, image, vehicle_width: float | None = None, *, scale: float | None = None,
                name: str | None = None) -> Detections:
        """Detections of one image: a path (read like every image obbdet reads) or ``[H, W, 3]`` uint8 RGB.

        ``vehicle_width``: car width in the image's pixels; the image is rescaled by the checkpoint's training
        vehicle width / ``vehicle_width``. None (or -1): the image is already at the training scale.
        ``name`` labels the image in warnings (default: the path, or ``<image>``).
        Raises ImageReadError for an unreadable file, ValueError for a bad ``vehicle_width``, MemoryError or
        the device's out-of-memory error when the image does not fit.
        """
        if isinstance(image, (str, Path)):
            name = name or str(image)
            image = self.read(image)
        name = name or "<image>"
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an [H, W, 3] uint8 RGB image, got {image.dtype} {list(image.shape)}")
        results = list(self.stream([(name, image)], vehicle_width=vehicle_width, scale=scale))
        result: StreamResult = results[0]
        if result.failure is not None:
            raise MemoryError(f"{name}: {result.failure}")
        height, width = image.shape[:2]
        return Detections.from_raw(result.detections, self.class_names, (width, height), result.capped,
                                   result.outside)

    __call__ = predict
