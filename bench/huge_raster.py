"""Benchmark a huge orthomosaic: ``infer.py`` reading a tiled GeoTIFF window by window versus decoding it whole.

1. Builds (once, cached under ``bench/.cache/``) a ``--size`` x ``--size`` tiled, georeferenced GeoTIFF of
   synthetic scenes with cars ``--vehicle-width`` px wide (``datasets_registry.synthetic_mosaic``); default
   30000 x 30000 (900 megapixels, 2.7 GB as RGB).
2. Runs ``infer.py`` on it in a fresh process, windowed (``--window-read-above 0``; the default for TIFFs over
   64 megapixels): wall time, megapixels/s, and the process's peak RSS (``getrusage`` in the child).
3. Baseline, same run: a fresh process reads the whole mosaic into one array (rasterio; OpenCV cannot decode a
   TIFF over 2 GB) and runs the same Predictor options over the same tiles cut from the array, writing obb_json
   the same way (``--no-baseline`` skips it). Prints both peak RSS figures, the throughput
   ratio, and whether the two obb_json files hold identical detections (they must: the same tiles, the same
   pixels at vehicle width = the training width).
4. Opens the GeoPackage written beside the JSON with pyogrio and checks it holds one polygon per detection,
   whose first corner maps back to the pixel detection's corner through the raster's transform.

Run: ``.venv/bin/python bench/huge_raster.py --ckpt runs/quickstart/best-checkpoint-011epoch.pt [--size 30000]``.
On 2 CPU cores the quickstart model detects ~0.5 megapixel/s: 30000 x 30000 takes about half an hour per run;
``--size 8192`` gives the same comparison in minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def build_mosaic(size: int, vehicle_width: float, seed: int) -> Path:
    from obbdet.datasets_registry.synthetic_mosaic import write_synthetic_mosaic

    path = ROOT / "bench" / ".cache" / f"mosaic_{size}_w{vehicle_width:g}_s{seed}.tif"
    if not path.exists():
        print(f"building {path.name} ...", flush=True)
        write_synthetic_mosaic(path, size, seed=seed, vehicle_width=vehicle_width)
    return path


# runs infer.py as __main__ and reports the process's own peak RSS (kB) on stderr when it exits
_MEASURED = ("import atexit, resource, runpy, sys; atexit.register(lambda: print('PEAK_RSS_KB', "
             "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)); sys.argv = sys.argv[1:]; "
             "runpy.run_path(sys.argv[0], run_name='__main__')")


def run_infer(mosaic: Path, ckpt: str, vehicle_width: float, out: Path, extra: list[str]) -> dict:
    """infer.py in a child process; wall seconds and the child's peak RSS (GB)."""
    start = time.perf_counter()
    cmd = [sys.executable, "-c", _MEASURED, str(ROOT / "infer.py"), str(mosaic), f"{vehicle_width:g}", ckpt, "obb",
           "--out", str(out), "--quiet", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"infer.py failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    peak = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_KB")]
    return {"seconds": seconds, "peak_rss_gb": int(peak[-1]) / 1024 ** 2, "log": proc.stdout}


def baseline_child(mosaic: str, ckpt: str, vehicle_width: float, batch: int, out: str) -> None:
    """The in-memory baseline (run in its own process): whole mosaic in RAM, same tiles, same writer."""
    import resource as _resource

    import numpy as np_
    import rasterio

    from obbdet.formats import write_obb_json
    from obbdet.inference.predictor import Predictor

    with rasterio.open(mosaic) as dataset:
        image = np_.ascontiguousarray(np_.moveaxis(dataset.read([1, 2, 3]), 0, -1))
    predictor = Predictor.from_checkpoint(ckpt, "cpu", score_threshold=0.3, batch=batch)
    detections = predictor.predict(image, vehicle_width=vehicle_width, name=Path(mosaic).name)
    target = Path(out) / f"{Path(mosaic).stem}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_obb_json(target, detections.to_labels(image=Path(mosaic).name))
    print("PEAK_RSS_KB", _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)


def run_baseline(mosaic: Path, ckpt: str, vehicle_width: float, batch: int, out: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--baseline-child", str(mosaic), ckpt, f"{vehicle_width:g}",
                           str(batch), str(out)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"baseline failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    peak = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_KB")]
    return {"seconds": seconds, "peak_rss_gb": int(peak[-1]) / 1024 ** 2}


def detections(out: Path, mosaic: Path):
    from obbdet.formats import read_obb_json

    return read_obb_json(out / f"{mosaic.stem}.json", detections=True)


def check_geopackage(out: Path, mosaic: Path, labels) -> str:
    import pyogrio.raw

    from obbdet.boxes import xywha_to_poly
    from obbdet.raster import read_georeference

    gpkg = out / f"{mosaic.stem}.gpkg"
    _, _, geometry, _ = pyogrio.raw.read(gpkg)
    if len(geometry) != len(labels):
        return f"GeoPackage holds {len(geometry)} polygons for {len(labels)} detections: MISMATCH"
    georef = read_georeference(mosaic)
    corners = georef.pixel_to_crs(xywha_to_poly(labels.boxes))
    rings = np.stack([np.frombuffer(g[13:], "<f8").reshape(-1, 2)[:4] for g in geometry])
    error = float(np.abs(rings - corners).max()) if len(rings) else 0.0
    return f"GeoPackage: {len(geometry)} polygons, corners within {error:.2e} m of the pixel detections"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", default=str(ROOT / "runs" / "quickstart" / "last.pt"))
    p.add_argument("--size", type=int, default=30000)
    p.add_argument("--vehicle-width", type=float, default=None,
                   help="car width drawn in the mosaic (default: the checkpoint's training width, no rescaling)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--no-baseline", action="store_true", help="skip the decode-whole-image baseline")
    args = p.parse_args()

    from obbdet.checkpoint import load_checkpoint

    width = args.vehicle_width or float(load_checkpoint(args.ckpt, "cpu")["vehicle_width"])
    mosaic = build_mosaic(args.size, round(width, 2), args.seed)
    megapixels = args.size ** 2 / 1e6
    work = ROOT / "bench" / ".cache" / "huge_raster_out"
    common = ["--batch", str(args.batch), "--score", "0.3"]
    windowed = run_infer(mosaic, args.ckpt, round(width, 2), work / "windowed", common + ["--window-read-above", "0"])
    dets = detections(work / "windowed", mosaic)
    truth = json.loads(mosaic.with_suffix(".json").read_text())
    print(f"mosaic {args.size} x {args.size} ({megapixels:.0f} MP, {len(truth['objects'])} vehicles drawn), "
          f"cars {width:.2f} px wide")
    rss = windowed["peak_rss_gb"]
    print(f"windowed reads: {windowed['seconds']:.0f} s, {megapixels / windowed['seconds']:.2f} MP/s, peak RSS "
          f"{rss:.2f} GB ({'below' if rss < 2 else 'ABOVE'} 2 GB), {len(dets)} detections")
    print(check_geopackage(work / "windowed", mosaic, dets))
    if args.no_baseline:
        return
    whole = run_baseline(mosaic, args.ckpt, round(width, 2), args.batch, work / "whole")
    base = detections(work / "whole", mosaic)
    same = (len(base) == len(dets) and np.array_equal(base.boxes, dets.boxes)
            and np.array_equal(base.scores, dets.scores) and base.classes == dets.classes)
    rss_whole = whole["peak_rss_gb"]
    print(f"baseline (decoded whole): {whole['seconds']:.0f} s, {megapixels / whole['seconds']:.2f} MP/s, peak RSS "
          f"{rss_whole:.2f} GB")
    print(f"throughput windowed / whole: {whole['seconds'] / windowed['seconds']:.2f}x; detections identical: "
          f"{'yes' if same else 'NO'}")


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    if len(sys.argv) == 7 and sys.argv[1] == "--baseline-child":
        baseline_child(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    else:
        main()
