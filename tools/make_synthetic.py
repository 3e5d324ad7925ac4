"""Generate a synthetic aerial vehicle dataset: PNG images + obb_json labels, or traffic sequences.

    python tools/make_synthetic.py OUT_DIR --n 200 --seed 0
    python tools/make_synthetic.py OUT_DIR --sequences 3 --frames 120 --seed 2000 --size 768x768
    python tools/make_synthetic.py data/syn_val --n 50 --seed 0 --split val
    python tools/make_synthetic.py data/dense --n 10 --width 2048 --height 2048 --dense --n-vehicles 600
    python tools/make_synthetic.py data/cars --n 100 --vehicle-width 11,16 --classes car --no-hard-negatives

Writes ``OUT_DIR/images/<split>_NNNNNN.png``, ``OUT_DIR/labels/<split>_NNNNNN.json`` (obb_json, with the
vehicle ``heading``) and ``OUT_DIR/manifest.json`` (the parameters). Re-running with the same parameters
reuses the files (and adds missing ones when ``--n`` grows); a folder made with other parameters is refused.
The same ``--seed`` and ``--split`` always give the same images; use another ``--split`` (or seed) for a
validation set. ``--preview K`` also writes the first K images with their labels drawn to ``OUT_DIR/preview``.
Load the folder with ``datasets_registry.load_dataset('obb_json', OUT_DIR)`` or as a registry entry.

With ``--sequences N``, writes N synthetic traffic sequences of ``--frames`` frames instead (vehicles driving,
turning, stopping and parking at a street junction, passing under trees and an overpass):
``OUT_DIR/frames/seqNNN/<frame:06d>.jpg``, ``OUT_DIR/labels/seqNNN/<frame:06d>.json`` (obb_json with
``track_id``, ``heading``, ``speed``, ``parked``, ``occluded``), ``OUT_DIR/videos/seqNNN.mp4`` and
``OUT_DIR/manifest.json``; ``--vehicle-width`` defaults to 18 px there.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from obbdet.datasets_registry.synthetic import SCENE_KINDS, SYNTHETIC_CLASSES, generate_synthetic_dataset  # noqa: E402
from obbdet.datasets_registry.synthetic_traffic_io import generate_traffic_sequences  # noqa: E402


def _number_or_range(text: str, kind=float):
    """``"16"`` -> 16, ``"12,24"`` -> (12, 24)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        values = [kind(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or LOW,HIGH, got {text!r}") from None
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return tuple(values)
    raise argparse.ArgumentTypeError(f"expected a number or LOW,HIGH, got {text!r}")


def _classes(text: str) -> tuple[str, ...]:
    names = tuple(c.strip() for c in text.split(",") if c.strip())
    bad = [c for c in names if c not in SYNTHETIC_CLASSES]
    if bad or not names:
        valid = ", ".join(SYNTHETIC_CLASSES)
        raise argparse.ArgumentTypeError(f"classes must be a comma list of {valid}, got {text!r}")
    return names


def _size(text: str) -> tuple[int, int]:
    """``"768x512"`` -> (768, 512)."""
    parts = text.lower().split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 768x768, got {text!r}") from None
    return width, height


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", type=Path, help="output folder (images/, labels/, manifest.json)")
    p.add_argument("--n", type=int, default=200, help="number of images (default 200)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--split", default="train", help="split name: part of the file names and of each image's seed")
    p.add_argument("--width", type=int, default=512, help="image width in px (default 512)")
    p.add_argument("--height", type=int, default=512, help="image height in px (default 512)")
    p.add_argument("--size", type=_size, default=None, metavar="WxH",
                   help="image/frame size, sets --width and --height (default 512x512; sequences 768x768)")
    p.add_argument("--vehicle-width", type=_number_or_range, default=None,
                   help="pixel width of a car (1.8 m): W or LOW,HIGH drawn per image (default 12,24; sequences 18)")
    p.add_argument("--n-vehicles", type=lambda t: _number_or_range(t, int), default=None,
                   help="vehicles per image: N or LOW,HIGH (default: what the scene layout holds)")
    p.add_argument("--dense", action="store_true", help="parking-dominated scenes with nearly full lots")
    p.add_argument("--classes", type=_classes, default=SYNTHETIC_CLASSES,
                   help=f"comma list of vehicle classes to draw (default {','.join(SYNTHETIC_CLASSES)})")
    p.add_argument("--no-hard-negatives", action="store_true",
                   help="leave out roof windows, car-sized shadows, flowerbeds, containers, road text")
    p.add_argument("--scene", choices=SCENE_KINDS, default=None, help="one scene kind for every image")
    p.add_argument("--workers", type=int, default=0, help="render in this many processes (default: in-process)")
    p.add_argument("--preview", type=int, default=0, metavar="K", help="draw the labels of the first K images")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    seq = p.add_argument_group("traffic sequences")
    seq.add_argument("--sequences", type=int, default=None, metavar="N", help="write N traffic sequences")
    seq.add_argument("--frames", type=int, default=120, help="frames per sequence (default 120)")
    seq.add_argument("--fps", type=float, default=25.0, help="frame rate of the videos (default 25)")
    seq.add_argument("--camera-jitter", type=float, default=0.0, help="camera shake in px (default 0: still)")
    seq.add_argument("--no-video", action="store_true", help="frames and labels only, no mp4")
    return p


def _sequences(args) -> int:
    width, height = args.size or (768, 768)
    start = time.perf_counter()
    try:
        manifest = generate_traffic_sequences(
            args.out_dir, args.sequences, args.frames, args.seed, width=width, height=height,
            vehicle_width=18.0 if args.vehicle_width is None else args.vehicle_width, workers=args.workers,
            fps=args.fps, video=not args.no_video, progress=not args.quiet, classes=args.classes,
            hard_negatives=not args.no_hard_negatives, camera_jitter=args.camera_jitter)
    except (ValueError, TypeError) as exc:
        print(f"make_synthetic: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    for seq in manifest["sequences"]:
        print(f"{seq['name']}: {seq['frames']} frames, {seq['moving_vehicles']} moving and {seq['parked_vehicles']} "
              f"parked vehicles, {seq['occlusion_frames']} frames with occlusions")
    print(f"{len(manifest['sequences'])} sequences in {args.out_dir} ({elapsed:.1f} s)")
    return 0


def _write_previews(pairs, out_dir: Path, count: int) -> None:
    from obbdet.formats import read_obb_json
    from obbdet.imageio import read_image_rgb, write_image_rgb
    from obbdet.visualize import draw_labels

    out_dir.mkdir(parents=True, exist_ok=True)
    for image_path, label_path in pairs[:count]:
        drawn = draw_labels(read_image_rgb(image_path), read_obb_json(label_path))
        write_image_rgb(out_dir / image_path.name, drawn)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.sequences is not None:
        return _sequences(args)
    if args.size is not None:
        args.width, args.height = args.size
    if args.n < 0:
        print("make_synthetic: --n must be >= 0", file=sys.stderr)
        return 2
    options = dict(vehicle_width=(12.0, 24.0) if args.vehicle_width is None else args.vehicle_width, n_vehicles=args.n_vehicles, dense=args.dense,
                   classes=args.classes, hard_negatives=not args.no_hard_negatives, scene=args.scene)
    start = time.perf_counter()
    try:
        pairs = generate_synthetic_dataset(args.out_dir, args.n, args.seed, args.split, width=args.width,
                                           height=args.height, workers=args.workers, progress=not args.quiet,
                                           **options)
    except (ValueError, TypeError) as exc:
        print(f"make_synthetic: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    counts: Counter = Counter()
    for _, label_path in pairs:
        counts.update(obj["class"] for obj in json.loads(label_path.read_text())["objects"])
    print(f"{len(pairs)} images in {args.out_dir} ({elapsed:.1f} s); objects: "
          + ", ".join(f"{c} {counts[c]}" for c in args.classes) + f"; total {sum(counts.values())}")
    if args.preview:
        _write_previews(pairs, args.out_dir / "preview", args.preview)
        print(f"previews with labels drawn: {args.out_dir / 'preview'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
