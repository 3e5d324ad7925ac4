"""The batched prediction pipeline: images -> rescaled jobs -> batches of tiles -> merged detections.

Pipeline per image (boxes are ``xywha`` le90 rows ``[cx, cy, w, h, a]``, pixels, radians; see ``obbdet.boxes``):

1. rescale by ``train_vehicle_width / vehicle_width`` so vehicles have the size the network was trained on
   (``obbdet.inference.rescale``);
2. cut into overlapping tiles whose offsets lie on the network's stride grid (``obbdet.inference.tiling``) or
   keep whole; tiles are cut lazily into a ``[B, Hp, Wp, 3]`` uint8 staging buffer of ``batch`` tiles (``Hp,
   Wp`` padded to the network stride), so memory grows with the batch, not with the image; consecutive tiles
   of several small images share a batch. A huge raster (``obbdet.raster.WindowedRaster``) is never held
   whole: each tile is read from the file as a window, resampled to the network scale on the way;
3. ``detector.predict`` per batch; tile detections are shifted to the rescaled image;
4. merged across tiles (``obbdet.inference.merge``); detections centred outside the image (in the grey
   padding that fills tiles up to the stride) dropped and counted; capped per image at ``max_det`` or
   ``max_det_per_megapixel`` of network-scale area, whichever is larger (so a mosaic keeps all its vehicles;
   a warning names the image when a cap is reached), mapped back to original pixels, width/length
   calibration factors applied.

:func:`stream` runs it over any sequence of images; ``Predictor`` and the folder runner both use it.
Numpy does the bookkeeping; torch is only used for the forward pass and the rotated NMS.
"""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import cv2
import numpy as np

from obbdet.raster import WindowedRaster

from obbdet.boxes import BOX_DIM, scale_xywha_sides
from obbdet.imageio import PAD_GREY
from obbdet.inference.merge import RawDetections, merge_tile_detections
from obbdet.inference.options import InferenceOptions
from obbdet.inference.rescale import resize_image, scale_heading, scale_xywha
from obbdet.inference.tiling import DEFAULT_STRIDE, Tile, network_tile, padded_shape, plan_tiles

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileShare:
    """The tiles one of ``world`` processes predicts of an image: indices ``rank, rank + world, ...``."""

    rank: int
    world: int

    def indices(self, n_tiles: int) -> list[int]:
        return list(range(self.rank, n_tiles, self.world))


@dataclass(eq=False)  # identity semantics: jobs are dict keys
class ImageJob:
    """One image on its way through the pipeline: ``image`` is the rescaled RGB array, or None for a raster read
    window by window (``raster``, with ``factors`` mapping original to network pixels); ``size`` is the
    rescaled ``(height, width)`` either way."""

    key: object
    image: np.ndarray | None
    original_size: tuple[int, int]  # (width, height)
    factors: tuple[float, float]  # (sx, sy) original -> rescaled
    tiles: list[Tile]
    input_shape: tuple[int, int]  # (Hp, Wp) padded tile shape fed to the network
    original: np.ndarray | None = None  # kept for drawing only
    raster: WindowedRaster | None = None
    share: list[int] | None = None  # the tiles this process predicts (None: all; sharded rasters, see runner)
    results: list = field(default_factory=list)
    tile_capped: int = 0
    failed: bool = False
    outside: int = 0  # detections dropped by finish_job because their centre lay outside the image

    @property
    def tile_indices(self) -> list[int]:
        """Indices into ``tiles`` predicted here (all of them unless the job is shared between processes)."""
        return list(range(len(self.tiles))) if self.share is None else self.share

    @property
    def done(self) -> bool:
        return len(self.results) == len(self.tile_indices)

    @property
    def size(self) -> tuple[int, int]:
        """Rescaled ``(height, width)``."""
        if self.image is not None:
            return self.image.shape[:2]
        sx, sy = self.factors
        return round(self.original_size[1] * sy), round(self.original_size[0] * sx)

    def tile_pixels(self, tile: Tile) -> np.ndarray:
        """``[tile.height, tile.width, 3]`` uint8: the tile cut from the rescaled image, or read from the raster
        (the tile's window in original pixels, resampled to the tile's size)."""
        if self.image is not None:
            return self.image[tile.y0:tile.y1, tile.x0:tile.x1]
        sx, sy = self.factors
        return self.raster.read(tile.x0 / sx, tile.y0 / sy, tile.x1 / sx, tile.y1 / sy, tile.width, tile.height)


def make_job(key, image, scale: float, options: InferenceOptions, stride: int,
             keep_original: bool = False) -> ImageJob:
    """An :class:`ImageJob` for ``image``: an ``[H, W, 3]`` uint8 RGB array (rescaled here), or a
    :class:`WindowedRaster` (rescaled window by window as its tiles are read; never held whole)."""
    raster = image if isinstance(image, WindowedRaster) else None
    if raster is not None:
        width, height = raster.width, raster.height
        rw, rh = (width, height) if scale == 1.0 else (max(1, round(width * scale)), max(1, round(height * scale)))
        rescaled, factors = None, (rw / width, rh / height)  # the same sizes and factors as resize_image
        keep_original = False
    else:
        height, width = image.shape[:2]
        rescaled, factors = resize_image(image, scale)
        rh, rw = rescaled.shape[:2]
    if options.whole:
        tiles = plan_tiles(rw, rh, None)
        input_shape = padded_shape(rh, rw, stride)
    else:
        tile = network_tile(options.tile, stride)
        tiles = plan_tiles(rw, rh, tile, options.overlap, align=stride)
        input_shape = padded_shape(min(tile, rh), min(tile, rw), stride)
    return ImageJob(key, rescaled, (width, height), factors, tiles, input_shape,
                    original=image if keep_original else None, raster=raster)


def tile_batches(jobs: Iterable, batch: int) -> Iterator[tuple[list, list]]:
    """Group the tiles of consecutive jobs into batches of at most ``batch`` tiles of one input shape.

    ``jobs`` yields ``ImageJob`` or anything else (failures), which is passed through. Yields
    ``(tile_items, passthrough)``: ``tile_items`` a list of ``(job, tile_index)`` (possibly empty) and the
    non-job items met before the batch was closed, in order.
    """
    pending: list = []
    passthrough: list = []
    for job in jobs:
        if not isinstance(job, ImageJob):
            passthrough.append(job)
            if not pending:
                yield [], passthrough
                passthrough = []
            continue
        for k in job.tile_indices:
            if pending and (len(pending) == batch or pending[0][0].input_shape != job.input_shape):
                yield pending, passthrough
                pending, passthrough = [], []
            pending.append((job, k))
    if pending or passthrough:
        yield pending, passthrough


def detector_stride(detector) -> int:
    """The multiple the detector needs its input sides to be (``detector.stride``, default 128)."""
    return int(getattr(detector, "stride", DEFAULT_STRIDE))


def detector_device(detector):
    """The torch device holding the detector's parameters (CPU when it has none)."""
    import torch

    device = getattr(detector, "device", None)
    if device is not None:
        return torch.device(device)
    parameters = getattr(detector, "parameters", None)
    if parameters is not None:
        for parameter in parameters():
            return parameter.device
    return torch.device("cpu")


def predict_batch(detector, items: list, options: InferenceOptions, device) -> None:
    """Cut the batch's tiles into one padded uint8 buffer, predict, and store each tile's detections (shifted
    to rescaled-image coordinates) on its job."""
    import torch

    hp, wp = items[0][0].input_shape
    staging = np.full((len(items), hp, wp, 3), PAD_GREY, np.uint8)  # [B, Hp, Wp, 3]; grey right/bottom, as in training
    for b, (job, k) in enumerate(items):
        t = job.tiles[k]
        staging[b, :t.height, :t.width] = job.tile_pixels(t)
    # uint8 goes to the device (4x less traffic than float); [B, 3, Hp, Wp] float32 in [0, 1] there (NHWC in
    # memory for a channels_last detector: the staging buffer's own layout)
    layout = torch.channels_last if options.channels_last else torch.contiguous_format
    x = torch.from_numpy(staging).to(device).permute(0, 3, 1, 2).contiguous(memory_format=layout).float().div_(255.0)
    # float16 / bfloat16 only when asked; otherwise no autocast context of our own, so a caller's (validation in
    # bfloat16 during training) stays in force: autocast(enabled=False) would switch it off.
    dtype = torch.float16 if options.half else torch.bfloat16 if options.bfloat16 else None
    autocast = torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None \
        else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        outputs = detector.predict(x, score_threshold=options.score_threshold, max_det_per_image=options.max_det,
                                   nms_iou=options.nms_iou, pre_nms_topk=options.pre_nms_topk,
                                   vote_iou=options.vote_iou, tta=options.tta)
    for (job, k), out in zip(items, outputs):
        t = job.tiles[k]
        boxes = out["boxes"].detach().float().cpu().numpy().astype(np.float64).reshape(-1, BOX_DIM)
        boxes[:, 0] += t.x0
        boxes[:, 1] += t.y0
        if len(boxes) >= options.max_det:
            job.tile_capped += 1
        heading = out.get("heading")
        job.results.append(RawDetections(
            boxes, out["scores"].detach().float().cpu().numpy().astype(np.float64),
            out["labels"].detach().cpu().numpy().astype(np.int64), np.full(len(boxes), k, np.int64),
            None if heading is None else heading.detach().float().cpu().numpy().astype(np.float64)))


def inside_image(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Mask ``[N]``: the box centre lies in the image ``[0, width] x [0, height]`` (pixel-corner coordinates,
    edges included; a NaN centre is outside)."""
    cx, cy = boxes[:, 0], boxes[:, 1]
    return (cx >= 0) & (cx <= width) & (cy >= 0) & (cy <= height)


def finish_job(job: ImageJob, options: InferenceOptions, device, name: str) -> tuple[RawDetections, bool]:
    """Merge a finished job's tile detections, drop those centred outside the image, cap them, map them to
    original pixels and apply the box scales. Returns the final detections (original-image xywha) and whether
    a cap was reached; the number dropped as outside is left in ``job.outside``."""
    merged = merge_tile_detections(RawDetections.concat(job.results), job.tiles, nms_iou=options.nms_iou,
                                   margin=options.border_margin, device=device)
    # Tiles are padded up to the network stride (grey, right and bottom): whatever a detector sees there is
    # not in the image. Dropping by centre here, the one place every caller goes through (Predictor, infer.py,
    # training validation), guarantees that padding never yields a detection. The rescaled image's extent
    # maps exactly onto the original's (factors are new size / old size), so the test is done before the cap.
    rescaled_h, rescaled_w = job.size
    inside = inside_image(merged.boxes, rescaled_w, rescaled_h)
    job.outside = int(len(merged) - inside.sum())
    if job.outside:
        logger.debug("%s: %d detection(s) centred outside the image (padding) dropped", name, job.outside)
        merged = merged.select(np.flatnonzero(inside))
    capped = job.tile_capped > 0
    if job.tile_capped:
        logger.warning("%s: %d tile(s) reached the cap of %d detections per tile; raise max_det to see them all",
                       name, job.tile_capped, options.max_det)
    image_cap = image_detection_cap(rescaled_w, rescaled_h, options)
    if len(merged) > image_cap:
        logger.warning("%s: %d detections after merging, capped at %d (max_det %d, %g per megapixel; lowest scores "
                       "dropped)", name, len(merged), image_cap, options.max_det, options.max_det_per_megapixel)
        merged = merged.select(np.arange(image_cap))
        capped = True
    sx, sy = job.factors
    boxes = scale_xywha(merged.boxes, 1.0 / sx, 1.0 / sy)
    boxes = scale_xywha_sides(boxes, options.width_scale, options.length_scale)
    heading = scale_heading(merged.heading, 1.0 / sx, 1.0 / sy)
    return RawDetections(boxes, merged.scores, merged.labels, merged.tile, heading), capped


def finish_shared_job(job: ImageJob, shares, options: InferenceOptions, device, name: str
                      ) -> tuple[RawDetections, bool]:
    """:func:`finish_job` for a job whose tiles were predicted in several processes: ``shares`` are the
    ``partial`` results' detections (any order); rows are put back in tile order, the order one process
    predicts them in, so the merged result is the single-process one."""
    raw = RawDetections.concat(list(shares))
    job.results = [raw.select(np.argsort(raw.tile, kind="stable"))]
    job.share = None
    return finish_job(job, options, device, name)


def image_detection_cap(width: int, height: int, options: InferenceOptions) -> int:
    """Most detections kept for one image of ``width x height`` network-scale pixels: ``max_det`` or
    ``max_det_per_megapixel`` times its area, whichever is larger (a car at the training scale covers ~700 px²,
    so 2000 per megapixel is above any real packing and a mosaic keeps every vehicle)."""
    return max(options.max_det, math.ceil(options.max_det_per_megapixel * width * height / 1e6))


def torch_out_of_memory() -> type[BaseException]:
    """The exception torch raises when a device runs out of memory."""
    import torch

    return getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


@dataclass
class StreamResult:
    """One image out of :func:`stream`: its key, the final detections (original pixels) and whether a cap
    was reached, or the reason it failed; ``job`` keeps the rescaled image and the original when asked."""

    key: object
    detections: RawDetections | None
    capped: bool = False
    failure: str | None = None
    job: "ImageJob | None" = None
    partial: bool = False  # a shared job's share: tile detections in rescaled pixels, not merged (finish_job)

    @property
    def outside(self) -> int:
        """Detections dropped because their centre lay outside the image (0 for a failure)."""
        return 0 if self.job is None else self.job.outside


def stream(detector, items: Iterable, scale: float, options: InferenceOptions, *, keep_original: bool = False
           ) -> Iterator:
    """Detect on every image of ``items`` in order; yields a :class:`StreamResult` per ``ImageJob``-making item.

    ``items`` yields ``(key, image [H, W, 3] uint8 RGB)`` pairs (or ``(key, image, scale)`` triples, whose
    ``scale`` replaces the common one for that image), or anything else (e.g. a failure record), which is
    passed through unchanged, in order. ``image`` may be a :class:`WindowedRaster` (read tile by tile). A
    4-tuple ``(key, image, scale, share)`` predicts only the tiles whose indices ``share`` lists (or a
    :class:`TileShare` selects) and yields a ``partial`` result holding their raw detections, for another
    process to merge (:func:`finish_shared_job`). Tiles of consecutive images share batches. An out-of-memory
    error in a forward pass fails the images of that batch (each yielded with a reason) and the stream goes on.
    """
    import torch

    device = detector_device(detector)
    stride = detector_stride(detector)

    def jobs():
        for item in items:
            if isinstance(item, tuple):
                key, image, factor, share = (*item, scale, None)[:4] if len(item) == 2 else (*item, None)[:4]
                try:
                    job = make_job(key, image, factor, options, stride, keep_original)
                    if share is not None:
                        job.share = share.indices(len(job.tiles)) if isinstance(share, TileShare) \
                            else sorted(int(k) for k in share)
                        if not job.share:  # nothing of this image predicted here
                            yield StreamResult(key, RawDetections.empty(), job=job, partial=True)
                            continue
                    yield job
                except (MemoryError, cv2.error) as exc:  # rescaling a huge image
                    yield StreamResult(key, None, failure=f"cannot rescale by {factor:.4g}: {type(exc).__name__} "
                                                          f"{exc}"[:300])
            else:
                yield item

    for tile_items, passthrough in tile_batches(jobs(), options.batch):
        yield from passthrough
        tile_items = [item for item in tile_items if not item[0].failed]
        if not tile_items:
            continue
        batch_jobs = list(dict.fromkeys(job for job, _ in tile_items))  # unique, in order
        try:
            predict_batch(detector, tile_items, options, device)
        except torch_out_of_memory() as exc:
            reason = (f"out of memory in the forward pass ({str(exc).splitlines()[0][:120]}); use a smaller "
                      "--batch or --tile, or tiles instead of --whole")
            for job in batch_jobs:
                job.failed = True
                job.results.clear()
                yield StreamResult(job.key, None, failure=reason)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        for job in batch_jobs:
            if job.done and job.share is not None:
                yield StreamResult(job.key, RawDetections.concat(job.results), job=job, partial=True)
            elif job.done:
                dets, capped = finish_job(job, options, device, str(job.key))
                yield StreamResult(job.key, dets, capped, job=job)
