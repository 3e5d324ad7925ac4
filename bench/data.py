"""Data pipeline speed: registry start-up (cold parse vs annotation cache) and augmented samples/s per core.

1. Start-up: ``--files`` (default 50k) DOTA label files with 1-40 vehicles each (headers on half of them) are
   generated into a temporary folder, each with an image (a tiny real PNG: the importer reads only image
   headers, whose cost does not depend on the image size). ``build_registry`` of a one-dataset config is
   timed cold (parse + cache write) and then from the annotation cache, and the ratio printed.
2. Augmentation: samples/s on one CPU core (OpenCV and torch limited to one thread) of the training input
   path at 768x768: decode the image, run ``obbdet.augment``'s training pipeline on image + boxes. Needs
   ``obbdet.augment``; prints that it is unavailable otherwise.

    .venv/bin/python bench/data.py [--files 50000] [--seed 0] [--augment-seconds 10] [--tmp-dir DIR]
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from obbdet.datasets_registry import build_registry  # noqa: E402
from obbdet.boxes import xywha_to_poly  # noqa: E402

IMAGE_SIZE = 1024  # coordinates of the generated labels (a DOTA split patch)
AUGMENT_SIZE = 768


# ------------------------------------------------------------------------------------------------
# Start-up
# ------------------------------------------------------------------------------------------------

def _tiny_png() -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", np.full((8, 8, 3), 127, np.uint8))
    assert ok
    return data.tobytes()


def _dota_files(rng: np.random.Generator, files: int) -> list[str]:
    """The text of ``files`` DOTA label files: 1-40 vehicles each, header lines on every other file."""
    counts = rng.integers(1, 41, files)
    n = int(counts.sum())
    boxes = np.column_stack([rng.uniform(20, IMAGE_SIZE - 20, (n, 2)), rng.uniform(30, 60, n), rng.uniform(12, 25, n),
                             rng.uniform(-np.pi / 2, np.pi / 2, n)])
    polys = xywha_to_poly(boxes).reshape(n, 8)
    classes = np.where(rng.random(n) < 0.85, "small-vehicle", "large-vehicle")
    difficult = (rng.random(n) < 0.1).astype(int)
    fmt = "%.1f %.1f %.1f %.1f %.1f %.1f %.1f %.1f %s %d"
    lines = [fmt % (*poly, c, d) for poly, c, d in zip(polys.tolist(), classes.tolist(), difficult.tolist())]
    bounds = np.concatenate([[0], np.cumsum(counts)])
    header = "imagesource:GoogleEarth\ngsd:0.146343590398\n"
    return [(header if i % 2 == 0 else "") + "\n".join(lines[bounds[i]:bounds[i + 1]]) + "\n" for i in range(files)]


def generate_dota(root: Path, files: int, seed: int) -> int:
    """``files`` DOTA label files + images under ``root``; returns the object count."""
    texts = _dota_files(np.random.default_rng(seed), files)
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    png = _tiny_png()
    for i, text in enumerate(texts):
        (root / "labelTxt" / f"P{i:06d}.txt").write_text(text)
        (root / "images" / f"P{i:06d}.png").write_bytes(png)
    return sum(text.count("-vehicle") for text in texts)


def _scratch_dir(requested: str | None) -> Path:
    """A temporary folder: ``requested``, else /dev/shm (memory-backed: 100k small files without disk
    write-back noise from other processes), else the system temporary folder."""
    base = requested or ("/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    return Path(tempfile.mkdtemp(prefix="obbdet-bench-data-", dir=base))


def bench_startup(files: int, seed: int, tmp_dir: str | None) -> None:
    tmp = _scratch_dir(tmp_dir)
    try:
        start = time.perf_counter()
        objects = generate_dota(tmp / "dota", files, seed)
        print(f"generated {files} DOTA label files ({objects} objects) in {tmp} in "
              f"{time.perf_counter() - start:.1f} s")
        config = {"seed": seed, "cache": str(tmp / "cache"), "datasets": [
            {"name": "dota_50k", "type": "dota", "root": str(tmp / "dota"), "val_fraction": 0.05,
             "group_by": r"^(P\d{4})"}]}
        (cold, cold_cpu), registry = _timed(lambda: build_registry(config))
        (cached, cached_cpu), again = _timed(lambda: build_registry(config))
        assert len(again.train) == len(registry.train) and len(again.val) == len(registry.val)
        assert sum(len(s) for s in again.train) == sum(len(s) for s in registry.train)
        print(f"registry start-up, {files} label files: cold (parse + cache write) {cold:.2f} s, "
              f"cached {cached:.2f} s  ->  {cold / cached:.1f}x faster from the cache")
        print(f"  CPU time of this process: cold {cold_cpu:.2f} s, cached {cached_cpu:.2f} s  ->  "
              f"{cold_cpu / cached_cpu:.1f}x (wall times include waits for a busy machine)")
        print(f"  ({files / cold:.0f} files/s parsed, {files / cached:.0f} files/s validated and loaded "
              "from the cache)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _timed(fn):
    """((wall seconds, CPU seconds of this process), fn())."""
    start, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return (time.perf_counter() - start, time.process_time() - cpu), value


# ------------------------------------------------------------------------------------------------
# Augmentation
# ------------------------------------------------------------------------------------------------

def _augment_samples(seed: int) -> tuple[list, str]:
    """Samples to augment: the real DOTA fixtures when present, else a few synthetic scenes."""
    fixtures = Path(os.environ.get("OBBDET_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
    if (fixtures / "dota" / "labelTxt").is_dir():
        from obbdet.datasets_registry import load_dataset

        cache = Path(tempfile.mkdtemp(prefix="obbdet-bench-cache-"))
        try:
            samples = load_dataset("dota", fixtures / "dota", classes=["car", "truck"], cache=cache)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        return samples, f"{len(samples)} real DOTA images ({sum(len(s) for s in samples)} vehicles)"
    from obbdet.datasets_registry.synthetic import load_synthetic

    samples = load_synthetic(None, n_train=4, n_val=0, seed=seed, width=1024, height=1024, progress=False)
    return samples, f"{len(samples)} synthetic 1024 px scenes"


def _samples_per_second(samples: list, transform, seconds: float) -> tuple[float, float, int, list[str]]:
    """(samples per wall second, samples per CPU second, samples done, failure reports).

    Failures are counted and reported, not timed. The CPU-second rate is the stable one on a busy machine.
    """
    from obbdet.data import load_image_rgb, sample_target

    done, attempts, failures, wall, cpu = 0, 0, [], 0.0, 0.0
    while (wall < seconds or attempts < len(samples)) and attempts < 100 * len(samples) + 1000:
        sample = samples[attempts % len(samples)]
        attempts += 1
        start, start_cpu = time.perf_counter(), time.process_time()
        try:
            image, target = transform(load_image_rgb(sample), sample_target(sample))
        except Exception as exc:  # noqa: BLE001 - the bench reports any pipeline failure and goes on
            failures.append(f"{Path(sample.image_path).name}: {type(exc).__name__}: {exc}")
            continue
        wall += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        assert image.shape[:2] == (AUGMENT_SIZE, AUGMENT_SIZE), image.shape
        done += 1
    return done / max(wall, 1e-9), done / max(cpu, 1e-9), done, failures


def bench_augment(seconds: float, seed: int) -> None:
    try:
        from obbdet.augment import build_train_transform, build_val_transform
    except ImportError as exc:
        print(f"augmented samples/s: unavailable (obbdet.augment: {exc})")
        return
    import cv2
    import torch

    cv2.setNumThreads(1)  # one CPU core: the figure multiplies by the DataLoader workers
    torch.set_num_threads(1)
    samples, what = _augment_samples(seed)
    baseline, baseline_cpu, n_base, failed = _samples_per_second(samples, build_val_transform(AUGMENT_SIZE),
                                                                  seconds / 3)
    results = {p: _samples_per_second(samples, build_train_transform(AUGMENT_SIZE, rotate_prob=p), seconds / 3)
               for p in (0.5, 0.9)}
    print(f"augmentation at {AUGMENT_SIZE}x{AUGMENT_SIZE} on one CPU core (one thread), {what}:")
    print(f"  decode + validation transform (baseline): {baseline:.1f} samples/s, {baseline_cpu:.1f} per CPU second "
          f"({n_base} samples)")
    for rotate_prob, (rate, rate_cpu, n, fails) in results.items():
        print(f"  decode + training augmentation, rotate_prob {rotate_prob}: {rate:.1f} samples/s, {rate_cpu:.1f} per "
              f"CPU second ({n} samples)  ->  {rate_cpu / baseline_cpu:.2f}x the baseline rate")
        failed += fails
    if failed:
        print(f"  {len(failed)} transform calls FAILED and were not timed; first: {failed[0]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=50_000, help="DOTA label files for the start-up bench")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmp-dir", default=None, help="where to generate the label files (default /dev/shm)")
    parser.add_argument("--augment-seconds", type=float, default=10.0, help="time budget of the augmentation bench")
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--skip-augment", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    if not args.skip_startup:
        bench_startup(args.files, args.seed, args.tmp_dir)
    if not args.skip_augment:
        bench_augment(args.augment_seconds, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
