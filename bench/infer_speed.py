"""Benchmark inference: D0 throughput at 768 x 768, the cost of decoding + NMS, and a 3840 x 2176 frame end to end.

1. EfficientDet-D0 (``tf_efficientdet_d0`` with the angle head, 4 classes, random weights: speed does not depend
   on them) on 768 x 768 synthetic aerial scenes, batch 1, on the CPU:
   - baseline: the network's forward pass alone (median per image);
   - decoding + rotated NMS (``Detector.postprocess``) on the same outputs, as a share of the forward pass, at
     the score threshold (0.05) and at 0, where the cap (``pre_nms_topk`` = 1000 locations per class, 4000 for
     4 classes) is decoded and suppressed. Random weights score every anchor about 0.01, so at 0.05 they give no
     candidates at all; a trained model fills most of the cap: the score-0 line is the realistic load for
     random weights. ``--ckpt`` also times a trained checkpoint's own decoding + NMS on the scenes;
   - end to end (``run_inference`` over a folder: read JPEG, predict, merge, write obb_json): images/s and its
     ratio to the forward-only baseline.
2. A 3840 x 2176 frame (JPEG on disk) through ``run_inference`` (tiles 768, overlap 128, batch 4) in a fresh
   process: wall time, time spent merging tiles, peak Python/numpy memory (tracemalloc) and peak RSS growth
   (``getrusage``), beside the sizes of the decoded frame and of one tile batch; ``--frames`` adds other sizes
   so the memory growth can be compared across image sizes (it follows the tile batch, not the image).

3. Backends (``bench/backend_speed.py``): images/s at 768 and 1024 px, decoding + NMS included, of PyTorch eager
   float32 (the baseline), float32 channels_last, bfloat16 channels_last and the ONNX export run by ONNX Runtime,
   for the ``--ckpt`` model and random-weight ``--backend-variants``; ultralytics YOLO11n-obb / YOLO26n-obb
   exported to ONNX where ``ultralytics`` is installed (skipped with the reason otherwise).

Run: ``.venv/bin/python bench/infer_speed.py [--ckpt runs/quickstart/last.pt]`` (minutes on 2 busy CPU cores).
Timings on a shared machine are noisy: compare the ratios, measured in the same run, not absolute numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from obbdet import inference  # noqa: E402

CLASSES = ["car", "truck", "bus", "van"]
TILE, OVERLAP = 768, 128
VEHICLE_WIDTH_PX = 16.0  # synthetic scenes are drawn with cars this wide; the run uses no rescaling


def build_d0(seed: int = 0):
    """D0 with the angle head, random weights (speed does not depend on them), eval mode, CPU."""
    from obbdet.config import ModelConfig
    from obbdet.model.detector import build_detector

    torch.manual_seed(seed)
    return build_detector(ModelConfig(variant="tf_efficientdet_d0", image_size=TILE), CLASSES).eval()


def load_checkpoint_model(ckpt: str):
    """A trained checkpoint's detector (CPU, eval mode) and a label for it."""
    detector, _ = inference.load_detector(ckpt, "cpu")
    return detector, f"{ckpt} ({detector.spec['effdet_config']['name']})"


def scene_jpeg(path: Path, width: int, height: int, seed: int) -> np.ndarray:
    """Render a synthetic aerial scene, write it as JPEG, return the RGB array."""
    from obbdet.datasets_registry.synthetic import render_scene

    image, _ = render_scene(seed, width, height, vehicle_width=VEHICLE_WIDTH_PX)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes())
    return image


def _to_input(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).contiguous().float().div_(255.0)[None]


def _decode_only(detector, outputs, anchors, threshold: float) -> tuple[int, float]:
    """Candidates above ``threshold`` (top ``pre_nms_topk``) decoded to boxes, without NMS: (count, seconds)."""
    from obbdet.model.coder import decode_xywha

    start = time.perf_counter()
    post = detector.postprocess
    _, anchor_idx, _ = post._candidates(outputs["cls_logits"][0], threshold, post.pre_nms_topk)
    decode_xywha(outputs["box_deltas"][0, anchor_idx], outputs["angle_vec"][0, anchor_idx], anchors[anchor_idx])
    return len(anchor_idx), time.perf_counter() - start


def time_stages(detector, images: list[np.ndarray], score_threshold: float) -> dict:
    """Median forward time; median postprocess (decode + NMS) time at ``score_threshold`` and at 0, and how
    much of the latter is decoding (candidate selection + box decoding) rather than NMS."""
    times = {"forward": [], "post": [], "post_worst": [], "decode_worst": [], "dets": [], "dets_worst": [],
             "candidates": [], "candidates_worst": []}
    with torch.inference_mode():
        detector(_to_input(images[0]))  # warm-up (allocations, anchor cache)
        for image in images:
            x = _to_input(image)
            start = time.perf_counter()
            outputs = detector(x)
            times["forward"].append(time.perf_counter() - start)
            anchors = detector.anchors_for(x.shape[-2], x.shape[-1])
            for threshold, suffix in ((score_threshold, ""), (0.0, "_worst")):
                start = time.perf_counter()
                dets = detector.postprocess(outputs, anchors, score_threshold=threshold)
                times["post" + suffix].append(time.perf_counter() - start)
                times["dets" + suffix].append(len(dets[0]["boxes"]))
                count, seconds = _decode_only(detector, outputs, anchors, threshold)
                times["candidates" + suffix].append(count)
                if suffix:
                    times["decode_worst"].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}


def end_to_end(detector, folder: Path, out: Path, score_threshold: float, batch: int):
    """``InferenceSummary`` of a folder run (tiles 768, no rescaling)."""
    images = inference.discover_images(folder)
    options = inference.InferenceOptions(tile=TILE, overlap=OVERLAP, batch=batch, score_threshold=score_threshold)
    return inference.run_inference(inference.Predictor(detector, CLASSES, options=options), images, folder, out,
                                   progress=False)


def _print_stages(stages: dict, score: float, baseline: float, what: str) -> None:
    """Decode + NMS lines of :func:`time_stages` results, as shares of ``baseline`` (a forward time)."""
    decode_nms = 1000 * (stages["post_worst"] - stages["decode_worst"])
    print(f"  decode + NMS at score {score:<5g}:   {1000 * stages['post']:8.1f} ms/image = "
          f"{100 * stages['post'] / baseline:5.1f}% of {what}  [target <= 10%] "
          f"({stages['candidates']:.0f} candidates -> {stages['dets']:.0f} detections)")
    print(f"  decode + NMS at score 0 (cap):  {1000 * stages['post_worst']:8.1f} ms/image = "
          f"{100 * stages['post_worst'] / baseline:5.1f}% of {what} ({stages['candidates_worst']:.0f} "
          f"candidates -> {stages['dets_worst']:.0f} detections; decoding {1000 * stages['decode_worst']:.0f} ms, "
          f"NMS {decode_nms:.0f} ms)")


def bench_768(args) -> None:
    detector = build_d0()
    with tempfile.TemporaryDirectory(prefix="obbdet-bench-") as tmp:
        folder = Path(tmp) / "frames"
        images = [scene_jpeg(folder / f"scene_{i:02d}.jpg", TILE, TILE, seed=100 + i) for i in range(args.images)]
        stages = time_stages(detector, images, args.score)
        summary = end_to_end(detector, folder, Path(tmp) / "det", args.score, batch=1)
        trained = None
        if args.ckpt:
            trained_detector, trained_label = load_checkpoint_model(args.ckpt)
            trained = time_stages(trained_detector, images, args.score)
    forward = stages["forward"]
    per_image = summary.seconds / max(summary.images, 1)
    print(f"{torch.get_num_threads()} CPU thread(s); {args.images} synthetic scenes of {TILE}x{TILE}")
    print("tf_efficientdet_d0 (angle head, random weights):")
    print(f"  forward pass (baseline):       {1000 * forward:8.1f} ms/image ({1 / forward:.2f} images/s)")
    _print_stages(stages, args.score, forward, "the D0 forward")
    print(f"  end to end (read JPEG, predict, merge, write obb_json): {summary.images_per_second:.2f} images/s, "
          f"{1000 * per_image:.1f} ms/image = {per_image / forward:.2f}x the forward pass")
    if trained is not None:
        print(f"{trained_label} (trained: realistic candidate counts):")
        print(f"  forward pass:                  {1000 * trained['forward']:8.1f} ms/image")
        _print_stages(trained, args.score, forward, "the D0 forward")


def frame_child(width: int, height: int, ckpt: str | None, batch: int, score: float) -> dict:
    """Run in a fresh process: one ``width x height`` JPEG through ``run_inference``; time and memory."""
    detector = load_checkpoint_model(ckpt)[0] if ckpt else build_d0()
    with tempfile.TemporaryDirectory(prefix="obbdet-frame-") as tmp:
        folder = Path(tmp) / "frames"
        scene_jpeg(folder / "frame.jpg", width, height, seed=7)
        with torch.inference_mode():  # warm-up outside the measurement
            detector.predict(torch.zeros(1, 3, TILE, TILE))
        merge_seconds = []
        merge = inference.merge_tile_detections

        def timed_merge(*a, **k):  # cross-tile merging (cut-vehicle rule + rotated NMS), timed
            start = time.perf_counter()
            try:
                return merge(*a, **k)
            finally:
                merge_seconds.append(time.perf_counter() - start)

        inference.merge_tile_detections = timed_merge
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        summary = end_to_end(detector, folder, Path(tmp) / "det", score, batch)
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        inference.merge_tile_detections = merge
    tiles = len(inference.plan_tiles(width, height, TILE, OVERLAP, align=detector.stride))
    return {"width": width, "height": height, "tiles": tiles, "seconds": summary.seconds,
            "merge_seconds": sum(merge_seconds),
            "detections": summary.detections, "capped": len(summary.capped), "failures": len(summary.failures),
            "traced_peak_mb": traced_peak / 2**20, "rss_growth_mb": (rss_after - rss_before) / 1024,
            "image_mb": width * height * 3 / 2**20, "batch_mb": batch * TILE * TILE * 3 * (1 + 4) / 2**20}


def bench_frames(args) -> None:
    models = [(None, "D0, random weights")] + ([(args.ckpt, Path(args.ckpt).name)] if args.ckpt else [])
    for size in args.frames.split(","):
        width, height = (int(v) for v in size.lower().split("x"))
        for ckpt, label in models:
            cmd = [sys.executable, __file__, "--frame-child", f"{width}x{height}", "--batch", str(args.batch),
                   "--score", str(args.score), "--threads", str(args.threads)] + (["--ckpt", ckpt] if ckpt else [])
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"frame {size} ({label}): failed\n{done.stderr[-2000:]}")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"frame {r['width']}x{r['height']}, {label} ({r['tiles']} tiles of {TILE}, batch {args.batch}): "
                  f"{r['seconds']:.1f} s end to end ({r['seconds'] / r['tiles']:.2f} s/tile), {r['detections']} "
                  f"detections{' (max_det cap reached and reported)' if r['capped'] else ''}, merging tiles "
                  f"{1000 * r['merge_seconds']:.0f} ms; peak memory: numpy/Python {r['traced_peak_mb']:.0f} MB "
                  f"(tracemalloc), RSS growth {r['rss_growth_mb']:.0f} MB; for scale: decoded frame "
                  f"{r['image_mb']:.0f} MB, one tile batch (uint8 + float32) {r['batch_mb']:.0f} MB")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", default=None,
                        help="a trained obbdet checkpoint: its decode + NMS is timed on the same scenes (realistic "
                             "candidate counts, which random D0 weights do not give), and it runs the frames too")
    parser.add_argument("--images", type=int, default=4, help="768x768 scenes timed (default 4)")
    parser.add_argument("--frames", default="3840x2176", help="comma-separated WxH frame sizes (default 3840x2176)")
    parser.add_argument("--batch", type=int, default=4, help="tile batch for the frames (default 4)")
    parser.add_argument("--score", type=float, default=0.05, help="score threshold (default 0.05)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on a shared, oversubscribed CPU more threads spin and "
                             "run several times slower)")
    parser.add_argument("--skip-768", action="store_true", help="skip the 768 x 768 D0 section")
    parser.add_argument("--backends", default="768,1024",
                        help="comma-separated square sizes of the backend comparison (default 768,1024; empty: skip)")
    parser.add_argument("--backend-variants", default="obbdet_small,tf_efficientdet_d0",
                        help="random-weight variants in the backend comparison, beside --ckpt (default "
                             "obbdet_small,tf_efficientdet_d0; obbdet_tiny is added without --ckpt)")
    parser.add_argument("--frame-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.frame_child:
        width, height = (int(v) for v in args.frame_child.split("x"))
        print(json.dumps(frame_child(width, height, args.ckpt, args.batch, args.score)))
        return 0
    if not args.skip_768:
        bench_768(args)
    if args.frames:
        bench_frames(args)
    if args.backends:
        from backend_speed import bench_backends

        variants = [v for v in args.backend_variants.split(",") if v]
        if not args.ckpt and "obbdet_tiny" not in variants:
            variants.insert(0, "obbdet_tiny")
        bench_backends(args.ckpt, [int(v) for v in args.backends.split(",")], args.images, args.score, variants)
    return 0


if __name__ == "__main__":
    sys.exit(main())
