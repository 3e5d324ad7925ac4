"""LR range test for any run config: exponential LR ramp, smoothed loss, stop at divergence, PNG + suggestion.

    python tools/lr_finder.py [--config configs/X.yaml] [key=value ...] [--start-lr 1e-6] [--end-lr 1]
                              [--steps 100] [--out runs/lr_finder]

Uses the config's model, data and optimizer (``optim.optimizer=sgd`` for SGD); writes ``lr_finder.png`` and
``lr_finder.json`` to ``--out`` and prints the suggested LR.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file or named variant (default: quickstart)")
    parser.add_argument("--start-lr", type=float, default=1e-6)
    parser.add_argument("--end-lr", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/lr_finder", help="output folder")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", help="section.field=value")
    return parser.parse_intermixed_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from obbdet import config as config_mod, lr_finder, training
    from obbdet.device import resolve_device
    from obbdet.distributed import DistInfo
    from obbdet.optim import build_optimizer

    try:
        cfg = config_mod.resolve_config(args.config, args.overrides)
    except config_mod.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    device = resolve_device(cfg.train.device)
    threads = training.setup_threads(cfg.train.threads)
    training.seed_everything(args.seed)
    sources = training.build_sources(cfg, render_workers=threads)
    heading = cfg.model.heading if cfg.model.heading is not None else sources.has_heading
    model = training.build_model(cfg, sources.class_names, heading, device, DistInfo())
    loader, _, _ = training.build_loaders(cfg, sources, DistInfo(), device, args.seed, model.stride)
    from obbdet.model.loss import OBBCriterion

    criterion = OBBCriterion.from_config(len(sources.class_names), cfg.loss)
    optimizer = build_optimizer(model, cfg.optim)
    result = lr_finder.lr_range_test(model, criterion, loader, optimizer, device, start_lr=args.start_lr,
                                     end_lr=args.end_lr, num_steps=args.steps, show_progress=not args.no_progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lr_finder.plot_lr_finder(result, out / "lr_finder.png",
                             title=f"LR range test: {cfg.model.variant}, {cfg.optim.optimizer}")
    lr_finder.save_result(result, out / "lr_finder.json")
    stop = "diverged" if result.diverged else "reached end_lr"
    print(f"{len(result.lrs)} steps ({stop}); suggested lr {result.suggested_lr:.3g} (steepest descent), "
          f"min-loss/10 {result.min_loss_lr:.3g}; plot {out / 'lr_finder.png'}" if result.suggested_lr else
          f"{len(result.lrs)} steps ({stop}): too few to suggest an LR; plot {out / 'lr_finder.png'}")
    del torch
    return 0


if __name__ == "__main__":
    sys.exit(main())
