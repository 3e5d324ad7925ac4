"""``python -m eval.tracking``: multi-object tracking metrics of oriented boxes, plus angle jitter and heading.

HOTA, DetA, AssA, MOTA, MOTP, IDF1, ID switches and fragmentations are TrackEval's own metric code (HOTA, CLEAR,
Identity) fed with the exact rotated IoU of ``obbdet.iou`` (``eval.tracking_trackeval``); the angle jitter of
parked vehicles and the heading accuracy of moving ones are obbdet's (``eval.tracking_angles``). Inputs are
folders of per-frame obb_json files per sequence (``eval.tracking_data``). Python API::

    from eval.tracking import evaluate_tracking
    from eval.tracking_data import load_sequences
    result = evaluate_tracking(load_sequences(gt_dir, det_dir, warnings=WarningLog()))
    result.combined["all"]["HOTA"], result.per_sequence["seq000"]["classes"]["car"]["IDF1"]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EXIT_CODES_HELP, EXIT_OK, EXIT_OUTPUT, EvalInputError, WarningLog, exit_with, run_cli
from .loading import parse_renames
from .pascalvoc import _check_savepath, _prepare_output, argument_type
from .tracking_angles import AngleFigures, angle_figures
from .tracking_data import Sequence, load_sequences
from .tracking_trackeval import (
    class_data, combine_classes, combine_sequences, evaluate_classes, summary, trackeval_metrics,
)

EPILOG = f"""inputs:
  -gt and -det hold one folder per sequence of per-frame obb_json files, <root>/<seq>/<frame:06d>.json (frame =
  0-based frame number of the video). Objects need an integer track_id >= 1; ground truth may carry speed (px per
  frame), parked (true/false) and heading (degrees) for the angle figures, detections heading.

rules:
  class-wise, as TrackEval's MOTChallenge: only pairs of the same class match; similarity = exact rotated IoU.
  Ground truth marked difficult is a distractor: per frame, detections matched to it (Hungarian, IoU >= 0.5) are
  removed, and it counts neither as ground truth nor as a miss. ignore: true objects are dropped.
  A ground-truth frame without a detection file has no detections (warned, with the count); --common-frames
  evaluates only frames both sides have (detections run with --every N). A missing detection sequence folder
  is warned about and all its objects are misses. Detection frames without ground truth are not evaluated.
  "all classes" figures combine the classes detection-averaged (TrackEval cls_comb_det_av).

angle figures (same per-frame matches as CLEAR: IoU >= 0.5, previous frame's pairs first):
  jitter   per GT track with parked: true, std (population) in degrees of the frame-to-frame change of the
           matched detection's angle between successive matched frames, taken modulo 180 into (-90, 90]
           (modulo 90 into (-45, 45] for near-square tracks, GT length/width <= 1.1); median and mean over
           tracks with at least 2 changes (tracks with fewer: "short")
  heading  over matched track-frames of GT with speed >= 1 px/frame and a heading: share with the detection
           heading within 15 and 45 degrees (no detection heading = wrong), and their count

examples:
  python -m eval.tracking -gt synthetic/labels -det tracks/ -sp results/
  python -m eval.tracking -gt gt/ -det tracks/ --common-frames --classes car,truck

{EXIT_CODES_HELP}"""


@dataclass
class TrackingResult:
    """All numbers of one tracking evaluation (fractions in [0, 1], angles in degrees, counts).

    per_sequence: sequence -> ``{"all": figures, "classes": {class: figures}}`` (figures: see
    ``eval.tracking_trackeval.summary``); combined: the same over sequences plus ``"class_averaged"``;
    angles: sequence (and ``"COMBINED"``) -> ``AngleFigures.as_dict()``; frames: sequence ->
    ``{"evaluated", "left_out", "detections"}``.
    """

    sequences: list[str]
    classes: list[str]
    per_sequence: dict[str, dict]
    combined: dict
    angles: dict[str, dict]
    frames: dict[str, dict]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        from .tracking_report import RULES

        return {"rules": RULES, "sequences": self.sequences, "classes": self.classes, "frames": self.frames,
                "per_sequence": self.per_sequence, "combined": self.combined, "angles": self.angles,
                "warnings": self.warnings}


def _classes_of(sequences: list[Sequence]) -> list[str]:
    names = {c for seq in sequences for frame in seq.gt + seq.det for c in frame.classes}
    return sorted(names)


def evaluate_tracking(sequences: list[Sequence], classes: list[str] | None = None,
                      progress: bool = False) -> TrackingResult:
    """Tracking metrics and angle figures of ``sequences`` (``eval.tracking_data.load_sequences``).

    classes: the classes evaluated, in this order (default: every class in ground truth or detections, sorted).
    progress: a progress bar over the sequences (on a terminal).
    """
    from .tracking_report import COMBINED

    metrics = trackeval_metrics()
    classes = classes or _classes_of(sequences)
    raw, per_sequence, angles, frames = {}, {}, {}, {}
    total = AngleFigures()
    if progress:
        from tqdm import tqdm

        sequences = tqdm(sequences, desc="evaluating sequences", unit="sequence", disable=None, leave=False)
    for seq in sequences:
        per_class = {cls: class_data(seq, cls) for cls in classes}
        raw[seq.name] = evaluate_classes(per_class, metrics)
        per_sequence[seq.name] = {"all": summary(combine_classes(raw[seq.name], metrics)),
                                  "classes": {cls: summary(res) for cls, res in raw[seq.name].items()}}
        figures = angle_figures(seq, per_class)
        angles[seq.name] = figures.as_dict()
        total.merge(figures)
        frames[seq.name] = {"evaluated": len(seq.frames), "left_out": seq.left_out,
                            "detections": seq.has_detections}
    by_class = combine_sequences(raw, metrics, classes)
    combined = {"all": summary(combine_classes(by_class, metrics)),
                "class_averaged": summary(combine_classes(by_class, metrics, class_averaged=True)),
                "classes": {cls: summary(res) for cls, res in by_class.items()}}
    angles[COMBINED] = total.as_dict()
    return TrackingResult(list(per_sequence), classes, per_sequence, combined, angles, frames)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.tracking", description=__doc__.split("\n")[0].split(": ", 1)[1], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-gt", "--gtfolder", required=True, help="ground truth: one folder per sequence")
    parser.add_argument("-det", "--detfolder", required=True, help="tracked detections: same sequence folders")
    parser.add_argument("--classes", default=None, metavar="A,B,...",
                        help="evaluate only these classes, in this order (default: all, sorted)")
    parser.add_argument("--rename", type=argument_type(parse_renames), default={}, metavar="SRC=DST,...",
                        help="rename ground-truth classes onto the detector's")
    parser.add_argument("--common-frames", action="store_true",
                        help="evaluate only frames with both a ground-truth and a detection file")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors (exit code 4)")
    parser.add_argument("-sp", "--savepath", default=None, help="write results.json, results.txt and tracking.png")
    parser.add_argument("-np", "--noplot", action="store_true", help="no PNG plot (with --savepath)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only warnings and the SUMMARY line")
    return parser


def _run(args) -> int:
    from .report import write_results
    from .tracking_report import format_tables, plot_sequences, summary_line

    start = time.perf_counter()
    if args.savepath:
        _check_savepath(Path(args.savepath), {"-gt": args.gtfolder, "-det": args.detfolder})
        _prepare_output(Path(args.savepath))
    warnings = WarningLog(strict=args.strict)
    sequences = load_sequences(args.gtfolder, args.detfolder, warnings=warnings, common_frames=args.common_frames,
                               renames=args.rename)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    absent = [c for c in classes or [] if c not in _classes_of(sequences)]
    if absent:
        warnings.add("absent-classes", f"--classes: {', '.join(absent)} found in neither ground truth nor "
                     f"detections (evaluated as empty)")
    result = evaluate_tracking(sequences, classes, progress=True)
    result.warnings = warnings.lines()
    for line in result.warnings:
        print(f"warning: {line}", file=sys.stderr)
    tables = format_tables(result)
    timing = f"Evaluation time: {time.perf_counter() - start:.3f} s ({len(sequences)} sequences, " \
             f"{sum(len(s.frames) for s in sequences)} frames)"
    if not args.quiet:
        print(tables + "\n")
    print(summary_line(result))
    if not args.quiet:
        print(timing)
    if args.savepath:
        folder = Path(args.savepath)
        try:
            write_results(result, folder, f"{tables}\n\n{summary_line(result)}\n{timing}")
            if not args.noplot:
                plot_sequences(result, folder)
        except OSError as exc:
            raise EvalInputError(f"{folder}: cannot write results ({exc.strerror or exc})", EXIT_OUTPUT) from None
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see ``--help``)."""
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    exit_with(main)
