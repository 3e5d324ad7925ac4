"""Train an oriented-box EfficientDet.

    python train.py <run_name> <seed> [--config configs/X.yaml | --config VARIANT] [--resume] [key=value ...]
    torchrun --nproc_per_node=N train.py <run_name> <seed> ...

With no config it trains the ``quickstart`` variant on the built-in synthetic scenes. Outputs go to
``runs/<run_name>/`` (see ``obbdet.run_outputs.RunOutputs``); ``--resume`` continues from ``last.pt`` there.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_name", help="run folder name under train.out_dir (default runs/)")
    parser.add_argument("seed", type=int, help="random seed")
    parser.add_argument("--config", help="YAML file or named variant (quickstart, d0_512, tiny)")
    parser.add_argument("--resume", action="store_true", help="continue from runs/<run_name>/last.pt")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    parser.add_argument("overrides", nargs="*", help="section.field=value (or field=value when unique)")
    return parser.parse_intermixed_args(argv)


def run_epoch(epoch, cfg, state, loaders, sampler, device, dist, outputs, class_names, progress) -> None:
    """Train one epoch, evaluate, log, and checkpoint (epoch is 0-based; printed and saved 1-based)."""
    from obbdet import distributed, engine, run_outputs, training
    from obbdet.checkpoint import operating_point_record

    train_loader, val_loader, val_dataset = loaders
    sampler.set_epoch(epoch)
    # the epoch's randomness from (seed, epoch, rank) only: a resumed run redoes it exactly
    training.seed_epoch(state, epoch, dist.rank, train_loader)
    training.apply_backbone_freeze(state, cfg)
    amp = training.amp_dtype_for(device, cfg.optim.amp)
    channels_last = cfg.optim.channels_last
    step_opts = engine.StepOptions(cfg.optim.grad_accum, cfg.optim.grad_clip, amp, channels_last,
                                   cfg.train.max_steps_per_epoch, cfg.train.log_interval, progress)
    stats, state.global_step = engine.train_one_epoch(
        state.model, state.criterion, train_loader, state.optimizer, state.schedule, device, epoch + 1, step_opts,
        ema=state.ema, scaler=state.scaler, width_tracker=state.width, writer=outputs.writer,
        global_step=state.global_step)
    stats.update(distributed.all_reduce_mean({k: stats[k] for k in ("loss",) + engine.LOSS_NAMES}, device))
    state.epoch = epoch + 1
    if dist.is_main:
        print(run_outputs.format_result_line("Train", state.epoch, stats["loss"], stats["seconds"]))
    val_losses = result = None
    val_start = time.perf_counter()
    if state.epoch % cfg.train.eval_interval == 0 or state.epoch == cfg.train.epochs:
        # every process validates its share; rank 0 gathers the detections and scores them
        val_losses, result = engine.evaluate(state.eval_detector, state.criterion, val_loader, val_dataset,
                                             device, class_names, training.eval_options(cfg, device, progress))
        if dist.is_main:
            print(run_outputs.format_result_line("Val", state.epoch, val_losses["loss"],
                                              time.perf_counter() - val_start))
            print(result.format_tables(per_class=False), flush=True)
            state.operating_point = operating_point_record(result.operating_points("0.50"),
                                                           f"validation, epoch {state.epoch}")
    metric = distributed.broadcast_object(result.map.get(cfg.train.best_metric) if result else None)
    state.schedule.step_epoch(metric)
    record = run_outputs.epoch_record(state.epoch, stats, val_losses, result, state.schedule.lr,
                                   time.perf_counter() - val_start)
    state.last_metrics = {k: v for k, v in record.items() if k.startswith(("map_", "val_"))}
    outputs.log_epoch(record)
    payload = training.checkpoint_payload(state, cfg, outputs.run_dir.name, state.seed, sampler) \
        if dist.is_main else None
    if engine.is_better(metric, state.best_value):
        state.best_value, state.best_epoch = metric, state.epoch
        if payload is not None:
            payload["best"].update(value=metric, epoch=state.epoch)
        outputs.save_best(payload, state.epoch)
    outputs.save_last(payload)
    distributed.barrier()


def registry_error(path, exc: Exception) -> str:
    """One line for a registry failure, naming the registry file unless the message already does."""
    text = " ".join(str(exc).splitlines())
    return text if str(path) in text else f"data.registry {path}: {text}"


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import torch

    from obbdet import config as config_mod, distributed, run_outputs, training
    from obbdet.checkpoint import CheckpointError
    from obbdet.device import resolve_device

    try:
        cfg = config_mod.resolve_config(args.config, args.overrides)
        run_dir = Path(cfg.train.out_dir) / args.run_name
        ckpt = None
        if args.resume:
            resumed, ckpt = training.resume_config(run_dir, args.overrides)
            cfg = resumed or cfg
            print(f"resuming {run_dir / 'last.pt'} at epoch {ckpt['epoch']}" if ckpt else
                  f"--resume: no {run_dir / 'last.pt'} yet, starting from scratch")
        elif (run_dir / "last.pt").exists():
            raise config_mod.ConfigError(f"{run_dir} already holds a run; pass --resume or choose a new run name")
    except (config_mod.ConfigError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if cfg.data.registry:  # its mistakes are found before any device, model or data loader is set up
        from obbdet.datasets_registry import load_registry_config

        try:
            load_registry_config(cfg.data.registry)
        except (OSError, ValueError) as exc:
            print(f"error: {registry_error(cfg.data.registry, exc)}", file=sys.stderr)
            return 2
    device = resolve_device(cfg.train.device)
    dist = distributed.init_distributed(device.type)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
    threads = training.setup_threads(cfg.train.threads)
    training.seed_everything(args.seed + dist.rank)
    if not dist.is_main:
        distributed.barrier()  # rank 0 renders / imports first, the others then read its cache
    try:
        sources = training.build_sources(cfg, render_workers=threads if dist.is_main else 0,
                                         progress=not args.no_progress)
    except (OSError, ValueError) as exc:
        if not cfg.data.registry:
            raise
        # the registry's refusals (duplicates, ambiguous images, class maps, an empty epoch, malformed labels)
        # are sentences naming the files; the other ranks, once released, meet the same error
        if dist.is_main:
            distributed.barrier()
        print(f"error: {registry_error(cfg.data.registry, exc)}", file=sys.stderr)
        distributed.cleanup()
        return 2
    if dist.is_main:
        distributed.barrier()
    heading = cfg.model.heading if cfg.model.heading is not None else sources.has_heading
    # starting weights (model.pretrained / init) only for a new run: a resumed one restores its own below
    model = training.build_model(cfg, sources.class_names, heading, device, dist, load_weights=ckpt is None)
    stride = distributed.unwrap(model).stride
    train_loader, val_loader, sampler = training.build_loaders(cfg, sources, dist, device, args.seed, stride)
    state = training.build_train_state(cfg, model, len(train_loader), device, sources.class_names)
    state.seed = args.seed
    if ckpt:  # before any output is written: a checkpoint that does not fit leaves the run folder as it was
        try:
            training.restore_train_state(state, ckpt, sampler, source=run_dir / "last.pt")
        except CheckpointError as exc:
            print(f"error: {exc}", file=sys.stderr)
            distributed.cleanup()
            return 2
    outputs = run_outputs.RunOutputs(run_dir, dist.is_main, purge_step=ckpt["epoch"] + 1 if ckpt else None)
    if ckpt:
        outputs.truncate_after(state.epoch)
    outputs.write_config(cfg)
    if dist.is_main:
        print(f"run {run_dir}: {cfg.model.variant} @ {cfg.model.image_size}px, {len(sources.train)} train / "
              f"{len(sources.val)} val images, classes {sources.class_names}, device {device} x{dist.world_size}, "
              f"{threads} threads, {len(train_loader)} steps/epoch, epochs {state.epoch + 1}..{cfg.train.epochs}")
    progress = not args.no_progress and dist.is_main
    loaders = (train_loader, val_loader, training.validation_dataset(sources))
    for epoch in range(state.epoch, cfg.train.epochs):
        run_epoch(epoch, cfg, state, loaders, sampler, device, dist, outputs, sources.class_names, progress)
    if dist.is_main:
        print(f"done: best {cfg.train.best_metric} = {state.best_value} at epoch {state.best_epoch}; "
              f"checkpoints in {run_dir}")
    outputs.close()
    distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
