"""Speed of ``python -m eval.pascalvoc`` against a straightforward per-pair shapely evaluator.

1. A generated set shaped like a real aerial test set (170 images, ~3400 GT OBBs of 4 classes, ~3700
   detections with realistic jitter, duplicates, missed objects, class confusions and false positives) is
   written as obb_json into a temporary folder. The whole CLI run (process start included) at 10 IoU
   thresholds and 5 width scales is timed as a subprocess (best of ``--repeats``), then a straightforward
   evaluator (shapely polygon IoU per same-image same-class pair, VOC matching in Python loops) is run on
   the same data in this process, and the mAPs of both are compared.
2. The same CLI run on 10,000 images / 300,000 GT objects (plus their detections).

Usage: ``python bench/eval_speed.py [--repeats 3] [--skip-large] [--large-images 10000]``
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# class: (share of objects, mean length px, mean width px)
CLASSES = {"car": (0.72, 44.0, 19.0), "van": (0.12, 55.0, 23.0), "truck": (0.11, 95.0, 28.0),
           "bus": (0.05, 115.0, 31.0)}
IMAGE_SIZE = (1920, 1080)
WIDTH_SCALES = "1.0,0.938,0.923,0.908,0.892"


# ---------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------

def _objects(rng, n: int) -> dict[str, np.ndarray]:
    names = list(CLASSES)
    share = np.array([CLASSES[c][0] for c in names])
    cls = rng.choice(len(names), n, p=share / share.sum())
    length = np.array([CLASSES[names[c]][1] for c in cls]) * rng.normal(1.0, 0.08, n)
    width = np.array([CLASSES[names[c]][2] for c in cls]) * rng.normal(1.0, 0.06, n)
    # parked rows: a few dominant orientations per image, plus free traffic
    angle = np.where(rng.random(n) < 0.7, rng.choice([0.0, 90.0, 33.0], n), rng.uniform(-90, 90, n))
    angle = angle + rng.normal(0, 2.0, n)
    cx = rng.uniform(60, IMAGE_SIZE[0] - 60, n)
    cy = rng.uniform(60, IMAGE_SIZE[1] - 60, n)
    return {"cls": cls, "cx": cx, "cy": cy, "length": length, "width": width, "angle": angle,
            "difficult": rng.random(n) < 0.03}


def _detections(rng, gt: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = len(gt["cls"])
    found = rng.random(n) < 0.93
    dup = found & (rng.random(n) < 0.08)
    src = np.concatenate([np.flatnonzero(found), np.flatnonzero(dup)])
    m = len(src)
    quality = np.concatenate([np.ones(found.sum()), np.full(dup.sum(), 2.5)])  # duplicates are sloppier
    det = {
        "cls": gt["cls"][src].copy(),
        "cx": gt["cx"][src] + rng.normal(0, 1.5, m) * quality,
        "cy": gt["cy"][src] + rng.normal(0, 1.5, m) * quality,
        "length": gt["length"][src] * rng.normal(1.0, 0.04, m),
        "width": gt["width"][src] * rng.normal(1.06, 0.05, m),  # detectors draw too-wide boxes
        "angle": gt["angle"][src] + rng.normal(0, 2.0, m) * quality,
        "score": np.clip(rng.beta(6, 2, m) / quality, 0.01, 1.0),
    }
    confused = rng.random(m) < 0.02
    det["cls"][confused] = rng.integers(0, len(CLASSES), confused.sum())
    n_fp = max(1, int(0.08 * n))
    fp = _objects(rng, n_fp)
    for key in ("cls", "cx", "cy", "length", "width", "angle"):
        det[key] = np.concatenate([det[key], fp[key]])
    det["score"] = np.round(np.concatenate([det["score"], rng.beta(2, 6, n_fp)]), 4)  # rounding: ties happen
    return det


def _write_json(path: Path, objs: dict[str, np.ndarray], detections: bool) -> None:
    names = list(CLASSES)
    angle = (objs["angle"] + 90.0) % 180.0 - 90.0
    records = []
    for k in range(len(objs["cls"])):
        rec = {"class": names[objs["cls"][k]], "cx": round(float(objs["cx"][k]), 2),
               "cy": round(float(objs["cy"][k]), 2), "length": round(float(objs["length"][k]), 2),
               "width": round(float(objs["width"][k]), 2), "angle": round(float(angle[k]), 2)}
        if detections:
            rec["score"] = float(objs["score"][k])
        elif objs["difficult"][k]:
            rec["difficult"] = True
        records.append(rec)
    doc = {"image": path.stem + ".jpg", "width": IMAGE_SIZE[0], "height": IMAGE_SIZE[1], "objects": records}
    path.write_text(json.dumps(doc))


def generate(folder: Path, n_images: int, objects_per_image: float, seed: int = 0) -> tuple[int, int]:
    """Write ``gt/`` and ``det/`` obb_json folders. Returns (GT objects, detections)."""
    rng = np.random.default_rng(seed)
    (folder / "gt").mkdir(parents=True, exist_ok=True)
    (folder / "det").mkdir(parents=True, exist_ok=True)
    n_gt = n_det = 0
    for i in range(n_images):
        gt = _objects(rng, max(1, rng.poisson(objects_per_image)))
        det = _detections(rng, gt)
        _write_json(folder / "gt" / f"img{i:05d}.json", gt, False)
        _write_json(folder / "det" / f"img{i:05d}.json", det, True)
        n_gt += len(gt["cls"])
        n_det += len(det["cls"])
    return n_gt, n_det


# ---------------------------------------------------------------------------------------------------
# Straightforward baseline: shapely polygons, Python loops
# ---------------------------------------------------------------------------------------------------

def _polygon(cx, cy, length, width, angle_deg):
    from shapely.geometry import Polygon

    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    pts = [(-length / 2, -width / 2), (length / 2, -width / 2), (length / 2, width / 2), (-length / 2, width / 2)]
    return Polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts])


def _voc_ap(recall: list[float], precision: list[float]) -> float:
    mrec = [0.0] + recall + [1.0]
    mpre = [0.0] + precision + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def baseline_evaluate(folder: Path, thresholds: list[float], width_scales: list[float]) -> list[float]:
    """mAP averaged over thresholds, per width scale; every rule as eval's default (VOC every point)."""
    gt, det = {}, []
    for path in sorted((folder / "gt").glob("*.json")):
        objs = json.loads(path.read_text())["objects"]
        gt[path.stem] = [(o["class"], _polygon(o["cx"], o["cy"], o["length"], o["width"], o["angle"]),
                          bool(o.get("difficult", False))) for o in objs]
    for path in sorted((folder / "det").glob("*.json")):
        for o in json.loads(path.read_text())["objects"]:
            det.append((path.stem, o))
    classes = sorted({c for objs in gt.values() for c, _, _ in objs})
    out = []
    for scale in width_scales:
        polys = [(stem, o["class"], o["score"], _polygon(o["cx"], o["cy"], o["length"], o["width"] * scale, o["angle"]))
                 for stem, o in det]
        maps = []
        for t in thresholds:
            aps = []
            for cls in classes:
                dets = sorted([d for d in polys if d[1] == cls], key=lambda d: -d[2])
                npos = sum(1 for objs in gt.values() for c, _, diff in objs if c == cls and not diff)
                used = set()
                tp, fp = [], []
                for stem, _, _, poly in dets:
                    best, best_j = 0.0, -1
                    for j, (c, g, _) in enumerate(gt.get(stem, [])):
                        if c != cls:
                            continue
                        inter = poly.intersection(g).area
                        iou = inter / (poly.area + g.area - inter) if inter > 0 else 0.0
                        if iou > best:
                            best, best_j = iou, j
                    if best >= t and best_j >= 0:
                        if gt[stem][best_j][2]:
                            continue
                        hit = (stem, best_j) not in used
                        used.add((stem, best_j))
                        tp.append(int(hit))
                        fp.append(int(not hit))
                    else:
                        tp.append(0)
                        fp.append(1)
                tp_c, fp_c, recall, precision = 0, 0, [], []
                for a, b in zip(tp, fp):
                    tp_c, fp_c = tp_c + a, fp_c + b
                    recall.append(tp_c / npos)
                    precision.append(tp_c / (tp_c + fp_c))
                aps.append(_voc_ap(recall, precision))
            maps.append(sum(aps) / len(aps))
        out.append(sum(maps) / len(maps))
    return out


# ---------------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------------

def run_cli(folder: Path, repeats: int, extra: list[str] | None = None) -> tuple[float, float, str]:
    """Best wall time (process start included) of the CLI over ``repeats`` runs, the CPU time (user + sys)
    of that run, and its stdout. The CPU time tells a loaded machine (wall >> CPU) from a slow program."""
    cmd = [sys.executable, "-m", "eval.pascalvoc", "-gt", str(folder / "gt"), "-det", str(folder / "det"),
           "--width-scales", WIDTH_SCALES, "--no-per-class", *(extra or [])]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    best, best_cpu, out = float("inf"), 0.0, ""
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise SystemExit(f"CLI failed ({proc.returncode}): {proc.stderr.strip()}")
        if elapsed < best:
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            best, best_cpu, out = elapsed, cpu, proc.stdout
    return best, best_cpu, out


def eval_settings_summary(folder: Path, scales: list[float]) -> list[float]:
    """Per-setting mAP50-95 (fractions) from the eval API on the same folders (untimed, for comparison)."""
    from obbdet.eval import evaluate
    from obbdet.eval.errors import WarningLog
    from obbdet.eval.loading import load_folder

    warnings = WarningLog()
    gt, _ = load_folder(folder / "gt", "obb_json", detections=False, warnings=warnings)
    det, _ = load_folder(folder / "det", "obb_json", detections=True, warnings=warnings)
    result = evaluate(gt, det, width_scales=scales, coco_summary=False)
    return [s.summary for s in result.settings]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--large-images", type=int, default=10000)
    args = parser.parse_args(argv)
    thresholds = list(np.linspace(0.5, 0.95, 10))
    scales = [float(s) for s in WIDTH_SCALES.split(",")]
    with tempfile.TemporaryDirectory(prefix="eval_speed_") as tmp:
        small = Path(tmp) / "realistic"
        n_gt, n_det = generate(small, 170, 20.0, seed=1)
        cli_time, cli_cpu, _ = run_cli(small, args.repeats)
        print(f"machine load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"realistic set: 170 images, {n_gt} GT, {n_det} detections, 10 thresholds x 5 width scales")
        print(f"  eval CLI (whole process, best of {args.repeats}): {cli_time:.3f} s wall, {cli_cpu:.3f} s CPU")
        if not args.skip_baseline:
            start = time.perf_counter()
            base = baseline_evaluate(small, thresholds, scales)
            base_time = time.perf_counter() - start
            ours = eval_settings_summary(small, scales)
            diff = max(abs(a - b) for a, b in zip(base, ours))
            print(f"  shapely per-pair baseline (same data, in process): {base_time:.3f} s")
            print(f"  ratio baseline / eval CLI: {base_time / cli_time:.1f}x")
            print(f"  mAP50-95 per width scale, eval: {[round(100 * v, 2) for v in ours]}, baseline: "
                  f"{[round(100 * v, 2) for v in base]} (max difference {diff:.1e})")
        if not args.skip_large:
            large = Path(tmp) / "large"
            start = time.perf_counter()
            n_gt, n_det = generate(large, args.large_images, 30.0, seed=2)
            gen_time = time.perf_counter() - start
            large_time, large_cpu, _ = run_cli(large, 1)
            large_one, one_cpu, _ = run_cli(large, 1, ["--width-scales", "1.0"])
            print(f"large set: {args.large_images} images, {n_gt} GT, {n_det} detections "
                  f"(generated in {gen_time:.1f} s)")
            print(f"  eval CLI, 10 thresholds x 5 width scales: {large_time:.2f} s wall, {large_cpu:.2f} s CPU")
            print(f"  eval CLI, 10 thresholds x 1 width scale:  {large_one:.2f} s wall, {one_cpu:.2f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
