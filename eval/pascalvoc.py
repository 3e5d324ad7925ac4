"""``python -m eval.pascalvoc``: OBB mAP per IoU threshold, per-class tables, COCO-style summary, calibration.

Flags follow Object-Detection-Metrics' ``pascalvoc.py`` (``-gt -det -gtformat -detformat -t -gtcoords
-detcoords -imgsize -sp -np``) plus OBB-specific ones. Never prompts, never deletes.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from .ap import AP_METHODS
from .errors import (
    EXIT_CODES_HELP, EXIT_NOT_FOUND, EXIT_OK, EXIT_OUTPUT, EXIT_USAGE, EvalInputError, WarningLog, exit_with, run_cli,
)
from .loading import parse_image_size, parse_renames
from .rules import COMPAT_MODES

FORMATS = ("obb_json", "dota", "dota_task1", "xywh", "xyrb", "yolo_obb")

EPILOG = f"""matching (default): per class and IoU threshold t, detections of all images sorted by score (stable:
  ties keep file-name order, then line order); each takes the GT of its image with the highest IoU (first on
  ties) whether or not already matched: IoU >= t -> TP if that GT is unmatched and not difficult, ignored if it
  is difficult, FP if already matched; else FP. Exact rotated IoU in float64. mAP = mean AP over classes with
  ground truth; 50-95 = mean mAP over np.linspace(0.5, 0.95, 10). Detections of images without a GT file
  and classes only in detections are false positives (warned about).

formats:
  obb_json    one JSON file per image (the project's interchange format)
  dota        DOTA label files: x1 y1 .. x4 y4 class difficult (detections: class score)
  dota_task1  detections only: DOTA devkit Task1_<class>.txt files (image_id score x1 y1 .. x4 y4)
  xywh, xyrb  Object-Detection-Metrics text: GT 'cls x y w h', detections 'cls score x y w h'
              (xyrb: left top right bottom); -gtcoords/-detcoords rel needs -imgsize
  yolo_obb    ultralytics OBB: class_index + 8 normalized corner coordinates (needs --classes and
              -imgsize, or width/height in obb_json ground truth)

examples:
  python -m eval.pascalvoc -gt labels/ -det detections/
  python -m eval.pascalvoc -gt gt/ -det det/ -gtformat dota -detformat dota --compat dota -t 0.5
  python -m eval.pascalvoc -gt gt/ -det det/ --width-scales 1.0,0.938,0.923 --calibrate -sp results/
  python -m eval.pascalvoc -gt gt/ -det det/ --calibrate --write-checkpoint best.pt --dataset my-val
    (det/ written by `infer.py ... --width-scale 1 --length-scale 1`; tools/calibrate.py does both steps)

{EXIT_CODES_HELP}"""


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not (v > 0 and v < float("inf")) for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def argument_type(parse):
    """An argparse ``type`` from a parser that raises ValueError: its message becomes the usage error."""
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__  # argparse names the type in its "invalid <name> value" fallback
    return convert


def _range(text: str) -> tuple[float, float]:
    values = _float_list(text)
    if len(values) != 2 or values[0] >= values[1]:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH with LOW < HIGH, got {text!r}")
    return values[0], values[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.pascalvoc", description=__doc__.split("\n")[0].split(": ", 1)[1],
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    io = parser.add_argument_group("inputs")
    io.add_argument("-gt", "--gtfolder", required=True, help="folder of ground-truth files")
    io.add_argument("-det", "--detfolder", required=True, help="folder of detection files")
    io.add_argument("-gtformat", "--gtformat", default="obb_json", choices=FORMATS, help="default: obb_json")
    io.add_argument("-detformat", "--detformat", default="obb_json", choices=FORMATS, help="default: obb_json")
    io.add_argument("-gtcoords", "--gtcoords", default="abs", choices=("abs", "rel"),
                    help="xywh/xyrb: absolute pixels or relative (cx cy w h normalized); default abs")
    io.add_argument("-detcoords", "--detcoords", default="abs", choices=("abs", "rel"))
    io.add_argument("-imgsize", "--imgsize", type=argument_type(parse_image_size), default=None, metavar="W,H",
                    help="image size for relative coordinates and yolo_obb")
    io.add_argument("--classes", default=None, metavar="A,B,...",
                    help="evaluate only these classes, in this order (also yolo_obb's class index order)")
    io.add_argument("--rename", type=argument_type(parse_renames), default={}, metavar="SRC=DST,...",
                    help="rename ground-truth classes, e.g. small-vehicle=car,large-vehicle=truck to score a "
                         "detector with unified classes on DOTA labels")
    rules = parser.add_argument_group("rules")
    rules.add_argument("-t", "--threshold", type=float, default=None,
                       help="evaluate one IoU threshold (instead of --iou-thresholds)")
    rules.add_argument("--iou-thresholds", default=None, metavar="SPEC",
                       help="'start:stop:step' or 'a,b,c'; default 0.50:0.95:0.05")
    rules.add_argument("--ap", choices=AP_METHODS, default=None,
                       help="voc: every point (default); voc07: 11 point; coco: 101 point")
    rules.add_argument("--compat", choices=COMPAT_MODES, default=None,
                       help="odm: Object-Detection-Metrics (+1 px box IoU); dota: DOTA devkit (IoU > t, 11 point, "
                            "all classes); coco: pycocotools (best unmatched GT, 101 point, maxDets)")
    rules.add_argument("--max-dets", type=_int_list, default=None, metavar="K,...",
                       help="maxDets of the COCO-style summary (default 100,300,1000)")
    rules.add_argument("--strict", action="store_true",
                       help="treat warnings (e.g. classes only in detections) as errors (exit code 4)")
    scale = parser.add_argument_group("width/length scaling")
    scale.add_argument("--width-scales", type=_float_list, default=[1.0], metavar="F,...",
                       help="factors for the detections' short side, one table row each (first = reference)")
    scale.add_argument("--length-scales", type=_float_list, default=None, metavar="F,...",
                       help="factors for the long side (rows: every width x length combination)")
    scale.add_argument("--calibrate", action="store_true", help="search the width factor maximising mAP50-95")
    scale.add_argument("--calibrate-length", action="store_true", help="with --calibrate: search the length too")
    scale.add_argument("--calibrate-range", type=_range, default=None, metavar="LOW,HIGH",
                       help="width factors searched (default 0.70,1.10)")
    scale.add_argument("--write-checkpoint", default=None, metavar="CKPT",
                       help="with --calibrate: store the factors found (with the table, --dataset and the date) "
                            "in this obbdet checkpoint, which infer.py then applies. The detections must have been "
                            "written by infer.py with --width-scale 1 (and --length-scale 1): factors measured on "
                            "already calibrated boxes would compound. A missing checkpoint exits 3, another "
                            "file 2, an unwritable one 5")
    scale.add_argument("--dataset", default=None, metavar="NAME",
                       help="with --write-checkpoint: name of the evaluated data, stored with the factors")
    out = parser.add_argument_group("output")
    out.add_argument("-sp", "--savepath", default=None, help="write results.json, results.txt and plots here")
    out.add_argument("-np", "--noplot", action="store_true", help="no PNG plots (with --savepath)")
    out.add_argument("--no-per-class", action="store_true", help="do not print the per-class tables")
    out.add_argument("-q", "--quiet", action="store_true", help="print only warnings and the SUMMARY line")
    return parser


class _WarningCounter(logging.Handler):
    """Routes library warnings (e.g. zero-area polygons) into the run's warning log."""

    def __init__(self, warnings: WarningLog):
        super().__init__(logging.WARNING)
        self.warnings = warnings

    def emit(self, record: logging.LogRecord) -> None:
        # one line per kind of message (its template), with the first occurrence and a count
        self.warnings.add(f"log-{record.name}-{record.msg}", record.getMessage())


def _run(args) -> int:
    from .api import evaluate
    from .calibration import WIDTH_RANGE
    from .loading import load_folder, rename_classes
    from .report import format_tables, summary_line

    start = time.perf_counter()
    if args.threshold is not None and args.iou_thresholds is not None:
        raise EvalInputError("give either -t/--threshold or --iou-thresholds, not both", EXIT_USAGE)
    if args.calibrate_length and not args.calibrate:
        raise EvalInputError("--calibrate-length needs --calibrate", EXIT_USAGE)
    if args.write_checkpoint is not None and not args.calibrate:
        raise EvalInputError("--write-checkpoint needs --calibrate", EXIT_USAGE)
    if args.dataset is not None and args.write_checkpoint is None:
        raise EvalInputError("--dataset needs --write-checkpoint", EXIT_USAGE)
    if args.write_checkpoint is not None:
        _check_checkpoint(args.write_checkpoint)
    thresholds = args.threshold if args.threshold is not None else args.iou_thresholds
    if args.savepath:
        _check_savepath(Path(args.savepath), {"-gt": args.gtfolder, "-det": args.detfolder})
        _prepare_output(Path(args.savepath))
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    warnings = WarningLog(strict=args.strict)
    handler = _WarningCounter(warnings)
    library_logger = logging.getLogger("obbdet")
    library_logger.addHandler(handler)
    propagate, library_logger.propagate = library_logger.propagate, False  # counted, printed once below
    try:
        gt, gt_sources = load_folder(args.gtfolder, args.gtformat, detections=False, warnings=warnings,
                                     coords=args.gtcoords, image_size=args.imgsize, class_names=classes)
        gt = rename_classes(gt, args.rename)
        sizes = {k: (v.width, v.height) for k, v in gt.items() if v.width and v.height}
        det, det_sources = load_folder(args.detfolder, args.detformat, detections=True, warnings=warnings,
                                       coords=args.detcoords, image_size=args.imgsize, image_sizes=sizes,
                                       class_names=classes)
    finally:
        library_logger.removeHandler(handler)
        library_logger.propagate = propagate
    result = evaluate(gt, det, iou_thresholds=thresholds, ap_method=args.ap, compat=args.compat,
                      width_scales=args.width_scales, length_scales=args.length_scales, classes=classes,
                      max_dets=args.max_dets, calibrate=args.calibrate, calibrate_length=args.calibrate_length,
                      calibrate_width_range=args.calibrate_range or WIDTH_RANGE,
                      keep_curves=bool(args.savepath) and not args.noplot, strict=args.strict,
                      gt_sources=gt_sources, det_sources=det_sources)
    result.warnings = warnings.lines() + result.warnings
    for line in result.warnings:
        print(f"warning: {line}", file=sys.stderr)
    tables = format_tables(result, per_class=not args.no_per_class)
    elapsed = time.perf_counter() - start
    timing = f"Evaluation time: {elapsed:.3f} s ({result.counts['images']} images, {result.counts['gt']} GT, " \
             f"{result.counts['det']} detections, {len(result.iou_thresholds)} thresholds, " \
             f"{len(result.settings)} setting(s))"
    if not args.quiet:
        print(tables)
        print()
    print(summary_line(result))
    if not args.quiet:
        print(timing)
    if args.savepath:
        _save(result, Path(args.savepath), tables + "\n\n" + summary_line(result) + "\n" + timing, args.noplot)
    if args.write_checkpoint is not None:
        _store(result, args.write_checkpoint, args.dataset)
    return EXIT_OK


def _check_checkpoint(path: str) -> None:
    """Fail before evaluating when ``--write-checkpoint`` is not a writable obbdet checkpoint.

    Checkpoints are torch files: this flag is the only path of the evaluation that imports torch."""
    from obbdet.calibration import check_calibration_target
    from obbdet.checkpoint import CheckpointError

    if not Path(path).is_file():
        raise EvalInputError(f"{path}: --write-checkpoint file not found", EXIT_NOT_FOUND)
    try:
        check_calibration_target(path)
    except CheckpointError as exc:
        raise EvalInputError(str(exc).splitlines()[0], EXIT_USAGE) from None
    except OSError as exc:
        raise EvalInputError(str(exc).splitlines()[0], EXIT_OUTPUT) from None


def _store(result, path: str, dataset: str | None) -> None:
    """The factors of ``--calibrate`` into the checkpoint, through what ``tools/calibrate.py`` uses."""
    from obbdet.calibration import store_calibration

    try:
        stored = store_calibration(path, result, dataset=dataset)
    except OSError as exc:
        raise EvalInputError(f"{path}: cannot store the calibration ({exc.strerror or exc})", EXIT_OUTPUT) from None
    length = "" if stored["length_scale"] is None else f", length_scale {stored['length_scale']:g}"
    print(f"stored in {path}: width_scale {stored['width_scale']:g}{length}"
          f"{'' if dataset is None else f' (dataset {dataset})'}, {stored['date']}")


def _check_savepath(folder: Path, inputs: dict) -> None:
    """Refuse a ``--savepath`` that is an input folder or inside one: results.json there would be read as a
    label file by the next evaluation of that folder (and fail it, or count as an image)."""
    target = os.path.realpath(folder)
    for flag, source in inputs.items():
        source = os.path.realpath(source)
        if target == source or os.path.commonpath([source, target]) == source:
            where = "is" if target == source else "lies inside"
            raise EvalInputError(f"{folder}: --savepath {where} the {flag} folder {inputs[flag]}; choose a folder "
                                 f"outside the inputs", EXIT_USAGE)


def _prepare_output(folder: Path) -> None:
    """Fail before evaluating when the output folder cannot be created."""
    if folder.exists() and not folder.is_dir():
        raise EvalInputError(f"{folder}: --savepath exists and is not a folder", EXIT_OUTPUT)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvalInputError(f"{folder}: cannot create the --savepath folder ({exc.strerror or exc})",
                             EXIT_OUTPUT) from None


def _save(result, folder: Path, text: str, no_plot: bool) -> None:
    from .report import plot_calibration, plot_pr_curves, write_results

    try:
        write_results(result, folder, text)
        if not no_plot:
            plot_pr_curves(result, folder)
            plot_calibration(result, folder)
    except OSError as exc:
        raise EvalInputError(f"{folder}: cannot write results ({exc.strerror or exc})", EXIT_OUTPUT) from None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see ``--help``)."""
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    exit_with(main)
