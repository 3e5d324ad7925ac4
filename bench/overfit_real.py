"""Can the pipeline fit real aerial imagery? Train on crops of the DOTA fixtures, evaluate on the same images.

    python bench/overfit_real.py [--fixtures ../shared/fixtures/dota] [--steps 800] [--vehicle-width 16] [key=value ...]

The three DOTA fixture images (small-vehicle -> car, large-vehicle -> truck; other classes dropped) go through
the dataset registry as three datasets, one scene each (their ground sample distances differ: the fixtures'
cars are 9.6 to 18 px wide natively), with ``data.vehicle_width=--vehicle-width`` (16 by default, the width of
the quickstart's synthetic cars): the registry measures each one's median car width and resamples its image to
the common width, as it does for any merged datasets. Training takes random ``model.image_size`` crops with
the usual augmentation for ``--steps`` optimizer steps (the run config's optimizer, warmup and cosine schedule
spread over those steps, with its AMP and channels_last settings; ``--minutes`` stops early). Then the
validation path of train.py (the inference pipeline: tiles at the training scale, cross-tile merge) predicts
each image and the OBB mAP table on those very images is printed, with the ratio of the final to the initial
mAP50 as the baseline comparison, and one line of mAP per inference setting (plain NMS, box voting, voting
over the eight flips and quarter turns). The target is mAP50 >= 0.9: a pipeline that cannot memorize three images
has a bug.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# inference setting -> (box-voting IoU, test-time augmentation), as bench/quality.py's
INFERENCE = {"nms": (0.0, "none"), "vote": (0.6, "none"), "d8+vote": (0.6, "d8")}
DEFAULT_FIXTURES = Path(os.environ.get("OBBDET_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", default=str(DEFAULT_FIXTURES / "dota"), help="DOTA folder (images, labelTxt)")
    parser.add_argument("--steps", type=int, default=800, help="optimizer steps (the LR schedule spans them)")
    parser.add_argument("--minutes", type=float, default=0.0, help="stop early after this wall time (0: never)")
    parser.add_argument("--vehicle-width", type=float, default=16.0,
                        help="each image is rescaled so that its median car is this wide (px)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default="", help="keep the rescaled images, their labels (obb_json) and the "
                        "trained checkpoint in this folder, to look at with infer.py and tools/draw_obb.py")
    parser.add_argument("overrides", nargs="*", help="run config overrides, section.field=value")
    return parser.parse_intermixed_args(argv)


def registry_config(fixtures: Path, work_dir: Path) -> Path:
    """A registry YAML with one DOTA dataset per fixture scene (each scene its own folder of links), all for
    training, car widths measured from the labels."""
    import yaml

    datasets = []
    for image in sorted((fixtures / "images").glob("*.png")):
        root = work_dir / "scenes" / image.stem
        for sub, path in (("images", image), ("labelTxt", fixtures / "labelTxt" / f"{image.stem}.txt")):
            (root / sub).mkdir(parents=True, exist_ok=True)
            link = root / sub / path.name
            if not link.exists():
                link.symlink_to(path.resolve())
        datasets.append({"name": image.stem, "type": "dota", "root": str(root), "role": "train",
                         "class_map": {"small-vehicle": "car", "large-vehicle": "truck", "*": "ignore"}})
    path = work_dir / "registry.yaml"
    path.write_text(yaml.safe_dump({"seed": 0, "classes": ["car", "truck"], "samples_per_epoch": 3,
                                    "cache": False, "datasets": datasets}))
    return path


def build(args, work_dir: Path):
    import torch

    from obbdet import config as config_mod, training
    from obbdet.augment import build_train_transform, build_val_transform
    from obbdet.device import resolve_device
    from obbdet.data import DetectionDataset, StrideCollate
    from obbdet.distributed import DistInfo

    # one "epoch" of --steps steps: the cosine schedule and its warmup span the whole run
    config = registry_config(Path(args.fixtures), work_dir)
    cfg = config_mod.resolve_config(None, ["model.image_size=384", "data.batch_size=4", "optim.ema=false",
                                           "train.epochs=1", "schedule.warmup_epochs=0.05",
                                           f"data.registry={config}", f"data.vehicle_width={args.vehicle_width}",
                                           *args.overrides])
    sources = training.build_sources(cfg)
    samples, classes = sources.train, sources.class_names
    device = resolve_device(cfg.train.device)
    training.setup_threads(cfg.train.threads)
    training.seed_everything(args.seed)
    model = training.build_model(cfg, classes, False, device, DistInfo())
    stride = model.stride
    jitter = 1.0 + cfg.data.scale_jitter
    train_tf = build_train_transform(cfg.model.image_size, rotate_prob=cfg.data.rotate_prob,
                                     scale_range=(1.0 / jitter, jitter), object_focus_prob=0.7, seed=args.seed)
    val_tf = build_val_transform(cfg.model.image_size)  # the validation loss only; mAP runs the inference path
    train_ds = DetectionDataset(samples, train_tf)
    sampler = torch.utils.data.RandomSampler(train_ds, replacement=True, num_samples=10**7)
    train_loader = torch.utils.data.DataLoader(train_ds, batch_size=cfg.data.batch_size, sampler=sampler,
                                               num_workers=1, collate_fn=StrideCollate(stride))
    val_loader = torch.utils.data.DataLoader(DetectionDataset(samples, val_tf), batch_size=1,
                                             collate_fn=StrideCollate(stride))
    state = training.build_train_state(cfg, model, args.steps, device, classes)
    return cfg, samples, classes, device, model, state, train_loader, val_loader


def main(argv=None) -> int:
    args = parse_args(argv)
    if not (Path(args.fixtures) / "images").is_dir():
        print(f"DOTA fixtures not found at {args.fixtures} (pass --fixtures)", file=sys.stderr)
        return 2
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
        return run(args, Path(args.save).resolve())  # the registry resolves roots against its own folder
    with tempfile.TemporaryDirectory(prefix="obbdet-overfit-") as tmp:
        return run(args, Path(tmp))


def save_run(work_dir: Path, samples, classes, state, cfg) -> None:
    """Labels of the fixture images as obb_json (``labels/``) and the trained checkpoint (``overfit.pt``)."""
    from obbdet.checkpoint import save_checkpoint
    from obbdet.formats import write_obb_json
    from obbdet.structures import ImageLabels
    from obbdet.training import checkpoint_payload

    (work_dir / "labels").mkdir(exist_ok=True)
    for sample in samples:
        name = Path(sample.image_path)
        labels = ImageLabels(image=name.name, width=sample.width, height=sample.height,
                             boxes=sample.boxes.astype("float64"), classes=[classes[i] for i in sample.labels],
                             difficult=sample.difficult.copy())
        write_obb_json(work_dir / "labels" / (name.stem + ".json"), labels)
    save_checkpoint(checkpoint_payload(state, cfg, "overfit_real", 0, None), work_dir / "overfit.pt")
    print(f"saved {work_dir}/labels and {work_dir}/overfit.pt; run infer.py on a scene with its car width from "
          f"the registry table above, e.g. python infer.py {work_dir}/scenes/P1888/images <width> "
          f"{work_dir}/overfit.pt obb --draw")


def run(args, work_dir: Path) -> int:
    from dataclasses import replace

    from obbdet import training
    from obbdet.engine import StepOptions, evaluate, train_one_epoch

    cfg, samples, classes, device, model, state, train_loader, val_loader = build(args, work_dir)
    n_obj = sum(len(s) for s in samples)
    print(f"{len(samples)} DOTA images, {n_obj} objects ({classes}), cars resampled to {args.vehicle_width:g} px, "
          f"{cfg.model.variant} @ {cfg.model.image_size}px crops, batch {cfg.data.batch_size}, device {device}")
    amp = training.amp_dtype_for(device, cfg.optim.amp)
    eval_opts = replace(training.eval_options(cfg, device, progress=False), score_threshold=0.05)
    dataset = training.validation_dataset(training.DataSources(samples, samples, classes, [len(samples)]))
    _, before = evaluate(model, state.criterion, val_loader, dataset, device, classes, eval_opts)
    chunk = 25
    start, steps = time.perf_counter(), 0
    while True:
        options = StepOptions(grad_clip=cfg.optim.grad_clip, max_steps=min(chunk, args.steps - steps),
                              amp_dtype=amp, channels_last=cfg.optim.channels_last, show_progress=False)
        stats, state.global_step = train_one_epoch(model, state.criterion, train_loader, state.optimizer,
                                                   state.schedule, device, steps // chunk + 1, options,
                                                   width_tracker=state.width, global_step=state.global_step)
        steps += options.max_steps
        elapsed = time.perf_counter() - start
        print(f"step {steps}: loss {stats['loss']:.4f}, lr {state.schedule.lr:.2e} ({elapsed / 60:.1f} min)",
              flush=True)
        if steps >= args.steps or (args.minutes and elapsed >= args.minutes * 60):
            break
    _, after = evaluate(model, state.criterion, val_loader, dataset, device, classes, eval_opts)
    print(after.format_tables(per_class=True))
    print(f"the trained model under each inference setting ({' / '.join(INFERENCE)}):")
    for name, (vote_iou, tta) in INFERENCE.items():
        _, found = evaluate(model, state.criterion, val_loader, dataset, device, classes,
                            replace(eval_opts, vote_iou=vote_iou, tta=tta))
        print(f"  {name:<8} mAP " + "  ".join(f"{t} {found.map[t]:.4f}" for t in ("0.50", "0.75", "0.85", "0.90",
                                                                                   "50-95")), flush=True)
    before50, after50 = before.map["0.50"], after.map["0.50"]
    ratio = f"ratio {after50 / before50:.1f}x" if before50 > 0 else "no detections before"
    print(f"OBB mAP50 on the training images: {after50:.4f} (before training {before50:.4f}, {ratio}); "
          f"mAP50-95 {after.map['50-95']:.4f}; {steps} steps in {(time.perf_counter() - start) / 60:.1f} min; "
          f"target mAP50 >= 0.9: {'PASS' if after50 >= 0.9 else 'FAIL'}")
    if args.save:
        save_run(work_dir, samples, classes, state, cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
