"""Calibrate a checkpoint's box width (and length) factors on labelled images and store them in it.

    python tools/calibrate.py CKPT --images DIR --gt DIR --vehicle-width W [--gt-format obb_json] [--length]
                              [--dataset NAME] [--out DIR] [--device cpu] [--score 0.05]

Runs the checkpoint over the images with factors 1.0 (whatever calibration it already holds is not applied,
so factors never compound), evaluates the detections against the ground truth at every width factor of a
fine grid (0.80..1.20 by 0.005, the best refined by 0.001; ``--length``: the long-side factor too), prints
the table (one row per factor: mAP at 50%..95% and 50-95) and stores the factors maximising mAP50-95 in the
checkpoint with the data set name, the date and the table. ``infer.py`` and ``obbdet.Predictor`` then apply
them unless told otherwise (``--width-scale``). ``--out`` receives the detections (``detections/``), the
table (``results.json``, ``results.txt``) and the calibration curve (``calibration.png``).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from obbdet.eval.loading import parse_image_size, parse_renames  # noqa: E402
from obbdet.eval.pascalvoc import argument_type  # noqa: E402

EXIT_OK = 0
EXIT_IMAGE_FAILURES = 1  # stored, but some images could not be processed or the table not written
EXIT_SETUP_ERROR = 2  # nothing stored

GT_FORMATS = ("obb_json", "dota", "xywh", "xyrb", "yolo_obb")

EPILOG = """\
ground truth: one file per image, matched to the images (searched recursively) by file stem
  (P0003.png <-> P0003.txt). Images without a ground-truth file are skipped, ground-truth files without an
  image are ignored (both warned about). Only the checkpoint's classes are evaluated (--classes: a subset).
vehicle_width: car width in the images' pixels, as for infer.py (-1: the images are at the training scale).
  Calibrate at the scale and score threshold you deploy with: the factors depend on both.
examples:
  python tools/calibrate.py runs/x/best.pt --images val/images --gt val/labels --vehicle-width 14 \\
      --dataset my-val-2025
  python tools/calibrate.py best.pt --images dota/images --gt dota/labelTxt --gt-format dota \\
      --rename small-vehicle=car --classes car --vehicle-width 12 --length --device cpu
exit codes: 0 factors stored; 1 factors stored, but some images could not be processed (listed) or the
  table and plot could not be written;
  2 nothing stored (missing folder, not an obbdet checkpoint, no images, no ground truth matching them,
  unwritable output or checkpoint, bad arguments)."""


def _vehicle_width(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != -1 and not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be > 0 or -1 (no rescaling), got {text}")
    return value


def _range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}") from None
    if not 0 < low <= 1.0 <= high < float("inf") or low == high:
        raise argparse.ArgumentTypeError(f"expected 0 < LOW <= 1 <= HIGH, got {text!r}")
    return low, high


def _step(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 0.1:
        raise argparse.ArgumentTypeError(f"expected a step in (0, 0.1], got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from obbdet.calibration import SWEEP_LENGTH_RANGE, SWEEP_STEP, SWEEP_WIDTH_RANGE

    p = argparse.ArgumentParser(prog="calibrate.py", description=__doc__.split("\n")[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="obbdet checkpoint (.pt); the factors are written into it")
    p.add_argument("--images", type=Path, required=True, help="folder of images (searched recursively)")
    p.add_argument("--gt", type=Path, required=True, help="folder of ground-truth files, one per image")
    p.add_argument("--gt-format", default="obb_json", choices=GT_FORMATS, help="default: obb_json")
    p.add_argument("--vehicle-width", type=_vehicle_width, required=True, metavar="W",
                   help="car width in image pixels, or -1 (see below)")
    p.add_argument("--dataset", default=None, metavar="NAME", help="name of the data, stored with the factors")
    p.add_argument("--out", type=Path, default=None,
                   help="detections, table and plot go here (default: <images>_calibration)")
    p.add_argument("--length", action="store_true", help="search the long-side (length) factor too")
    p.add_argument("--width-range", type=_range, default=SWEEP_WIDTH_RANGE, metavar="LOW,HIGH",
                   help=f"width factors swept (default {SWEEP_WIDTH_RANGE[0]:g},{SWEEP_WIDTH_RANGE[1]:g})")
    p.add_argument("--length-range", type=_range, default=SWEEP_LENGTH_RANGE, metavar="LOW,HIGH",
                   help=f"with --length: length factors searched (default "
                        f"{SWEEP_LENGTH_RANGE[0]:g},{SWEEP_LENGTH_RANGE[1]:g})")
    p.add_argument("--step", type=_step, default=SWEEP_STEP,
                   help=f"grid step of the sweep, one table row each (default {SWEEP_STEP:g})")
    p.add_argument("--classes", default=None, metavar="A,B,...",
                   help="evaluate only these classes (default: every checkpoint class in the ground truth)")
    p.add_argument("--rename", type=argument_type(parse_renames), default={}, metavar="SRC=DST,...",
                   help="rename ground-truth classes to the checkpoint's (e.g. small-vehicle=car for DOTA)")
    p.add_argument("--imgsize", type=argument_type(parse_image_size), default=None, metavar="W,H",
                   help="image size for yolo_obb ground truth")
    p.add_argument("--score", type=float, default=0.05, help="score threshold (default 0.05, as infer.py)")
    tiling = p.add_mutually_exclusive_group()
    tiling.add_argument("--tile", type=int, default=768, help="tile side in network pixels (default 768)")
    tiling.add_argument("--whole", action="store_true", help="one forward pass per whole (rescaled) image")
    p.add_argument("--overlap", type=int, default=128, help="minimum tile overlap in network pixels (default 128)")
    p.add_argument("--batch", type=int, default=4, help="tiles per forward pass (default 4)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: torch's choice)")
    p.add_argument("--no-plot", action="store_true", help="do not write calibration.png")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


class SetupError(Exception):
    """Something that stops the run before anything is stored (one line)."""


def _check_folder(folder: Path, what: str) -> Path:
    if not folder.exists():
        raise SetupError(f"{what} folder {folder} not found")
    if not folder.is_dir():
        raise SetupError(f"{what} path {folder} is not a folder")
    return folder


def _load_gt(args, class_names: list[str]):
    """Ground truth by image key; malformed files and format mistakes become one-line setup errors."""
    from obbdet.eval.errors import EvalInputError, WarningLog
    from obbdet.eval.loading import load_folder, rename_classes

    warnings = WarningLog()
    try:
        gt, _ = load_folder(args.gt, args.gt_format, detections=False, warnings=warnings, image_size=args.imgsize,
                            class_names=class_names if args.gt_format == "yolo_obb" else None)
    except EvalInputError as exc:
        raise SetupError(str(exc)) from None
    return rename_classes(gt, args.rename), warnings.lines()


def _match(images: list[Path], gt: dict) -> tuple[dict, list[Path]]:
    """``{key: image}`` for images with a ground-truth file (key = stem), and the images without one."""
    matched: dict[str, Path] = {}
    unmatched = []
    for path in images:
        key = path.stem
        if key not in gt:
            unmatched.append(path)
        elif key in matched:
            raise SetupError(f"two images for the ground truth of {key!r}: {matched[key]} and {path} "
                             f"(ground truth is matched to images by file stem)")
        else:
            matched[key] = path
    return matched, unmatched


def _classes(args, class_names: list[str], gt: dict) -> list[str]:
    in_gt = {c for labels in gt.values() for c in labels.classes}
    if args.classes:
        wanted = [c.strip() for c in args.classes.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in class_names]
        if unknown:
            raise SetupError(f"--classes: {', '.join(unknown)} not in the checkpoint's classes "
                             f"({', '.join(class_names)})")
        return wanted
    classes = [c for c in class_names if c in in_gt]
    if not classes:
        raise SetupError(f"the ground truth's classes ({', '.join(sorted(in_gt)) or 'none'}) include none of the "
                         f"checkpoint's ({', '.join(class_names)}); map them with --rename SRC=DST")
    return classes


def _example(paths) -> str:
    paths = list(paths)
    return f"{len(paths)} (e.g. {paths[0]})" if paths else "0"


def _prepare(args):
    """Every check that can fail before inference; returns what the run needs."""
    from obbdet.checkpoint import CheckpointError
    from obbdet.calibration import check_calibration_target
    from obbdet.imageio import discover_images
    from obbdet.inference import InferenceSetupError, Predictor
    from obbdet.inference.runner import check_output_dir

    images_dir = _check_folder(args.images, "images")
    _check_folder(args.gt, "ground-truth")
    if not args.checkpoint.is_file():
        raise SetupError(f"checkpoint {args.checkpoint} not found")
    try:
        # factors 1.0 given explicitly: a calibration already stored must not be applied to what is measured
        predictor = Predictor.from_checkpoint(args.checkpoint, args.device, score_threshold=args.score,
                                              tile=args.tile, overlap=args.overlap, whole=args.whole,
                                              batch=args.batch, width_scale=1.0, length_scale=1.0)
        scale = predictor.scale_for(args.vehicle_width)
        check_calibration_target(args.checkpoint)
    except (InferenceSetupError, CheckpointError, PermissionError) as exc:
        raise SetupError(str(exc).splitlines()[0]) from None
    except ValueError as exc:  # the vehicle width against the checkpoint's training width
        raise SetupError(f"{args.checkpoint}: {exc}") from None
    resolved = images_dir.resolve()
    out_dir = args.out if args.out is not None else resolved.parent / f"{resolved.name}_calibration"
    images = discover_images(images_dir, exclude=[out_dir])
    if not images:
        raise SetupError(f"no images found under {images_dir}")
    gt, gt_warnings = _load_gt(args, predictor.class_names)
    matched, unmatched = _match(images, gt)
    if not matched:
        raise SetupError(f"none of the {len(images)} images under {images_dir} has a ground-truth file in "
                         f"{args.gt} ({args.gt_format}; matched by file stem, e.g. {images[0].stem})")
    classes = _classes(args, predictor.class_names, {k: gt[k] for k in matched})
    warnings = list(gt_warnings)
    if unmatched:
        warnings.append(f"images without ground truth skipped: {_example(unmatched)}")
    orphans = sorted(k for k in gt if k not in matched)
    if orphans:
        warnings.append(f"ground-truth files without an image ignored: {_example(orphans)}")
    try:
        check_output_dir(out_dir)
    except InferenceSetupError as exc:
        raise SetupError(str(exc)) from None
    return predictor, scale, images_dir, matched, {k: gt[k] for k in matched}, classes, out_dir, warnings


def _detect(predictor, scale, root: Path, matched: dict, out_dir: Path, progress: bool):
    """Run the predictor over the matched images (progress bar) and read back what it wrote, by image key."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from obbdet.formats import read_obb_json
    from obbdet.inference.runner import output_paths, run_inference

    det_dir = out_dir / "detections"
    images = list(matched.values())
    with logging_redirect_tqdm():
        summary = run_inference(predictor, images, root, det_dir, scale=scale, progress=progress)
    targets, _ = output_paths(images, root, det_dir)
    failed = {Path(f.path) for f in summary.failures}
    det, sources = {}, {}
    for key, path in matched.items():
        if path in failed or path not in targets:
            continue
        det[key] = read_obb_json(targets[path], detections=True)
        sources[key] = targets[path]
    return det, sources, summary


def _run(args) -> int:
    from obbdet.calibration import calibrate_checkpoint
    from obbdet.eval.report import format_calibration, format_map_table, plot_calibration, write_results

    predictor, scale, root, matched, gt, classes, out_dir, warnings = _prepare(args)
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    print(f"{len(matched)} image(s) with ground truth under {root}; classes {', '.join(classes)}; "
          f"factors 1.0 while measuring; score >= {args.score:g}; output {out_dir}")
    det, det_sources, summary = _detect(predictor, scale, root, matched, out_dir, not args.quiet)
    for failure in summary.failures:
        print(f"warning: skipped {failure}", file=sys.stderr)
    if not det:
        raise SetupError("no image could be processed; nothing stored")
    gt = {k: v for k, v in gt.items() if k in det}  # a failed image's objects are not misses
    result, stored = calibrate_checkpoint(
        args.checkpoint, gt, det, dataset=args.dataset, search_length=args.length, width_range=args.width_range,
        length_range=args.length_range, step=args.step, classes=classes, coco_summary=False,
        det_sources=det_sources)
    for line in result.warnings:
        print(f"warning: {line}", file=sys.stderr)
    text = format_map_table(result) + "\n\n" + format_calibration(result)
    print(text)
    if result.calibration["summary"] <= 0:  # stored anyway: 1.0 changes no box, and the table shows why
        why = "no detections" if result.counts["det"] == 0 else "no detection matches the ground truth"
        print(f"warning: {why}: mAP is 0 at every factor, so the stored factors (1.0) say nothing about box "
              f"sizes (try a lower --score or check --vehicle-width)", file=sys.stderr)
    length = "" if stored["length_scale"] is None else f", length_scale {stored['length_scale']:g}"
    print(f"stored in {args.checkpoint}: width_scale {stored['width_scale']:g}{length}"
          f"{'' if args.dataset is None else f' (dataset {args.dataset})'}, {stored['date']}")
    try:
        write_results(result, out_dir, text)
        if not args.no_plot:
            plot_calibration(result, out_dir)
    except OSError as exc:  # the factors are stored already; only the copies in --out are missing
        print(f"calibrate.py: error: cannot write the table or plot to {out_dir}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_IMAGE_FAILURES
    print(f"table, plot and detections in {out_dir}")
    return EXIT_IMAGE_FAILURES if summary.failures else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see ``--help``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), message already printed
        return int(exc.code) if isinstance(exc.code, int) else EXIT_SETUP_ERROR
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    from obbdet.eval.errors import EvalInputError

    try:
        return _run(args)
    except (SetupError, EvalInputError) as exc:
        print(f"calibrate.py: error: {exc}", file=sys.stderr)
        return EXIT_SETUP_ERROR
    except OSError as exc:  # the checkpoint could not be rewritten (it is replaced atomically: still intact)
        print(f"calibrate.py: error: cannot store the calibration in {args.checkpoint}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_SETUP_ERROR


if __name__ == "__main__":
    sys.exit(main())
