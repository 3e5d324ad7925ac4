"""Can the pipeline fit real aerial imagery? Train on crops of the DOTA fixtures, evaluate on the same images.

    python bench/overfit_real.py [--fixtures ../shared/fixtures/dota] [--minutes 5] [--scale 2] [key=value ...]

The three DOTA fixture images (small-vehicle -> car, large-vehicle -> truck; other classes dropped) are
upscaled by ``--scale`` (DOTA small vehicles are ~8 px wide; the small model's finest anchors are 24 px), cut
into random ``model.image_size`` crops with the usual augmentation, and trained on for ``--minutes`` of wall
time (or ``--steps``). Then each whole image is predicted at the same scale (letterboxed, no tiling) and the
OBB mAP table on those very images is printed, with the ratio of the final to the initial mAP50 as the
baseline comparison. The target is mAP50 >= 0.9: a pipeline that cannot memorize three images has a bug.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
DEFAULT_FIXTURES = Path(os.environ.get("OBBDET_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", default=str(DEFAULT_FIXTURES / "dota"), help="DOTA folder (images, labelTxt)")
    parser.add_argument("--minutes", type=float, default=5.0, help="training wall-time budget")
    parser.add_argument("--steps", type=int, default=0, help="stop after this many steps instead (0: use --minutes)")
    parser.add_argument("--scale", type=float, default=2.0, help="resize factor applied to the images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="run config overrides, section.field=value")
    return parser.parse_intermixed_args(argv)


def build(args):
    import torch

    from datasets_registry import load_dataset
    from obbdet import config as config_mod, training
    from obbdet.augment import build_train_transform, build_val_transform
    from obbdet.data import DetectionDataset, ScaledTransform, StrideCollate
    from obbdet.distributed import DistInfo

    cfg = config_mod.resolve_config(None, ["model.image_size=384", "data.batch_size=4", "optim.lr=0.002",
                                           "optim.ema=false", "schedule.name=constant", "schedule.warmup_epochs=0",
                                           *args.overrides])
    classes = ["car", "truck"]
    samples = load_dataset("dota", args.fixtures, classes=classes,
                           class_map={"small-vehicle": "car", "large-vehicle": "truck", "*": "ignore"})
    device = training.resolve_device(cfg.train.device)
    training.setup_threads(cfg.train.threads)
    training.seed_everything(args.seed)
    model = training.build_model(cfg, classes, False, device, DistInfo())
    stride = model.stride
    train_tf = ScaledTransform(build_train_transform(cfg.model.image_size, rotate_prob=cfg.data.rotate_prob,
                                                     object_focus_prob=0.7, seed=args.seed), args.scale)
    longest = max(max(s.width, s.height) for s in samples) * args.scale
    val_size = int(-(-longest // stride) * stride)
    val_tf = ScaledTransform(build_val_transform(val_size), args.scale)
    train_ds = DetectionDataset(samples, train_tf)
    sampler = torch.utils.data.RandomSampler(train_ds, replacement=True, num_samples=10**7)
    train_loader = torch.utils.data.DataLoader(train_ds, batch_size=cfg.data.batch_size, sampler=sampler,
                                               num_workers=1, collate_fn=StrideCollate(stride))
    val_loader = torch.utils.data.DataLoader(DetectionDataset(samples, val_tf), batch_size=1,
                                             collate_fn=StrideCollate(stride))
    state = training.build_train_state(cfg, model, 1000, device, classes)
    return cfg, samples, classes, device, model, state, train_loader, val_loader


def main(argv=None) -> int:
    args = parse_args(argv)
    if not (Path(args.fixtures) / "images").is_dir():
        print(f"DOTA fixtures not found at {args.fixtures} (pass --fixtures)", file=sys.stderr)
        return 2
    from obbdet.engine import EvalOptions, StepOptions, evaluate, train_one_epoch

    cfg, samples, classes, device, model, state, train_loader, val_loader = build(args)
    n_obj = sum(len(s) for s in samples)
    print(f"{len(samples)} DOTA images, {n_obj} objects ({classes}), x{args.scale} scale, "
          f"{cfg.model.variant} @ {cfg.model.image_size}px crops, batch {cfg.data.batch_size}, device {device}")
    eval_opts = EvalOptions(score_threshold=0.05, nms_iou=cfg.train.nms_iou, show_progress=False)
    _, before = evaluate(model, state.criterion, val_loader, device, classes, eval_opts)
    chunk = 25
    start, steps = time.perf_counter(), 0
    while True:
        options = StepOptions(grad_clip=cfg.optim.grad_clip, max_steps=chunk, show_progress=False)
        stats, state.global_step = train_one_epoch(model, state.criterion, train_loader, state.optimizer,
                                                   state.schedule, device, steps // chunk + 1, options,
                                                   global_step=state.global_step)
        steps += chunk
        elapsed = time.perf_counter() - start
        print(f"step {steps}: loss {stats['loss']:.4f} ({elapsed / 60:.1f} min)", flush=True)
        if (args.steps and steps >= args.steps) or (not args.steps and elapsed >= args.minutes * 60):
            break
    _, after = evaluate(model, state.criterion, val_loader, device, classes, eval_opts)
    print(after.format_tables(per_class=True))
    before50, after50 = before.map["0.50"], after.map["0.50"]
    print(f"OBB mAP50 on the training images: {after50:.4f} (before training {before50:.4f}; "
          f"ratio {after50 / max(before50, 1e-9):.1f}x); mAP50-95 {after.map['50-95']:.4f}; "
          f"{steps} steps in {(time.perf_counter() - start) / 60:.1f} min; target mAP50 >= 0.9: "
          f"{'PASS' if after50 >= 0.9 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
