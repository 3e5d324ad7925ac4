"""Detect vehicles in (huge) aerial images and videos with a trained obbdet checkpoint.

    python infer.py <folder|image|video> <vehicle_width> <ckpt.pt|model.onnx> obb|aabb [--out DIR]
                    [--tile 768 --overlap 128 | --whole] [--batch N] [--score 0.05] [--width-scale F]
                    [--every N --start S --end E] [--track] [--draw] [--gis gpkg|geojson|none] [--resume]
                    [--device cpu|cuda] [--half] [--backend torch|onnxruntime] [--precision fp32|bf16]
    torchrun --nproc_per_node=G [--nnodes=M ...] infer.py ...      (one process per device, work shared)

Writes one obb_json per image (same relative path and stem) and per video frame (``<video stem>/<frame:06d>``)
under ``<input>_det/`` unless ``--out`` is given. The same detections come from ``obbdet.Predictor`` in Python;
see ``obbdet/inference/`` for the pipeline.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

EPILOG = """\
vehicle_width: the typical width (short side) in pixels of a car (the checkpoint's main class) in these
  images; each image is rescaled by (training vehicle width stored in the checkpoint) / vehicle_width so
  vehicles appear at the size the network was trained on. -1 runs at the images' own resolution. Tile size
  and overlap are in rescaled pixels; detections are written in the original image's pixels.
obb mode: objects {class, cx, cy, length, width, angle (degrees), score} (+ heading in degrees when the
  model predicts the vehicle's front).
aabb mode: each detection's axis-aligned hull, written in the same obb_json layout with angle 0 (-90 when
  taller than wide, as length is the long side) plus "bbox": [x_min, y_min, x_max, y_max].
videos (.mp4, .avi, .mov, .mkv; the input itself or files in the input folder, beside images or not): each
  frame gives <out>/<same relative folder>/<video stem>/<frame:06d>.json with "image": "<video stem>/<frame:06d>",
  the frame being its 0-based number on the video's timeline. --every N --start S --end E take frames S, S+N,
  S+2N, ... below E (default: all). A frame that cannot be decoded is listed with its number and reason, and
  the video goes on.
--track: each video, and each folder of images (frames in natural name order; frame number = the integer stem
  when every stem is an integer, else the position), is one sequence whose detections are tracked
  (obbdet.tracking, default options): each per-frame file then holds the tracks matched in that frame
  (filtered boxes with track_id, heading in degrees and speed in px per source frame), and
  <out>/<same relative folder>/<video or folder name>.tracks.csv the tracks (MOT-style rows, see the README).
  --every/--start/--end then also select the frames of image folders. obb mode only.
--draw writes an overlay of each image's detections to <out>/overlays/<same relative path>.jpg (of a video's:
  <out>/overlays/<video stem>.mp4), showing those above the checkpoint's per-class operating point (all of
  them when it stores none).
--rescale-range LOW,HIGH bounds the rescale factor (default 0.05,8): a vehicle width asking for more or less
  is refused before any image is decoded, naming the size and memory the largest image would take.
--out must lie outside the input folder (results never mix with the images they came from).
huge TIFFs (over --window-read-above pixels, default 64 million) are read window by window: memory follows
  the tile batch, not the mosaic; caps grow with the area (--max-det-per-mp). A georeferenced TIFF also gets
  <out>/<stem>.gpkg (polygons in the raster's CRS, class, score, length/width in metres, heading, azimuth) or,
  with --gis geojson, <stem>.geojson in WGS84.
torchrun: each process takes every W-th image and video; the tiles of huge TIFFs are shared by all and merged
  by rank 0; one summary. --resume skips images whose obb_json exists and refuses a folder made with another
  checkpoint or settings (recorded in <out>/.obbdet-infer).
detections whose centre lies outside the image (in the padding of a tile) are dropped and counted.
exit codes: 0 every image and frame processed; 1 some images, videos or frames failed (each listed with its
  reason, the others were processed); 2 nothing was run (bad arguments, unusable checkpoint, unwritable output
  folder, no images or videos).
"""


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line on stderr (exit 2), like every other refusal of infer.py."""

    def error(self, message: str):
        self.exit(2, f"infer.py: error: {message} (see --help)\n")


def _number(text: str, kind=float) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text}")
    return value


def _bounded(kind, low, high, low_open: bool = False):
    """An argparse type: a finite ``kind`` number in ``[low, high]`` (``(low, high]`` when ``low_open``)."""

    def parse(text: str):
        value = _number(text, kind)
        if (value <= low if low_open else value < low) or value > high:
            raise argparse.ArgumentTypeError(f"expected a value in {'(' if low_open else '['}{low:g}, {high:g}], "
                                             f"got {text}")
        return value

    return parse


def _vehicle_width(text: str) -> float:
    value = _number(text)
    if value != -1 and not value > 0:
        raise argparse.ArgumentTypeError(f"must be finite and > 0, or -1 (no rescaling), got {text}")
    return value


def _rescale_range(text: str) -> tuple[float, float]:
    try:
        low, high = (_number(v) for v in text.split(","))
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (e.g. 0.05,8), got {text!r}") from None
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"expected 0 < LOW <= HIGH, got {text!r}")
    return low, high


def _score(text: str):
    """``auto`` (the checkpoint's per-class operating point) or a threshold in [0, 1]."""
    if text == "auto":
        return text
    try:
        return _SCORE_RANGE(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or auto)") from None


_SCORE_RANGE = _bounded(float, 0.0, 1.0)


def _depth(text: str):
    from obbdet.imageio import DepthScaling

    try:
        return DepthScaling.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bands(text: str) -> tuple[int, ...]:
    try:
        bands = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three comma-separated band indices, got {text!r}") from None
    if len(bands) != 3 or min(bands) < 0:
        raise argparse.ArgumentTypeError(f"expected three band indices >= 0, got {text!r}")
    return bands


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(description=__doc__.split("\n\n")[0], epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, metavar="input",
                   help="folder of images and/or videos (searched recursively: jpg, png, tif, bmp; mp4, avi, mov, "
                        "mkv), or one video file")
    p.add_argument("vehicle_width", type=_vehicle_width, help="car width in image pixels, or -1 (see below)")
    p.add_argument("checkpoint", type=Path, help="obbdet checkpoint (.pt) or ONNX export (.onnx, tools/export.py)")
    p.add_argument("mode", choices=("obb", "aabb"), help="oriented or axis-aligned output boxes")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <folder>_det)")
    tiling = p.add_mutually_exclusive_group()
    tiling.add_argument("--tile", type=_bounded(int, 32, 16384), default=768,
                        help="tile side in network pixels (default 768)")
    tiling.add_argument("--whole", action="store_true", help="one forward pass per whole (rescaled) image")
    p.add_argument("--overlap", type=_bounded(int, 0, 16383), default=128,
                   help="minimum tile overlap in network pixels (default 128)")
    p.add_argument("--batch", type=_bounded(int, 1, 4096), default=4,
                   help="tiles per forward pass: bounds memory (default 4)")
    p.add_argument("--score", type=_score, default=0.05,
                   help="score threshold (default 0.05), or auto: each class at the checkpoint's operating point "
                        "(the score of best F1 measured in validation or calibration)")
    p.add_argument("--nms-iou", type=_bounded(float, 0, 1, low_open=True), default=None,
                   help="rotated NMS IoU within and across tiles (default: the checkpoint's, else 0.4)")
    p.add_argument("--vote-iou", type=_bounded(float, 0, 1), default=None,
                   help="box voting: each box NMS keeps becomes the score-weighted mean of the candidates of its "
                        "class overlapping it at least this much, tighter boxes at high IoU (default: the "
                        "checkpoint's, else 0.6; 0: plain NMS)")
    p.add_argument("--tta", default="none", metavar="{none,flip,rot4,d8}",
                   help="test-time augmentation: detect on flipped / quarter-turned views of each tile and fuse "
                        "them by box voting: flip (2 forward passes), rot4 (4), d8 (all 8 flips and turns: the "
                        "tightest boxes, 8x the time) (default none)")
    p.add_argument("--pre-nms-topk", type=_bounded(int, 1, 10 ** 7), default=None,
                   help="candidate locations per class decoded per tile before NMS (default: the checkpoint's)")
    p.add_argument("--max-det", type=_bounded(int, 1, 10 ** 7), default=1000,
                   help="cap on detections per tile, and the smallest cap per image (default 1000)")
    p.add_argument("--max-det-per-mp", type=_bounded(float, 0, 10 ** 7), default=2000.0,
                   help="the per-image cap grows with the area: this many per megapixel at the network scale "
                        "(default 2000, above any real packing of cars); caps are warned when reached")
    p.add_argument("--window-read-above", type=_bounded(int, 0, 10 ** 12), default=None, metavar="PIXELS",
                   help="TIFFs with more pixels are read window by window, never decoded whole (default 64000000)")
    p.add_argument("--gis", choices=("gpkg", "geojson", "none"), default="gpkg",
                   help="georeferenced TIFFs: also write the detections as polygons, GeoPackage in the raster's CRS "
                        "(default) or GeoJSON in WGS84, beside the obb_json file")
    p.add_argument("--resume", action="store_true",
                   help="skip images whose obb_json an earlier run (same checkpoint and settings) completed")
    p.add_argument("--width-scale", type=_bounded(float, 0, 100, low_open=True), default=None,
                   help="factor on every box's short side (default: the checkpoint's calibrated factor, else 1)")
    p.add_argument("--length-scale", type=_bounded(float, 0, 100, low_open=True), default=None,
                   help="factor on every box's long side (default: the checkpoint's calibrated factor, else 1)")
    p.add_argument("--depth", type=_depth, default="percentile",
                   help="images deeper than 8 bits: percentile[:LOW,HIGH] (default 2,98, per band), bits:N (e.g. "
                        "bits:12 for 12-bit data in 16-bit files) or range:MIN,MAX")
    p.add_argument("--bands", type=_bands, default=None,
                   help="three 0-based band indices making the RGB image, e.g. 0,1,2 of an RGBN TIFF (default: "
                        "the first three; one band is shown as grey)")
    p.add_argument("--rescale-range", type=_rescale_range, default=None, metavar="LOW,HIGH",
                   help="rescale factors accepted (default 0.05,8); see below")
    p.add_argument("--every", type=_bounded(int, 1, 10 ** 9), default=None,
                   help="video frames: take every N-th frame (default 1)")
    p.add_argument("--start", type=_bounded(int, 0, 10 ** 9), default=None,
                   help="video frames: first frame number taken (0-based, default 0)")
    p.add_argument("--end", type=_bounded(int, 1, 10 ** 9), default=None,
                   help="video frames: frame number to stop before (default: the end of the video)")
    p.add_argument("--track", action="store_true",
                   help="follow vehicles across the frames of each video / folder of images (see below)")
    p.add_argument("--draw", action="store_true", help="also write overlays of the detections")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--half", action="store_true", help="float16 autocast (CUDA only)")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default=None,
                   help="inference backend (default: onnxruntime for a .onnx file, torch otherwise)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="torch backend: float32 or bfloat16 autocast (fast on CPUs with AVX512-BF16/AMX)")
    p.add_argument("--threads", type=_bounded(int, 0, 4096), default=0,
                   help="torch CPU threads (default 0: torch's choice)")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA weights")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.track and args.mode == "aabb":
        parser.error("--track follows oriented boxes: use obb mode")
    from tqdm.contrib.logging import logging_redirect_tqdm

    from obbdet import inference
    from obbdet.inference import sharding
    from obbdet.inference.sequences import run_prepared

    shard, device = sharding.join_processes(args.device)
    prefix = f"[rank {shard.rank}] " if shard.world > 1 else ""
    logging.basicConfig(level=logging.INFO if shard.is_main else logging.WARNING,
                        format=f"{prefix}%(levelname)s: %(message)s")
    try:
        return _run(args, shard, device, inference, sharding, run_prepared, logging_redirect_tqdm)
    finally:
        sharding.leave_processes()


def _run(args, shard, device, inference, sharding, run_prepared, logging_redirect_tqdm) -> int:

    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    rescale_range = {} if args.rescale_range is None else dict(zip(("min_rescale", "max_rescale"),
                                                                    args.rescale_range))
    try:
        run = inference.prepare_run(
            args.folder, args.vehicle_width, args.checkpoint, out_dir=args.out, device=device,
            tile=args.tile, overlap=args.overlap, whole=args.whole, batch=args.batch, score_threshold=args.score,
            nms_iou=args.nms_iou, vote_iou=args.vote_iou, tta=args.tta, pre_nms_topk=args.pre_nms_topk,
            max_det=args.max_det,
            max_det_per_megapixel=args.max_det_per_mp, clean=shard.is_main, backend=args.backend,
            precision=args.precision,
            width_scale=args.width_scale, length_scale=args.length_scale, half=args.half, use_ema=not args.no_ema,
            depth=args.depth, bands=args.bands, every=args.every, start=args.start, end=args.end, track=args.track,
            **rescale_range)
        record = sharding.run_record(args.checkpoint, run.settings(args.mode))
        sharding.check_resume(run.out_dir, record, args.resume)
    except inference.InferenceSetupError as exc:
        print(f"infer.py: error: {exc}", file=sys.stderr)
        return inference.EXIT_SETUP_ERROR
    sharding.barrier(shard)  # every process has listed the outputs an earlier run completed before any writes
    if shard.is_main:
        print(run.describe() + (f"\n{shard.world} processes (torchrun)" if shard.world > 1 else ""))
        sharding.write_run_record(run.out_dir, record)
    image_options = {"gis": args.gis, "resume": args.resume}
    if args.window_read_above is not None:
        image_options["window_read_above"] = args.window_read_above
    with logging_redirect_tqdm():
        summary = run_prepared(run, mode=args.mode, draw=args.draw, progress=not args.quiet, shard=shard,
                               **image_options)
    summaries = sharding.gather(shard, summary)
    if not shard.is_main:
        return inference.EXIT_OK
    summary = inference.InferenceSummary.combine(summaries)
    print(summary.format())
    print(f"detections written to {run.out_dir}")
    return inference.EXIT_IMAGE_FAILURES if summary.failed else inference.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
