"""Training throughput and the loader-vs-model time split.

    python bench/train_speed.py [--config d0_512] [--steps 20] [key=value ...]

Measures, in one run and on the same batches:

1. ``model``: optimizer steps on batches already in memory (forward, anchor labeling + loss, backward, step);
   this is the baseline;
2. ``loader``: the DataLoader alone with the configured workers (``data.workers=-1``: the default);
3. ``pipeline``: the two together, as ``train_one_epoch`` runs them, with the time spent waiting on the loader.

Prints images/s for each and the ratio pipeline / model: close to 1.0 means the loader keeps up (it is not
the bottleneck). CPU seconds of this process are printed too: on a shared machine wall time is noisy, CPU time
per image is the stable figure.
"""
from __future__ import annotations

import argparse
import itertools
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="d0_512", help="YAML file or named variant (default d0_512)")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("overrides", nargs="*", help="section.field=value")
    return parser.parse_intermixed_args(argv)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(state, images, targets, device, amp, channels_last):
    from obbdet.engine import StepOptions, _autocast, _optimizer_step, _prepare_images
    from obbdet.data import targets_to_device

    images = _prepare_images(images, device, channels_last)
    targets = targets_to_device(targets, device)
    with _autocast(device, amp):
        outputs = state.model(images)
    losses = state.criterion(outputs, targets, state.detector.anchors_for(*images.shape[-2:]))
    (state.scaler.scale(losses["loss"]) if state.scaler else losses["loss"]).backward()
    _optimizer_step(state.model, state.optimizer, state.scaler, 10.0)
    del StepOptions


def main(argv=None) -> int:
    args = parse_args(argv)
    from obbdet import config as config_mod, training
    from obbdet.data import default_workers
    from obbdet.device import resolve_device
    from obbdet.distributed import DistInfo

    cfg = config_mod.resolve_config(args.config, [f"data.synthetic_train={max(64, args.steps * 4)}",
                                                  "data.synthetic_val=1", *args.overrides])
    device = resolve_device(cfg.train.device)
    threads = training.setup_threads(cfg.train.threads)
    training.seed_everything(0)
    sources = training.build_sources(cfg, render_workers=threads)
    model = training.build_model(cfg, sources.class_names, False, device, DistInfo())
    loader, _, _ = training.build_loaders(cfg, sources, DistInfo(), device, 0, model.stride)
    state = training.build_train_state(cfg, model, len(loader), device, sources.class_names)
    amp = training.amp_dtype_for(device, cfg.optim.amp)
    channels_last = cfg.optim.channels_last
    workers = cfg.data.workers if cfg.data.workers >= 0 else default_workers(device.type)
    batch = cfg.data.batch_size
    n = args.steps
    print(f"{cfg.model.variant} @ {cfg.model.image_size}px, batch {batch}, device {device} ({threads} threads), "
          f"{workers} loader workers, AMP {amp}, channels_last {channels_last}")

    cached = list(itertools.islice(iter(loader), args.warmup + n))
    model.train()
    for images, targets in cached[:args.warmup]:
        _step(state, images, targets, device, amp, channels_last)
    _sync(device)
    t0, c0 = time.perf_counter(), _cpu_seconds()
    for images, targets in cached[args.warmup:]:
        _step(state, images, targets, device, amp, channels_last)
    _sync(device)
    model_s, model_cpu = time.perf_counter() - t0, _cpu_seconds() - c0

    t0 = time.perf_counter()
    for _ in itertools.islice(iter(loader), n):
        pass
    loader_s = time.perf_counter() - t0

    wait, batches = 0.0, iter(loader)
    for images, targets in itertools.islice(batches, args.warmup):
        _step(state, images, targets, device, amp, channels_last)
    _sync(device)
    t0 = tw = time.perf_counter()
    for images, targets in itertools.islice(batches, n):
        wait += time.perf_counter() - tw
        _step(state, images, targets, device, amp, channels_last)
        _sync(device)
        tw = time.perf_counter()
    pipe_s = time.perf_counter() - t0

    images = n * batch
    print(f"model only (baseline): {images / model_s:8.2f} img/s  ({model_s / n * 1000:.0f} ms/step, "
          f"{model_cpu / images:.3f} CPU-s/img in this process)")
    print(f"loader only:           {images / loader_s:8.2f} img/s  ({workers} workers)")
    print(f"pipeline:              {images / pipe_s:8.2f} img/s  (waiting on the loader {wait / pipe_s:.1%} of the time)")
    print(f"ratio pipeline/model:  {model_s / pipe_s:.2f}  ratio loader/model: {model_s / loader_s:.2f} "
          f"(loader {'keeps up' if loader_s < model_s else 'is the bottleneck'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
