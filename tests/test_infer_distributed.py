"""infer.py under torchrun: 2 gloo processes on the CPU give the single-process outputs, a corrupt image on one
rank is reported while the run completes, and --resume finds nothing left to do."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from obbdet.formats import read_obb_json

ROOT = Path(__file__).resolve().parents[1]
rasterio = pytest.importorskip("rasterio")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Five synthetic scenes (PNG), a small georeferenced mosaic (TIFF, read window by window below) and a
    corrupt JPEG."""
    from obbdet.datasets_registry.synthetic_mosaic import write_synthetic_mosaic
    from obbdet.datasets_registry.synthetic_scene import render_scene
    from obbdet.imageio import write_image_rgb

    root = tmp_path_factory.mktemp("dist") / "images"
    root.mkdir()
    for k in range(5):
        image, _ = render_scene(100 + k, 256, 192)
        write_image_rgb(root / f"scene{k}.png", image)
    write_synthetic_mosaic(root / "mosaic.tif", 600, seed=3, scene=256, progress=False)
    (root / "mosaic.json").unlink()  # the mosaic's ground truth is not an input
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root


def infer(args: list, nproc: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    return subprocess.run([*launcher, str(ROOT / "infer.py"), *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


def outputs(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): read_obb_json(p, detections=True) for p in sorted(out.rglob("*.json"))}


def test_two_processes_equal_one(folder, tiny_checkpoint, tmp_path):
    common = [folder, 16, tiny_checkpoint, "obb", "--score", "0.01", "--tile", "256", "--overlap", "64",
              "--window-read-above", "100000", "--threads", "1", "--quiet"]
    single = infer([*common, "--out", tmp_path / "single"])
    assert single.returncode == 1, single.stderr  # the corrupt JPEG fails; everything else is processed
    multi = infer([*common, "--out", tmp_path / "multi"], nproc=2)
    assert multi.returncode == 1, multi.stderr + multi.stdout
    assert "broken.jpg" in multi.stdout and "images: 6 processed, 1 failed" in multi.stdout
    one, two = outputs(tmp_path / "single"), outputs(tmp_path / "multi")
    assert sorted(one) == sorted(two) == sorted([f"scene{k}.json" for k in range(5)] + ["mosaic.json"])
    assert sum(len(labels) for labels in one.values()) > 0
    for name in one:  # the mosaic's tiles were shared by the two processes and merged on rank 0
        assert one[name].classes == two[name].classes, name
        assert np.array_equal(one[name].boxes, two[name].boxes) and np.array_equal(one[name].scores,
                                                                                   two[name].scores), name
    assert (tmp_path / "multi" / "mosaic.gpkg").is_file()  # georeferenced: polygons too

    again = infer([*common, "--out", tmp_path / "multi", "--resume"], nproc=2)
    assert again.returncode == 1, again.stderr  # the corrupt JPEG is tried (and fails) again
    assert "images: 0 processed, 1 failed, 6 skipped (output complete)" in again.stdout
    other = infer([*common, "--score", "0.5", "--out", tmp_path / "multi", "--resume"])  # the last --score wins
    assert other.returncode == 2 and "score" in other.stderr  # other settings: refused, nothing mixed
    record = json.loads((tmp_path / "multi" / ".obbdet-infer").read_text())
    assert record["settings"]["score"] == 0.01
