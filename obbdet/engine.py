"""One training epoch and one evaluation pass (``train_one_epoch``, ``evaluate``)."""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from obbdet.box_voting import DEFAULT_VOTE_IOU
from obbdet.data import targets_to_device
from obbdet.distributed import agree, all_reduce_sum, unwrap
from obbdet.model.loss import LOSS_NAMES

logger = logging.getLogger(__name__)

MAX_BAD_STEPS = 20  # non-finite losses tolerated per epoch (skipped) before giving up


@dataclass
class StepOptions:
    """Per-step training options (from ``OptimConfig`` and the device)."""

    grad_accum: int = 1
    grad_clip: float = 0.0
    amp_dtype: torch.dtype | None = None  # autocast dtype (training.amp_dtype_for); None = full precision
    channels_last: bool = False
    max_steps: int = 0  # cut the epoch after this many batches (0 = full epoch)
    log_interval: int = 20
    show_progress: bool = True


@dataclass
class WidthTracker:
    """Short sides (px, as the network sees them) of one class's training boxes: the checkpoint's vehicle width.

    Keeps a bounded uniform reservoir so the median is cheap and representative over a long run.
    """

    class_index: int | None
    capacity: int = 20000
    values: list = field(default_factory=list)
    seen: int = 0
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def update(self, targets: list[dict]) -> None:
        if self.class_index is None:
            return
        for target in targets:
            widths = target["boxes"][target["labels"] == self.class_index, 3]
            for w in widths.detach().cpu().tolist():
                self.seen += 1
                if len(self.values) < self.capacity:
                    self.values.append(w)
                else:
                    slot = int(self.rng.integers(0, self.seen))
                    if slot < self.capacity:
                        self.values[slot] = w

    def median(self) -> float | None:
        return float(np.median(self.values)) if self.values else None

    def state_dict(self) -> dict:
        return {"values": torch.tensor(self.values, dtype=torch.float32), "seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        self.values = state["values"].tolist()
        self.seen = int(state["seen"])


def _autocast(device: torch.device, amp_dtype):
    """Autocast to ``amp_dtype`` on CUDA or CPU (``training.amp_dtype_for`` decides); None: full precision."""
    if amp_dtype is None or device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def _prepare_images(images: torch.Tensor, device, channels_last: bool) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> float32 in [0, 1] on ``device``."""
    images = images.to(device, non_blocking=True).float().div_(255.0)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


class _Meter:
    """Running sums of named scalars, weighted by images."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0

    def update(self, values: dict, n: int) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value) * n
        self.count += n

    def means(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}


def train_one_epoch(model, criterion, loader, optimizer, schedule, device, epoch: int, options: StepOptions, *,
                    ema=None, scaler=None, width_tracker: WidthTracker | None = None, writer=None,
                    global_step: int = 0):
    """Train for one (virtual) epoch. Returns (stats, global_step).

    stats: mean ``loss`` and each named loss over the epoch, ``images``, ``seconds``, ``data_seconds`` (time
    waiting for the loader) and ``lr`` at the end. ``global_step`` counts optimizer steps (for the schedule,
    EMA warmup and tensorboard).
    """
    model.train()
    meter = _Meter()
    start = data_wait = time.perf_counter()
    data_seconds, bad_steps = 0.0, 0
    total = len(loader) if options.max_steps <= 0 else min(len(loader), options.max_steps)
    bar = tqdm(loader, total=total, desc=f"train {epoch}", disable=not options.show_progress, leave=False,
               dynamic_ncols=True)
    optimizer.zero_grad(set_to_none=True)
    for i, (images, targets) in enumerate(bar):
        if options.max_steps and i >= options.max_steps:
            break
        data_seconds += time.perf_counter() - data_wait
        distributed = hasattr(model, "no_sync")  # DDP: every skip decision is taken by all processes together
        if not (agree(images is not None, device) if distributed else images is not None):
            data_wait = time.perf_counter()  # an unreadable batch here (or on another process): step skipped
            continue
        images = _prepare_images(images, device, options.channels_last)
        targets = targets_to_device(targets, device)
        if width_tracker is not None:
            width_tracker.update(targets)
        last_micro = (i + 1) % options.grad_accum == 0 or i + 1 == total
        sync = contextlib.nullcontext() if last_micro or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with _autocast(device, options.amp_dtype):
                outputs = model(images)
            losses = criterion(outputs, targets, unwrap(model).anchors_for(*images.shape[-2:]))
            loss = losses["loss"]
            finite = bool(torch.isfinite(loss))
            if not (agree(finite, device) if distributed else finite):
                bad_steps += 1
                logger.warning("epoch %d step %d: non-finite loss (%s); step skipped", epoch, i,
                               float(loss) if not finite else "on another process")
                if bad_steps > MAX_BAD_STEPS:
                    raise FloatingPointError(f"more than {MAX_BAD_STEPS} non-finite losses in epoch {epoch}: "
                                             "lower optim.lr or enable optim.grad_clip")
                if distributed:
                    # DDP expects a backward after each forward, on every process alike: a zero-weighted one
                    # keeps the gradient all-reduce in step; its (possibly NaN) gradients are discarded below.
                    (loss * 0.0).backward()
                optimizer.zero_grad(set_to_none=True)
                data_wait = time.perf_counter()
                continue
            scaled = loss / options.grad_accum
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        if last_micro:
            _optimizer_step(model, optimizer, scaler, options.grad_clip)
            schedule.step()
            global_step += 1
            if ema is not None:
                ema.update(unwrap(model), step=global_step)
        values = {name: float(losses[name].detach()) for name in ("loss",) + LOSS_NAMES}
        meter.update(values, images.shape[0])
        if global_step % options.log_interval == 0 and last_micro:
            bar.set_postfix(loss=f"{meter.means()['loss']:.4f}", lr=f"{schedule.lr:.2e}")
            if writer is not None:
                writer.add_scalar("train_step/loss", values["loss"], global_step)
                writer.add_scalar("train_step/lr", schedule.lr, global_step)
        data_wait = time.perf_counter()
    bar.close()
    stats = meter.means()
    stats.update(images=meter.count, seconds=time.perf_counter() - start, data_seconds=data_seconds,
                 lr=schedule.lr, skipped_steps=bad_steps)
    return stats, global_step


def _optimizer_step(model, optimizer, scaler, grad_clip: float) -> None:
    if scaler is not None:
        scaler.unscale_(optimizer)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@dataclass
class EvalOptions:
    """Detection and evaluation options for :func:`evaluate` (detection as ``infer.py`` runs it)."""

    score_threshold: float = 0.01
    nms_iou: float = 0.4
    max_det_per_image: int = 1000
    pre_nms_topk: int = 1000
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    show_progress: bool = True
    tile: int = 768
    overlap: int = 128
    batch: int = 4  # tiles per forward pass
    scale: float = 1.0  # network pixels per dataset pixel (data.scale), as infer.py rescales by vehicle width
    workers: int = 0  # DataLoader workers decoding validation images
    vote_iou: float = DEFAULT_VOTE_IOU  # box voting (obbdet.box_voting; 0: plain NMS)
    tta: str = "none"  # test-time augmentation (obbdet.model.tta.VIEWS)


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """This rank's share of ``n`` validation items: every ``world_size``-th from ``rank``."""
    return list(range(rank, n, world_size))


def _as_is(item):
    """The DataLoader's collate for one unbatched item (a module function: workers may need to pickle it)."""
    return item


@torch.no_grad()
def validation_losses(detector, criterion, loader, device, options: EvalOptions) -> dict:
    """Mean ``loss`` and named losses over this rank's batches of ``loader`` (letterboxed validation images),
    averaged over ranks (weighted by images)."""
    detector.eval()
    meter = _Meter()
    for images, targets in tqdm(loader, desc="val loss", disable=not options.show_progress, leave=False,
                                dynamic_ncols=True):
        if images is None:
            continue
        images = _prepare_images(images, device, options.channels_last)
        targets = targets_to_device(targets, device)
        with _autocast(device, options.amp_dtype):
            outputs = detector(images)
        losses = criterion(outputs, targets, detector.anchors_for(*images.shape[-2:]))
        meter.update({name: float(losses[name]) for name in ("loss",) + LOSS_NAMES}, images.shape[0])
    sums = {k: v * max(meter.count, 1) for k, v in meter.means().items()}
    totals = all_reduce_sum({**sums, "_images": meter.count}, device)
    return {k: v / max(totals["_images"], 1) for k, v in totals.items() if k != "_images"}


def _items(dataset, indices: list[int], workers: int):
    """``(index, image [H, W, 3] uint8, target)`` of the samples at ``indices`` (unreadable ones skipped)."""
    subset = torch.utils.data.Subset(dataset, indices)
    loader = torch.utils.data.DataLoader(subset, batch_size=None, num_workers=workers, collate_fn=_as_is)
    for index, item in zip(indices, loader):
        if item is not None:
            image, target = item
            yield index, image.permute(1, 2, 0).numpy(), target


@torch.no_grad()
def validation_detections(detector, dataset, device, options: EvalOptions) -> list[tuple]:
    """Detect on this rank's share of ``dataset`` (a ``DetectionDataset`` without transform: images and ground
    truth at the dataset's pixels) through the inference pipeline ``infer.py`` runs (rescale by
    ``options.scale``, tiles, cross-tile merge). Returns ``(index, gt target, RawDetections)`` per image."""
    from obbdet.distributed import rank_and_world
    from obbdet.inference.options import InferenceOptions
    from obbdet.inference.pipeline import stream

    detector.eval()
    rank, world = rank_and_world()
    infer_opts = InferenceOptions(tile=options.tile, overlap=min(options.overlap, options.tile - 1),
                                  batch=options.batch, score_threshold=options.score_threshold,
                                  nms_iou=options.nms_iou, pre_nms_topk=options.pre_nms_topk,
                                  vote_iou=options.vote_iou, tta=options.tta,
                                  max_det=options.max_det_per_image)
    targets = {}
    indices = shard_indices(len(dataset), rank, world)

    def items():
        for index, image, target in _items(dataset, indices, options.workers):
            targets[index] = target
            yield index, image

    out = []
    bar = tqdm(total=len(indices), desc="val", disable=not options.show_progress,
               leave=False, dynamic_ncols=True)
    with _autocast(device, options.amp_dtype):
        for result in stream(detector, items(), options.scale, infer_opts):
            bar.update(1)
            if result.failure is not None:
                logger.warning("validation image %s skipped: %s", result.key, result.failure)
                continue
            out.append((result.key, targets.pop(result.key), result.detections))
    bar.close()
    return out


def evaluate(detector, criterion, loss_loader, dataset, device, class_names: list[str], options: EvalOptions):
    """Validation losses and the OBB mAP table (``eval.evaluate_arrays``, IoU 0.50..0.95), on every rank.

    detector: a ``Detector`` (not DDP-wrapped; the EMA copy when EMA is on). The losses come from
    ``loss_loader`` (letterboxed images); the detections from the inference path over ``dataset`` at the
    training scale, compared with the ground truth in the dataset's pixels: the table predicts what
    ``infer.py`` + ``eval`` will score. Each rank takes a share of both; rank 0 gathers and gets
    ``(losses, EvalResult)``, the other ranks ``(losses, None)``.
    """
    from obbdet.distributed import gather_to_main
    from obbdet.eval import evaluate_arrays

    losses = validation_losses(detector, criterion, loss_loader, device, options)
    parts = gather_to_main([(i, {k: target[k].numpy() for k in ("boxes", "labels", "difficult")}, dets)
                            for i, target, dets in validation_detections(detector, dataset, device, options)])
    if parts is None:
        return losses, None
    rows = sorted((row for part in parts for row in part), key=lambda row: row[0])
    result = evaluate_arrays([gt["boxes"] for _, gt, _ in rows], [gt["labels"] for _, gt, _ in rows],
                             [d.boxes for _, _, d in rows], [d.scores for _, _, d in rows],
                             [d.labels for _, _, d in rows], class_names,
                             gt_difficult=[gt["difficult"] for _, gt, _ in rows],
                             image_ids=[dataset.image_id(i) for i, _, _ in rows])
    return losses, result


def is_better(value: float | None, best: float | None) -> bool:
    """Higher-is-better comparison that treats None/NaN as the worst."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return best is None or value > best
