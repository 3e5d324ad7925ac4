"""Track folders of per-frame obb_json detections.

    python -m obbdet.tracking DET_DIR --out OUT [--csv FILE] [--max-age 60 ...]
    obbdet-track DET_DIR --out OUT

DET_DIR is one sequence (a folder of ``<frame>.json`` files) or a folder of sequence folders. Frames are ordered
by the number in their stems (every stem an integer, e.g. ``000012.json``; otherwise by natural name order,
numbered by position); frame gaps are fine (``--every 3`` detections). For each sequence, OUT gets the same
per-frame files with the confirmed tracks (filtered boxes, ``track_id``, ``heading`` in degrees, ``speed`` in
pixels per frame), and a tracks CSV (:mod:`obbdet.tracking.sequence`): ``OUT/<sequence>.tracks.csv`` for a folder
of sequences, ``--csv FILE`` (default ``OUT/tracks.csv``) for a single one. Every tracker option is a flag.

A malformed file is reported with its name and skipped (the tracker sees a gap); the exit status is then 1.
Exit 2: bad arguments or no obb_json files.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from tqdm import tqdm

from obbdet.formats import describe_read_error, list_label_files, read_label_files, write_obb_json
from obbdet.io_utils import remove_stale_temporaries
from obbdet.tracking.options import GATES, TrackerOptions
from obbdet.frames import frame_folder
from obbdet.tracking.sequence import track_sequence, write_tracks_csv

logger = logging.getLogger("obbdet.tracking")


class TrackInputError(Exception):
    """Bad command-line input (exit status 2)."""


def _option_type(annotation: str):
    base = annotation.replace(" | None", "")
    parse = {"float": float, "int": int, "str": str}[base]
    if base != annotation:
        return lambda text: None if text.lower() == "none" else parse(text)
    return parse


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="obbdet-track", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("det_dir", type=Path, help="a sequence folder of per-frame obb_json files, or a folder "
                                                   "of such sequence folders")
    parser.add_argument("--out", type=Path, required=True, help="output folder (not inside DET_DIR)")
    parser.add_argument("--csv", type=Path, help="tracks CSV of a single sequence (default OUT/tracks.csv)")
    parser.add_argument("--kind", choices=("det", "gt"), default="det",
                        help="det: objects need a score; gt: ground truth, every object a detection of score 1")
    group = parser.add_argument_group("tracker options (see obbdet.tracking.TrackerOptions)")
    for f in fields(TrackerOptions):
        default = f.default if f.default is not MISSING else None
        extra = {"choices": GATES} if f.name == "gate" else {}
        group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=_option_type(str(f.type)),
                           default=default, help=f"default {default}", **extra)
    return parser.parse_args(argv)


def _frames(files: list) -> list[tuple[int, Path]]:
    """``(frame number, path)`` of one sequence's per-frame files (``(stem, path)`` pairs), numbered and ordered
    like the frames of an image folder (``obbdet.frames.frame_folder``)."""
    try:
        return frame_folder(None, [path for _, path in files])
    except ValueError as exc:
        raise TrackInputError(str(exc)) from None


def find_sequences(det_dir: Path) -> tuple[bool, list[tuple[str, list[tuple[int, Path]]]]]:
    """``(single, [(name, [(frame, path), ...]), ...])``: DET_DIR itself as the one sequence (``single``) when it
    holds .json files, else each sub-folder that does (sorted by name)."""
    if not det_dir.is_dir():
        raise TrackInputError(f"{det_dir}: no such folder")
    own = list_label_files(det_dir, "obb_json").files
    if own:
        return True, [(det_dir.name, _frames(own))]
    found = []
    for sub in sorted(p for p in det_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = list_label_files(sub, "obb_json").files
        if files:
            found.append((sub.name, _frames(files)))
    if not found:
        raise TrackInputError(f"{det_dir}: no obb_json files, neither in it nor in its sub-folders")
    return False, found


def track_folder(frames: list[tuple[int, Path]], out_dir: Path, csv_path: Path, detections: bool,
                 options: TrackerOptions, bar: tqdm) -> int:
    """Track one sequence's files into ``out_dir`` (same file names) and ``csv_path``; returns how many files were
    skipped as unreadable."""
    failed = []

    def report(path, exc):
        logger.error("skipped %s", describe_read_error(path, exc))
        failed.append(path)
        bar.update(1)

    stem_of = {frame: path.stem for frame, path in frames}
    frame_of = {path.stem: frame for frame, path in frames}
    read = read_label_files([(path.stem, path) for _, path in frames], "obb_json", detections=detections,
                            on_error=report)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    results = []
    for frame, tracked in track_sequence(((frame_of[stem], labels) for stem, labels in read.items()), options):
        write_obb_json(out_dir / f"{stem_of[frame]}.json", tracked)
        results.append((frame, tracked))
        bar.update(1)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    rows = write_tracks_csv(csv_path, results)
    logger.info("%s: %d frames, %d track rows", csv_path, len(results), rows)
    return len(failed)


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def run(args) -> int:
    single, sequences = find_sequences(args.det_dir)
    if _inside(args.out, args.det_dir):
        raise TrackInputError(f"--out {args.out} is DET_DIR or inside it; choose another folder")
    if args.csv is not None and not single:
        raise TrackInputError(f"--csv names one file but {args.det_dir} holds {len(sequences)} sequence folders; "
                              "their CSVs go to OUT/<sequence>.tracks.csv")
    try:
        options = TrackerOptions(**{f.name: getattr(args, f.name) for f in fields(TrackerOptions)})
    except ValueError as exc:
        raise TrackInputError(str(exc)) from None
    skipped = 0
    with tqdm(total=sum(len(frames) for _, frames in sequences), unit="frame", desc="tracking") as bar:
        for name, frames in sequences:
            out_dir = args.out if single else args.out / name
            csv_path = (args.csv or args.out / "tracks.csv") if single else args.out / f"{name}.tracks.csv"
            skipped += track_folder(frames, out_dir, csv_path, args.kind == "det", options, bar)
    if skipped:
        hint = " (ground truth without scores: --kind gt)" if args.kind == "det" else ""
        logger.error("%d malformed file(s) skipped (named above)%s", skipped, hint)
        return 1
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        return run(args)
    except TrackInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
