"""Tracking benchmark: a trained checkpoint on synthetic traffic videos, per-frame detections vs tracking.

1. Renders synthetic traffic sequences (parked and moving vehicles, trees and an overpass hiding them; cached
   under ``bench/.cache/tracking/``) at the checkpoint's training vehicle width, so nothing is rescaled.
2. Detects every frame once with ``infer.py`` on the sequences' mp4 videos (the path users run: decoding,
   detection, writing), cached beside them with the detector's time per frame (infer.py's frames/s).
3. Evaluates three rows with ``eval.tracking.evaluate_tracking`` against the ground truth:
   per-frame   the detections above the checkpoint's per-class operating point (what ``--score auto``
               keeps), each its own track id, no heading;
   copy-angle  the tracker's ids with each box copied from its matched detection (``detection_index``), no
               heading: how trackers that only carry ids (e.g. ultralytics' OBB tracking) report boxes;
   obbdet      ``obbdet.tracking.track_sequence`` with default ``TrackerOptions`` on all detections (what
               ``infer.py --track`` does): filtered boxes and headings.
   and checks two claims: parked-vehicle angle jitter (median over tracks) at least 3x lower with obbdet's
   tracker than per-frame detections; heading within 45 degrees on >= 95% of moving track-frames.
4. Tracker vs detector time per frame: on the sequences themselves (infer.py's time above), and with ~300
   vehicles in view: a mosaic of 12 of the benchmark's frames side by side (6 x 2 tiles, each tile its own
   sequence and start frame, so the vehicles keep moving), the tracker fed the cached detections of those
   tiles, the detector (in-process Predictor, infer.py's options) run on the mosaic image.

    .venv/bin/python bench/tracking.py [--checkpoint runs/quickstart/best-checkpoint-011epoch.pt]
        [--sequences 3] [--frames 120] [--size 768] [--seed 2000] [--camera-jitter 0]
        [--figure docs/video_tracking.png]

``--figure`` draws one tracked frame (boxes, track ids, heading arrows; cropped and enlarged) to a PNG.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datasets_registry.synthetic_traffic_io import MANIFEST_NAME, generate_traffic_sequences  # noqa: E402
from eval.errors import WarningLog  # noqa: E402
from eval.tracking import evaluate_tracking  # noqa: E402
from eval.tracking_data import load_sequences  # noqa: E402
from obbdet.formats import read_obb_json, write_obb_json  # noqa: E402
from obbdet.imageio import read_image_rgb, write_image_rgb  # noqa: E402
from obbdet.inference import Predictor  # noqa: E402
from obbdet.inference.sequences import labels_above, overlay_frame  # noqa: E402
from obbdet.run_outputs import best_checkpoint  # noqa: E402
from obbdet.structures import ImageLabels  # noqa: E402
from obbdet.tracking import Tracker, TrackerOptions, track_sequence  # noqa: E402

CACHE = ROOT / "bench" / ".cache" / "tracking"
QUICKSTART_RUN = ROOT / "runs" / "quickstart"  # default: its best-checkpoint-*epoch.pt (the run keeps one)
ROWS = ("per-frame", "copy-angle", "obbdet")
JITTER_FACTOR = 3.0  # claim: parked jitter at least this many times lower with tracking
HEADING_SHARE = 0.95  # claim: heading within 45 degrees on at least this share of moving track-frames
MOSAIC_TILES = 12  # benchmark frames side by side for the ~300-vehicle speed test (~27 vehicles each)
MOSAIC_COLUMNS = 6
FIGURE_CROP = 240  # px of the frame drawn (x2): a README-sized PNG with readable ids and arrows


def checkpoint_key(path: Path) -> str:
    """A short digest of the checkpoint file (cached detections belong to one checkpoint)."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{path.stem}-{digest.hexdigest()[:10]}"


def render(args, vehicle_width: float) -> tuple[Path, dict]:
    """The sequences (frames, labels, videos, manifest), rendered once per parameter set."""
    shake = f"_shake{args.camera_jitter:g}" if args.camera_jitter else ""
    folder = CACHE / f"seed{args.seed}_{args.sequences}x{args.frames}_{args.size}px_w{vehicle_width:.2f}{shake}"
    manifest_path = folder / MANIFEST_NAME
    if manifest_path.is_file():
        return folder, json.loads(manifest_path.read_text())
    if folder.exists():  # an interrupted render
        shutil.rmtree(folder)
    manifest = generate_traffic_sequences(folder, args.sequences, args.frames, args.seed, width=args.size,
                                          height=args.size, vehicle_width=vehicle_width, workers=2,
                                          camera_jitter=args.camera_jitter)
    return folder, manifest


def detect(data: Path, checkpoint: Path, vehicle_width: float) -> tuple[Path, dict]:
    """Raw detections of every frame (infer.py on the videos, default score 0.05), cached with its timing."""
    out = data / f"det_{checkpoint_key(checkpoint)}"
    timing_path = out / "timing.json"
    if timing_path.is_file():
        return out, json.loads(timing_path.read_text())
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    command = [sys.executable, str(ROOT / "infer.py"), str(data / "videos"), f"{vehicle_width:.2f}", str(checkpoint),
               "obb", "--out", str(partial), "--device", "cpu"]
    print("$ " + " ".join(command), flush=True)
    start = time.perf_counter()
    run = subprocess.run(command, stdout=subprocess.PIPE, stderr=None, text=True)
    wall = time.perf_counter() - start
    print(run.stdout, end="")
    if run.returncode != 0:
        raise SystemExit(f"infer.py failed with exit code {run.returncode}")
    found = re.search(r"([0-9.]+) frames/s", run.stdout)
    frames = re.search(r"video frames: ([0-9]+) processed", run.stdout)
    if not found or not frames:
        raise SystemExit("infer.py printed no 'frames/s' / 'video frames' summary line")
    timing = {"frames": int(frames.group(1)), "frames_per_second": float(found.group(1)), "wall_seconds": wall,
              "date": date.today().isoformat(), "machine": machine()}
    (partial / "timing.json").write_text(json.dumps(timing, indent=1) + "\n")
    partial.rename(out)
    return out, timing


def machine() -> str:
    import os

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"


def has_heading(predictor: Predictor) -> bool:
    return bool(getattr(predictor.detector, "has_heading", False))


def read_sequence(folder: Path) -> list[tuple[int, ImageLabels]]:
    """``(frame, labels)`` of one folder of per-frame obb_json files, in frame order."""
    return [(int(p.stem), read_obb_json(p, detections=True)) for p in sorted(folder.glob("*.json"), key=lambda p: int(p.stem))]


def per_frame_row(frames, thresholds: dict) -> list[tuple[int, ImageLabels]]:
    """Detections above the operating point, each its own track id, no heading."""
    out, next_id = [], 1
    for frame, labels in frames:
        kept = labels_above(labels, thresholds)
        kept.extras = [{"track_id": next_id + i} for i in range(len(kept))]
        next_id += len(kept)
        kept.heading = np.full(len(kept), math.nan)
        out.append((frame, kept))
    return out


def copy_angle_row(frames, class_names: list[str]) -> list[tuple[int, ImageLabels]]:
    """The tracker's ids, each box and score copied from the matched detection, no heading."""
    tracker = Tracker(TrackerOptions())
    index = {name: i for i, name in enumerate(class_names)}
    out = []
    for frame, labels in frames:
        scores = labels.scores if labels.scores is not None else np.ones(len(labels))
        tracked = tracker.update(labels.boxes, scores, np.array([index[c] for c in labels.classes], np.int64),
                                 frame=frame)
        rows = tracked.detection_index
        out.append((frame, ImageLabels(image=labels.image, width=labels.width, height=labels.height,
                                       boxes=labels.boxes[rows].copy(), classes=[labels.classes[r] for r in rows],
                                       scores=scores[rows].copy(), heading=np.full(len(rows), math.nan),
                                       extras=[{"track_id": int(t)} for t in tracked.track_ids])))
    return out


def obbdet_row(frames, class_names: list[str]) -> tuple[list[tuple[int, ImageLabels]], list[float]]:
    """``track_sequence`` with default options; also the seconds each frame's tracking took."""
    out, seconds = [], []
    source = iter(frames)
    tracks = track_sequence(source, TrackerOptions(), class_names=list(class_names))
    while True:
        start = time.perf_counter()
        item = next(tracks, None)
        if item is None:
            break
        seconds.append(time.perf_counter() - start)
        out.append(item)
    return out, seconds


def write_row(folder: Path, sequences: dict[str, list[tuple[int, ImageLabels]]]) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    for name, frames in sequences.items():
        (folder / name).mkdir(parents=True)
        for frame, labels in frames:
            write_obb_json(folder / name / f"{frame:06d}.json", labels)


def evaluate_rows(data: Path, det: Path, predictor: Predictor) -> tuple[dict, dict, list[float]]:
    names = sorted(p.name for p in (data / "labels").iterdir() if p.is_dir())
    raw = {name: read_sequence(det / name) for name in names}
    thresholds = predictor.operating_point
    rows = {"per-frame": {}, "copy-angle": {}, "obbdet": {}}
    track_seconds = []
    for name in names:
        rows["per-frame"][name] = per_frame_row(raw[name], thresholds)
        rows["copy-angle"][name] = copy_angle_row(raw[name], predictor.class_names)
        rows["obbdet"][name], seconds = obbdet_row(raw[name], predictor.class_names)
        track_seconds += seconds
    results = {}
    for row, sequences in rows.items():
        folder = det.parent / f"rows_{det.name}" / row
        write_row(folder, sequences)
        warnings = WarningLog()
        results[row] = evaluate_tracking(load_sequences(data / "labels", folder, warnings=warnings))
        for line in warnings.lines():
            print(f"warning ({row}): {line}")
    return results, rows["obbdet"], track_seconds


def fmt(value, digits=1, scale=1.0) -> str:
    return "n/a" if value is None else f"{scale * value:.{digits}f}"


def print_table(results: dict) -> None:
    print(f"{'row':<11} {'HOTA':>6} {'MOTA':>6} {'IDF1':>6} {'IDSW':>5} {'jitter':>7} {'head15':>7} {'head45':>7}")
    for row in ROWS:
        r = results[row]
        figures, angles = r.combined["all"], r.angles["COMBINED"]
        print(f"{row:<11} {fmt(figures['HOTA'], 1, 100):>6} {fmt(figures['MOTA'], 1, 100):>6} "
              f"{fmt(figures['IDF1'], 1, 100):>6} {figures['IDSW']:>5} "
              f"{fmt(angles['angle_jitter']['median_deg'], 3):>7} "
              f"{fmt(angles['heading']['within_15'], 1, 100):>7} {fmt(angles['heading']['within_45'], 1, 100):>7}")
    print("HOTA, MOTA, IDF1 and heading in %; jitter: parked vehicles' angle jitter, median over tracks, degrees; "
          "head15/head45: moving vehicles' track-frames with heading within 15/45 degrees")


def claims(results: dict) -> bool:
    raw = results["per-frame"].angles["COMBINED"]["angle_jitter"]["median_deg"]
    ours = results["obbdet"].angles["COMBINED"]["angle_jitter"]["median_deg"]
    heading = results["obbdet"].angles["COMBINED"]["heading"]
    ok1 = raw is not None and ours is not None and ours * JITTER_FACTOR <= raw
    ratio = raw / ours if raw and ours else float("nan")
    print(f"claim 1: parked jitter {fmt(raw, 3)} deg per-frame vs {fmt(ours, 3)} deg tracked = {ratio:.1f}x lower "
          f"(needs >= {JITTER_FACTOR:g}x): {'PASS' if ok1 else 'FAIL'}")
    share = heading["within_45"]
    ok2 = share is not None and share >= HEADING_SHARE
    print(f"claim 2: heading within 45 deg on {fmt(share, 1, 100)}% of {heading['count']} moving track-frames "
          f"({heading['without_heading']} without heading; needs >= {100 * HEADING_SHARE:g}%): "
          f"{'PASS' if ok2 else 'FAIL'}")
    return ok1 and ok2


def mosaic_tiles(names: list[str], n_frames: int, tiles: int) -> tuple[list[tuple[str, int]], int]:
    """Tile ``j`` of the mosaic shows sequence ``names[j % S]`` from frame ``offset_j``, offsets spread so no
    two tiles show the same frame; returns ``[(sequence, offset)]`` and the mosaic's frame count."""
    per_sequence = math.ceil(tiles / len(names))
    length = n_frames // (per_sequence + 1)
    return [(names[j % len(names)], length * (j // len(names))) for j in range(tiles)], length


def dense_speed(predictor: Predictor, data: Path, det: Path, vehicle_width: float, tiles: int = MOSAIC_TILES):
    """Tracker and detector on a mosaic of the benchmark's frames (``MOSAIC_COLUMNS`` wide): each mosaic frame
    ``t`` puts frame ``offset + t`` of a sequence in each tile, so ~300 vehicles drive and park in view. The
    tracker runs on the cached per-frame detections shifted into the mosaic (what the detector found there);
    the detector (in-process Predictor, infer.py's options) on the mosaic image of frame 0.

    Returns (tracker ms/frame median, detector ms/frame median of 3, ground-truth vehicles per mosaic frame,
    detections per mosaic frame, mosaic (width, height))."""
    names = sorted(p.name for p in (data / "labels").iterdir() if p.is_dir())
    layout, length = mosaic_tiles(names, len(list((data / "labels" / names[0]).glob("*.json"))), tiles)
    size = read_obb_json(data / "labels" / names[0] / "000000.json").width
    origin = [np.array([(j % MOSAIC_COLUMNS) * size, (j // MOSAIC_COLUMNS) * size], float) for j in range(tiles)]
    index = {name: i for i, name in enumerate(predictor.class_names)}
    tracker = Tracker(TrackerOptions())
    seconds, vehicles, detections = [], [], []
    for t in range(length):
        boxes, scores, labels = [], [], []
        for (name, offset), shift in zip(layout, origin):
            found = read_obb_json(det / name / f"{offset + t:06d}.json", detections=True)
            moved = found.boxes.copy()
            moved[:, :2] += shift
            boxes.append(moved)
            scores.append(found.scores)
            labels.append([index[c] for c in found.classes])
            vehicles.append(len(read_obb_json(data / "labels" / name / f"{offset + t:06d}.json")))
        boxes, scores = np.concatenate(boxes), np.concatenate(scores)
        detections.append(len(boxes))
        start = time.perf_counter()
        tracker.update(boxes, scores, np.concatenate(labels).astype(np.int64), frame=t)
        seconds.append(time.perf_counter() - start)
    rows = math.ceil(tiles / MOSAIC_COLUMNS)
    image = np.zeros((rows * size, MOSAIC_COLUMNS * size, 3), np.uint8)
    for (name, offset), (x, y) in zip(layout, origin):
        image[int(y):int(y) + size, int(x):int(x) + size] = read_image_rgb(data / "frames" / name /
                                                                            f"{offset:06d}.jpg")
    predictor.predict(image[:size, :size], vehicle_width)  # warm-up
    times = []
    for _ in range(3):
        start = time.perf_counter()
        predictor.predict(image, vehicle_width)
        times.append(time.perf_counter() - start)
    skip = min(5, length // 2)  # start-up frames
    return (1000 * float(np.median(seconds[skip:])), 1000 * float(np.median(times)), sum(vehicles) / length,
            float(np.mean(detections)), (image.shape[1], image.shape[0]))


def draw_figure(path: Path, data: Path, tracked: dict, seq: str | None, frame: int | None) -> None:
    """One tracked frame with obbdet's overlay (boxes, ``#id``, heading arrows), a ``FIGURE_CROP`` square of it
    enlarged 2x (pixels repeated) so the arrows read. Default: of all frames and windows centred on a moving
    track, the one holding the most moving tracks with a heading."""
    import cv2

    def moving(labels: ImageLabels) -> np.ndarray:
        return np.array([e["speed"] > 1 for e in labels.extras], bool) & np.isfinite(labels.heading)

    def best_window(labels: ImageLabels) -> tuple[int, np.ndarray]:
        centres = labels.boxes[moving(labels), :2]
        if not len(centres):
            return 0, np.zeros(2)
        inside = (np.abs(centres[:, None] - centres[None]) < FIGURE_CROP / 2).all(axis=2).sum(axis=1)
        return int(inside.max()), centres[int(inside.argmax())]

    if seq is None:
        _, seq, frame = max((best_window(lab)[0], name, f) for name, frames in tracked.items() for f, lab in frames
                            if len(lab))
    labels = dict(tracked[seq])[frame]
    image = read_image_rgb(data / "frames" / seq / f"{frame:06d}.jpg")
    count, centre = best_window(labels)
    if not count:
        centre = np.array(image.shape[1::-1]) / 2
    side = min(FIGURE_CROP, *image.shape[:2])
    left = int(np.clip(centre[0] - side / 2, 0, image.shape[1] - side))
    top = int(np.clip(centre[1] - side / 2, 0, image.shape[0] - side))
    zoom = 2.0
    crop = cv2.resize(image[top:top + side, left:left + side], None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    inside = (labels.boxes[:, 0] >= left) & (labels.boxes[:, 0] < left + side) & \
             (labels.boxes[:, 1] >= top) & (labels.boxes[:, 1] < top + side)
    keep = np.flatnonzero(inside)
    boxes = labels.boxes[keep].copy()
    boxes[:, :2] = (boxes[:, :2] - (left, top)) * zoom
    boxes[:, 2:4] *= zoom
    shown = ImageLabels(boxes=boxes, classes=[labels.classes[i] for i in keep], scores=labels.scores[keep],
                        heading=labels.heading[keep], extras=[labels.extras[i] for i in keep])
    drawn = overlay_frame(crop, shown)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image_rgb(path, drawn)
    print(f"figure: {path} ({seq} frame {frame}, crop x {left}..{left + side}, y {top}..{top + side}, x{zoom:g}; "
          f"{path.stat().st_size // 1024} kB)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="default: the best checkpoint of runs/quickstart (tools/quickstart.sh)")
    parser.add_argument("--sequences", type=int, default=3)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--seed", type=int, default=2000)
    parser.add_argument("--camera-jitter", type=float, default=0.0, metavar="PX",
                        help="camera shake of the rendered sequences, px (default 0: a still camera)")
    parser.add_argument("--figure", type=Path, default=None, help="write one tracked frame as a PNG")
    parser.add_argument("--figure-frame", default=None, metavar="SEQ:FRAME", help="the frame drawn (default: "
                        "the one with the most moving tracks)")
    args = parser.parse_args(argv)
    if args.checkpoint is None:
        args.checkpoint = best_checkpoint(QUICKSTART_RUN)
        if args.checkpoint is None:
            raise SystemExit(f"{QUICKSTART_RUN}: no best checkpoint (train one with tools/quickstart.sh)")
    if not args.checkpoint.is_file():
        raise SystemExit(f"{args.checkpoint}: no such checkpoint (train one with tools/quickstart.sh)")
    predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu")
    width = round(float(predictor.train_vehicle_width), 2)
    print(f"checkpoint {args.checkpoint} (training vehicle width {predictor.train_vehicle_width:.2f} px; "
          f"heading head: {'yes' if has_heading(predictor) else 'no'}); {date.today()}, {machine()}")

    data, manifest = render(args, width)
    print(f"sequences: {data} ({manifest['width']}x{manifest['height']}, seed {manifest['seed']}, vehicle width "
          f"{width} px, camera shake {args.camera_jitter:g} px)")
    for s in manifest["sequences"]:
        print(f"  {s['name']}: {s['frames']} frames, {s['tracks']} tracks ({s['moving_vehicles']} moving, "
              f"{s['parked_vehicles']} parked), {s['occlusion_frames']} frames with occlusions, {s['objects']} "
              f"objects ({s['difficult_objects']} difficult)")

    det, timing = detect(data, args.checkpoint, width)
    detector_ms = 1000 / timing["frames_per_second"]
    print(f"detector (infer.py on the mp4s, decode + detect + write): {detector_ms:.0f} ms/frame over "
          f"{timing['frames']} frames ({timing['date']}, {timing['machine']})")

    results, tracked, track_seconds = evaluate_rows(data, det, predictor)
    print()
    print_table(results)
    print()
    passed = claims(results)

    tracker_small = 1000 * float(np.median(track_seconds))
    print()
    print(f"on these sequences: tracker {tracker_small:.2f} ms/frame (median) vs detector {detector_ms:.0f} ms/frame "
          f"= {100 * tracker_small / detector_ms:.2f}%")
    tracker_ms, dense_ms, vehicles, n_det, (w, h) = dense_speed(predictor, data, det, width)
    print(f"~300 vehicles in view: tracker {tracker_ms:.2f} ms/frame (median) vs detector {dense_ms:.0f} ms/frame "
          f"(Predictor, median of 3) = {100 * tracker_ms / dense_ms:.2f}% (target < 5%): "
          f"{'PASS' if tracker_ms < 0.05 * dense_ms else 'FAIL'}")
    print(f"  on a {w}x{h} mosaic of {MOSAIC_TILES} benchmark frames: {vehicles:.0f} ground-truth vehicles and "
          f"{n_det:.0f} detections (score >= 0.05) per frame")
    tiles_ms = MOSAIC_TILES * detector_ms
    print(f"  the same pixels at infer.py's video rate: {MOSAIC_TILES} x {detector_ms:.0f} = {tiles_ms:.0f} ms/frame "
          f"-> tracker {100 * tracker_ms / tiles_ms:.2f}% (the shared CPUs make single timings vary ~2x)")

    if args.figure is not None:
        seq, frame = (args.figure_frame.split(":") if args.figure_frame else (None, None))
        draw_figure(args.figure, data, tracked, seq, None if frame is None else int(frame))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
