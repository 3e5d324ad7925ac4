"""Compare two label sets of the same images object by object: one-to-one matching and mIoU.

    python tools/compute_miou.py A_DIR B_DIR [--format obb_json] [--format-b F] [--any-class] [--out DIR]

A and B can be two annotators, ground truth and a model, or two models (e.g. tiled vs whole-image
inference). Objects are matched one-to-one per image (and per class unless ``--any-class``) maximising the
total IoU (Hungarian). Printed: matched pairs, unmatched objects in A and in B, the mIoU of matched pairs,
and for each direction (A -> B, B -> A) the mIoU over that side's objects (unmatched = 0), the IoU
histogram with its bulk (10th-90th percentile), tail and peak, and the objects whose best IoU is 0
(labels without any counterpart). ``--out`` writes ``miou.json``, ``miou.txt`` and ``miou_histogram.png``.

Exit codes: 0 success, 2 usage error, 3 missing folder, 4 malformed input, 5 output not writable.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from obbdet.eval.errors import EXIT_OK, EXIT_OUTPUT, EvalInputError, WarningLog  # noqa: E402

FORMATS = ("obb_json", "dota", "xywh", "xyrb", "yolo_obb")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="compute_miou.py", description=__doc__.split("\n")[0],
                                     epilog="exit codes: 0 success, 2 usage, 3 missing folder, 4 malformed input, "
                                            "5 output not writable",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="folder of label set A")
    parser.add_argument("b", help="folder of label set B")
    parser.add_argument("--format", default="obb_json", choices=FORMATS, help="format of A (and of B by default)")
    parser.add_argument("--format-b", default=None, choices=FORMATS, help="format of B if different")
    parser.add_argument("--scores", choices=("none", "a", "b", "both"), default="none",
                        help="which text-format sets are detection files with a score column (default none)")
    parser.add_argument("--any-class", action="store_true", help="match objects regardless of their class")
    parser.add_argument("--classes", default=None, help="class names in index order (yolo_obb)")
    parser.add_argument("-imgsize", "--imgsize", default=None, metavar="W,H", help="image size (yolo_obb)")
    parser.add_argument("--out", default=None, help="write miou.json, miou.txt and miou_histogram.png here")
    parser.add_argument("--max-listed", type=int, default=50, help="IoU-0 objects listed per direction")
    return parser


def _image_size(text: str | None):
    from obbdet.eval.loading import parse_image_size

    if text is None:
        return None
    try:
        return parse_image_size(text)
    except ValueError as exc:
        raise EvalInputError(f"-imgsize: {exc}", 2) from None


def _run(args) -> int:
    from obbdet.eval.loading import load_folder
    from obbdet.eval.miou import compute_miou, plot_histogram

    warnings = WarningLog()
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    size = _image_size(args.imgsize)
    sets = []
    for folder, fmt, scored in ((args.a, args.format, args.scores in ("a", "both")),
                                (args.b, args.format_b or args.format, args.scores in ("b", "both"))):
        labels, _ = load_folder(folder, fmt, detections=scored, warnings=warnings, image_size=size,
                                class_names=classes)
        sets.append(labels)
    result = compute_miou(sets[0], sets[1], any_class=args.any_class, name_a=str(args.a), name_b=str(args.b))
    for line in warnings.lines() + result.warnings:
        print(f"warning: {line}", file=sys.stderr)
    text = result.format(max_zero_listed=args.max_listed)
    print(text)
    if args.out:
        out = Path(args.out)
        try:
            from obbdet.io_utils import atomic_write_text

            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / "miou.json", json.dumps(result.as_dict(), indent=1) + "\n")
            atomic_write_text(out / "miou.txt", text + "\n")
            plot_histogram(result, out / "miou_histogram.png")
        except OSError as exc:
            raise EvalInputError(f"{out}: cannot write ({exc.strerror or exc})", EXIT_OUTPUT) from None
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 2
    try:
        return _run(args)
    except EvalInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
