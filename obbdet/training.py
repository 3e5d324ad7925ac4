"""Building a training run from its config: runtime, data, model, optimizer state, run outputs, checkpoints.

``train.py`` wires these together; each builder is small and takes explicit arguments.
"""
from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

import obbdet
from obbdet.checkpoint import CheckpointError, capture_rng_state, load_checkpoint, load_weights, restore_rng_state
from obbdet.config import RunConfig, config_from_dict, config_to_dict
from obbdet.data import DetectionDataset, ScaledTransform, StrideCollate, default_workers
from obbdet.distributed import DistInfo, unwrap
from obbdet.engine import EvalOptions, WidthTracker, shard_indices
from obbdet.model.detector import build_detector
from obbdet.model.loss import OBBCriterion
from obbdet.optim import LRSchedule, build_optimizer

logger = logging.getLogger(__name__)

SYNTHETIC_CLASSES = ("car", "truck", "bus", "van")


# ---------------------------------------------------------------------------------------------------
# Runtime
# ---------------------------------------------------------------------------------------------------

def setup_threads(threads: int) -> int:
    """Torch CPU threads: ``threads`` or, when 0, the cores this process may use."""
    if threads <= 0:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    return threads


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cpu_bf16_supported() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX512-BF16 or AMX): only then is CPU autocast faster."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def amp_dtype_for(device: torch.device, enabled: bool):
    """The autocast dtype, or None for full precision.

    CUDA: bfloat16 where supported, else float16 (with a GradScaler). CPU: bfloat16 when the CPU computes it
    natively (oneDNN with AVX512-BF16/AMX; bench/cpu_precision.py: 1.4x faster steps than float32 channels_last
    for obbdet_tiny on 2 cores), else None: emulated bfloat16 is slower than float32. Losses are always computed in
    float32.
    """
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_bf16_supported():
        return torch.bfloat16
    return None


# ---------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------

@dataclass
class DataSources:
    """Training and validation samples with their class list and the sampler's per-dataset layout."""

    train: list
    val: list
    class_names: list[str]
    dataset_sizes: list[int]
    quotas: list | None = None  # per-dataset samples per epoch (registry); None: data.virtual_epoch_size
    names: list[str] = field(default_factory=list)

    @property
    def has_heading(self) -> bool:
        """Whether any training sample, of any dataset, carries a heading (``model.heading=null`` follows it)."""
        return any(s.heading is not None and np.isfinite(s.heading).any() for s in self.train)


def synthetic_sources(data_cfg, workers: int = 0, progress: bool = True) -> DataSources:
    """The built-in synthetic scenes (rendered once into a cache folder, then reused)."""
    from obbdet.datasets_registry.synthetic import load_synthetic

    size = data_cfg.synthetic_size
    samples = load_synthetic(data_cfg.synthetic_cache or None, n_train=data_cfg.synthetic_train,
                             n_val=data_cfg.synthetic_val, seed=data_cfg.synthetic_seed, width=size, height=size,
                             workers=workers, progress=progress)
    train = [s for s in samples if s.meta.get("split") == "train"]
    val = [s for s in samples if s.meta.get("split") == "val"]
    names = list(samples[0].meta.get("class_names", SYNTHETIC_CLASSES)) if samples else list(SYNTHETIC_CLASSES)
    return DataSources(train, val, names, [len(train)], names=["synthetic"])


def registry_sources(data_cfg) -> DataSources:
    """Samples from a registry config file (``data.registry``); its quotas define the virtual epoch."""
    from obbdet.datasets_registry import build_registry

    registry = build_registry(data_cfg.registry, vehicle_width=data_cfg.vehicle_width, main_class=data_cfg.main_class)
    print(registry.summary_table(), flush=True)
    return DataSources(registry.train, registry.val, list(registry.classes), list(registry.train_sizes),
                       quotas=list(registry.quotas), names=[r.config.name for r in registry.reports])


def build_sources(cfg: RunConfig, render_workers: int = 0, progress: bool = True) -> DataSources:
    """Training/validation samples: the registry config ``data.registry``, or the synthetic scenes."""
    if cfg.data.registry:
        sources = registry_sources(cfg.data)
    else:
        if cfg.data.vehicle_width is not None:
            logger.warning("data.vehicle_width resamples registry datasets; the synthetic scenes are used as rendered")
        sources = synthetic_sources(cfg.data, render_workers, progress)
    if not sources.train:
        raise ValueError("no training samples")
    if cfg.data.max_val_images > 0:
        sources.val = sources.val[:cfg.data.max_val_images]
    return sources


def _seed_worker(worker_id: int) -> None:
    """DataLoader workers: numpy and python generators seeded from torch's per-worker seed (the loader's base
    seed + worker id; the training loader draws its base seed from its own generator, reseeded each epoch by
    :func:`seed_epoch`)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loaders(cfg: RunConfig, sources: DataSources, dist: DistInfo, device: torch.device, seed: int,
                  stride: int):
    """(train loader, val loader, sampler). Train: VirtualEpochSampler sharded over ranks; val: in order."""
    from obbdet.datasets_registry.sampler import VirtualEpochSampler
    from obbdet.augment import build_train_transform, build_val_transform

    size = cfg.model.image_size
    jitter = 1.0 + cfg.data.scale_jitter
    train_tf = build_train_transform(size, rotate_prob=cfg.data.rotate_prob, seed=seed,
                                     scale_range=(1.0 / jitter, jitter),
                                     object_focus_prob=cfg.data.object_focus_prob,
                                     balance_focus_classes=cfg.data.balance_focus_classes)
    val_tf = build_val_transform(cfg.data.val_image_size or size)
    if cfg.data.scale != 1.0:
        train_tf, val_tf = ScaledTransform(train_tf, cfg.data.scale), ScaledTransform(val_tf, cfg.data.scale)
    train_ds = DetectionDataset(sources.train, train_tf)
    # the validation loss takes this process's share of the letterboxed images; the validation mAP runs the
    # inference path over ``val_dataset`` (engine.evaluate), sharded the same way
    val_ds = torch.utils.data.Subset(DetectionDataset(sources.val, val_tf),
                                     shard_indices(len(sources.val), dist.rank, dist.world_size))
    epoch_size = None if sources.quotas is not None else cfg.data.virtual_epoch_size
    sampler = VirtualEpochSampler(sources.dataset_sizes, quotas=sources.quotas, num_samples=epoch_size, seed=seed,
                                  num_replicas=dist.world_size, rank=dist.rank)
    workers = cfg.data.workers if cfg.data.workers >= 0 else default_workers(device.type)
    common = dict(num_workers=workers, collate_fn=StrideCollate(stride), pin_memory=device.type == "cuda",
                  worker_init_fn=_seed_worker, persistent_workers=False)
    if workers > 0:
        common["prefetch_factor"] = 4
    # a private generator for the workers' base seed: the global torch stream is consumed by other loaders
    # (validation) and by the model, and the epoch's workers must not depend on that (seed_epoch reseeds it)
    train_loader = torch.utils.data.DataLoader(train_ds, batch_size=cfg.data.batch_size, sampler=sampler,
                                               drop_last=True, generator=torch.Generator(), **common)
    val_loader = torch.utils.data.DataLoader(val_ds, batch_size=cfg.data.val_batch_size, shuffle=False, **common)
    return train_loader, val_loader, sampler


_EPOCH_SEED_TAG = 0xE50C7  # keeps these generators apart from others seeded with the same (seed, epoch) words


def _augment_of(transform):
    """The ``OBBAugment`` inside a (possibly wrapped, e.g. ``ScaledTransform``) transform, or None."""
    from obbdet.augment import OBBAugment

    while transform is not None and not isinstance(transform, OBBAugment):
        transform = getattr(transform, "transform", None)
    return transform


def seed_epoch(state: "TrainState", epoch: int, rank: int, train_loader) -> None:
    """Reseed every random generator a training epoch uses from ``(run seed, epoch, rank)`` alone.

    Checkpoints are written at epoch ends, so ``--resume`` restarts at an epoch boundary; it redoes the
    following epochs bit for bit (on the CPU; on GPUs up to cuDNN's nondeterministic kernels) only if an
    epoch's data, augmentation and random layers depend on ``(seed, epoch, rank)`` and never on what ran
    earlier in the process. Restoring the generator states saved with the checkpoint is not enough: the
    augmentation's own stream (in the main process with ``data.workers=0``) continued from the previous
    epochs in an uninterrupted run but restarts from the seed in a resumed one. Reseeded here: python,
    numpy and torch (CPU and CUDA) global generators; the training loader's generator, from which the
    DataLoader draws its workers' base seed (each worker then seeds numpy / python in ``_seed_worker`` and
    the augmentation in ``OBBAugment`` from it); the augmentation in the main process; the vehicle-width
    reservoir's generator; and the EMA's stochastic-rounding generator (bfloat16 EMA only).
    The data order is the sampler's, already a function of ``(seed, epoch)``.
    """
    seed = int(state.seed)
    sequence = np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF, int(epoch), int(rank),
                                       _EPOCH_SEED_TAG])
    words = [int(w) for w in sequence.generate_state(8, dtype=np.uint64)]
    random.seed(words[0])
    np.random.seed(words[1] % 2**32)
    torch.manual_seed(words[2])  # also every CUDA device
    if getattr(train_loader, "generator", None) is not None:
        train_loader.generator.manual_seed(words[3])
    augment = _augment_of(getattr(train_loader.dataset, "transform", None))
    if augment is not None and augment.seed is not None:
        augment.reseed(augment.seed, int(epoch), int(rank), _EPOCH_SEED_TAG)
    state.width.rng = np.random.default_rng(words[4])
    generator = getattr(state.ema, "_sr_generator", None)  # timm ModelEmaV3's private generator (newer timm)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(words[5])


def validation_dataset(sources: DataSources) -> DetectionDataset:
    """The validation images and ground truth as the inference path takes them (no transform)."""
    return DetectionDataset(sources.val)


def eval_options(cfg: RunConfig, device: torch.device, progress: bool) -> EvalOptions:
    """Validation detects as infer.py does with its defaults, at the training scale (``data.scale``)."""
    workers = cfg.data.workers if cfg.data.workers >= 0 else default_workers(device.type)
    return EvalOptions(cfg.train.score_threshold, cfg.train.nms_iou, cfg.train.max_det_per_image,
                       cfg.train.pre_nms_topk, amp_dtype_for(device, cfg.optim.amp), cfg.optim.channels_last,
                       progress, tile=cfg.train.val_tile, overlap=cfg.train.val_overlap,
                       vote_iou=cfg.train.vote_iou, tta=cfg.train.tta,
                       batch=cfg.data.val_batch_size, scale=cfg.data.scale, workers=workers)


# ---------------------------------------------------------------------------------------------------
# Model and optimization state
# ---------------------------------------------------------------------------------------------------

@dataclass
class TrainState:
    """Everything that changes during training and is saved in checkpoints."""

    model: torch.nn.Module  # the Detector, or DDP around it
    criterion: OBBCriterion
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    ema: object | None
    scaler: object | None
    width: WidthTracker
    seed: int = 0
    epoch: int = 0  # completed epochs
    global_step: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    last_metrics: dict = field(default_factory=dict)
    operating_point: dict | None = None  # checkpoint.operating_point_record of the last validation

    @property
    def detector(self):
        return unwrap(self.model)

    @property
    def eval_detector(self):
        """The weights used for validation and the best checkpoint: EMA when enabled."""
        return self.ema.module if self.ema is not None else self.detector


def build_model(cfg: RunConfig, class_names: list[str], heading: bool, device: torch.device, dist: DistInfo,
                load_weights: bool = True):
    """The Detector on ``device`` (channels_last when configured), wrapped in DDP (SyncBN optional) when
    distributed. Its starting weights (``model.pretrained``, ``model.backbone_weights``, ``model.init``) are
    loaded unless ``load_weights`` is False: a resumed run takes every weight from its own checkpoint."""
    detector = build_detector(cfg.model, class_names, heading=heading, load_weights=load_weights,
                              verbose=dist.is_main).to(device)
    if cfg.optim.channels_last:
        detector = detector.to(memory_format=torch.channels_last)
    if not dist.enabled:
        return detector
    if cfg.model.sync_bn:
        if device.type != "cuda":
            logger.warning("model.sync_bn needs CUDA devices; training with per-process BatchNorm")
        else:
            detector = torch.nn.SyncBatchNorm.convert_sync_batchnorm(detector)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(detector, device_ids=ids, find_unused_parameters=False)


def build_train_state(cfg: RunConfig, model, steps_per_epoch: int, device: torch.device,
                      class_names: list[str]) -> TrainState:
    from timm.utils import ModelEmaV3

    detector = unwrap(model)
    optimizer = build_optimizer(detector, cfg.optim)
    schedule = LRSchedule(optimizer, cfg.schedule, cfg.optim.lr, max(1, steps_per_epoch // cfg.optim.grad_accum),
                          cfg.train.epochs)
    ema = ModelEmaV3(detector, decay=cfg.optim.ema_decay, use_warmup=True) if cfg.optim.ema else None
    amp = amp_dtype_for(device, cfg.optim.amp)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    main = class_names.index(cfg.data.main_class) if cfg.data.main_class in class_names else None
    criterion = OBBCriterion.from_config(len(class_names), cfg.loss)
    return TrainState(model, criterion, optimizer, schedule, ema, scaler, WidthTracker(main))


def apply_backbone_freeze(state: TrainState, cfg: RunConfig) -> None:
    """Freeze the backbone during the first ``freeze_backbone_epochs`` epochs (-1: always).

    Under DDP the wrapper is rebuilt when the set of trainable parameters changes: DDP registers its gradient
    hooks for the parameters that require gradients when it is built, and waits for exactly those.
    """
    n = cfg.model.freeze_backbone_epochs
    frozen = n < 0 or state.epoch < n
    detector = state.detector
    changed = frozen != getattr(detector, "_backbone_frozen", False)
    detector.set_backbone_frozen(frozen)
    if changed and isinstance(state.model, torch.nn.parallel.DistributedDataParallel):
        state.model = torch.nn.parallel.DistributedDataParallel(
            detector, device_ids=state.model.device_ids, find_unused_parameters=False)


# ---------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------

def checkpoint_payload(state: TrainState, cfg: RunConfig, run_name: str, seed: int, sampler) -> dict:
    detector = state.detector
    spec = dict(detector.spec, variant=cfg.model.variant, image_size=cfg.model.image_size)
    return {
        "obbdet_version": obbdet.__version__,
        "model": spec,
        "state_dict": detector.state_dict(),
        "ema_state_dict": state.ema.module.state_dict() if state.ema is not None else None,
        "vehicle_width": state.width.median(),
        "main_class": cfg.data.main_class,
        "width_samples": state.width.state_dict(),
        "calibration": {"width_scale": None, "length_scale": None},
        "nms_iou": cfg.train.nms_iou,
        "vote_iou": cfg.train.vote_iou,
        "pre_nms_topk": cfg.train.pre_nms_topk,
        "epoch": state.epoch,
        "global_step": state.global_step,
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.schedule.state_dict(),
        "scaler": state.scaler.state_dict() if state.scaler is not None else None,
        "sampler": sampler.state_dict(consumed=0) if sampler is not None else None,
        "rng": capture_rng_state(),
        "best": {"metric": cfg.train.best_metric, "value": state.best_value, "epoch": state.best_epoch},
        "metrics": state.last_metrics,
        "operating_point": state.operating_point,
        "config": config_to_dict(cfg),
        "run": {"name": run_name, "seed": seed},
    }


def restore_train_state(state: TrainState, ckpt: dict, sampler, source="checkpoint") -> None:
    """Load model, EMA, optimizer, schedule, scaler, sampler position, RNG and bookkeeping from ``ckpt``.

    Raises CheckpointError (one line starting with ``source``) when the checkpoint does not fit this run (its
    weights another model's, e.g. after the class list changed, or its sampler another seed's)."""
    load_weights(state.detector, ckpt["state_dict"], source, "weights ('state_dict')")
    if state.ema is not None and ckpt.get("ema_state_dict") is not None:
        load_weights(state.ema.module, ckpt["ema_state_dict"], source, "EMA weights ('ema_state_dict')")
    try:
        state.optimizer.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{source}: its optimizer state does not fit this run's optimizer: "
                              f"{' '.join(str(exc).split())}") from None
    state.schedule.load_state_dict(ckpt["scheduler"])
    if state.scaler is not None and ckpt.get("scaler") is not None:
        state.scaler.load_state_dict(ckpt["scaler"])
    if ckpt.get("width_samples") is not None:
        state.width.load_state_dict(ckpt["width_samples"])
    state.epoch, state.global_step = int(ckpt["epoch"]), int(ckpt["global_step"])
    best = ckpt.get("best") or {}
    state.best_value, state.best_epoch = best.get("value"), best.get("epoch")
    state.operating_point = ckpt.get("operating_point")
    state.last_metrics = ckpt.get("metrics") or {}
    if sampler is not None and ckpt.get("sampler") is not None:
        try:
            sampler.load_state_dict(ckpt["sampler"])
        except ValueError as exc:
            raise CheckpointError(f"{source}: {exc}") from None
    restore_rng_state(ckpt["rng"])


def resume_config(run_dir: Path, overrides) -> tuple[RunConfig | None, dict | None]:
    """(config, checkpoint) of ``run_dir/last.pt`` with command-line overrides applied; (None, None) if absent."""
    from obbdet.config import apply_overrides, validate_config

    last = run_dir / "last.pt"
    if not last.is_file():
        return None, None
    ckpt = load_checkpoint(last)
    cfg = apply_overrides(config_from_dict(ckpt["config"], where=str(last)), overrides)
    # the starting-weight files are not read again on resume, so they may have moved since
    validate_config(replace(cfg, model=replace(cfg.model, init=None, backbone_weights="")))
    return cfg, ckpt
