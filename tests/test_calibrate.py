"""Stored calibration: the factor sweep, storing it in checkpoints, ``tools/calibrate.py`` and
``eval.pascalvoc --calibrate --write-checkpoint``."""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch

from obbdet.calibration import (
    REFINE_STEP, SWEEP_WIDTH_RANGE, calibrate_checkpoint, calibration_sweep, store_calibration, sweep_factors,
)
from obbdet.checkpoint import checkpoint_inference_meta, load_checkpoint, save_checkpoint, set_calibration
from obbdet.eval import pascalvoc
from obbdet.formats import read_obb_json, write_obb_json
from obbdet.structures import ImageLabels
from obbdet.tools import calibrate as calibrate_cli
from tests.eval_support import noisy_cars

WIDENING = 1.08


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cars(seed: int = 0, n_images: int = 30, per_image: int = 25):
    """Ground-truth cars and detections of the right width, with a real detector's noise."""
    return noisy_cars(seed, n_images, per_image, widening=1.0)


def widened(labels: dict, factor: float) -> dict:
    """The same objects with every width (short side) multiplied by ``factor``."""
    out = {}
    for key, item in labels.items():
        boxes = item.boxes.copy()
        boxes[:, 3] *= factor
        out[key] = ImageLabels(boxes=boxes, classes=list(item.classes))
    return out


def minimal_checkpoint(path: Path) -> Path:
    """A file load_checkpoint accepts; storing a calibration needs nothing else."""
    save_checkpoint({"model": {"class_names": ["car"]}, "state_dict": {}, "vehicle_width": 18.0}, path)
    return path


def write_folder(folder: Path, labels: dict) -> Path:
    folder.mkdir(parents=True)
    for key, item in labels.items():
        write_obb_json(folder / f"{key}.json", item)
    return folder


# ---- the sweep and storing it ---------------------------------------------------------------------------

def test_sweep_grid_is_fine_and_contains_one():
    grid = sweep_factors(*SWEEP_WIDTH_RANGE)
    assert grid[0] == 0.8 and grid[-1] == 1.2 and len(grid) == 81 and 1.0 in grid
    assert np.allclose(np.diff(grid), 0.005)
    with pytest.raises(ValueError):
        sweep_factors(1.1, 0.9)


def test_stored_factors_follow_a_widened_ground_truth(tmp_path):
    gt, det = cars()
    first = minimal_checkpoint(tmp_path / "first.pt")
    second = minimal_checkpoint(tmp_path / "second.pt")

    result, stored = calibrate_checkpoint(first, gt, det, dataset="cars-1.00")
    assert abs(stored["width_scale"] - 1.0) <= 0.01
    _, stored_wide = calibrate_checkpoint(second, widened(gt, WIDENING), det, dataset="cars-1.08")
    ratio = stored_wide["width_scale"] / stored["width_scale"]
    assert abs(ratio - WIDENING) <= 0.01, (stored["width_scale"], stored_wide["width_scale"])

    # what was returned is what the files hold, and inference reads the factor from there
    for path, expected, name in ((first, stored, "cars-1.00"), (second, stored_wide, "cars-1.08")):
        calibration = load_checkpoint(path)["calibration"]
        assert calibration == expected and calibration["dataset"] == name
        assert calibration["length_scale"] is None  # not searched: inference keeps 1.0
        assert checkpoint_inference_meta(load_checkpoint(path))["width_scale"] == expected["width_scale"]
        date = datetime.fromisoformat(calibration["date"])
        assert date.tzinfo is not None and abs(datetime.now(timezone.utc) - date).total_seconds() < 600
        point = load_checkpoint(path)["operating_point"]  # measured with the chosen factor, replacing validation's
        assert point["source"] == f"calibration on {name}" and point["scores"]["car"] is not None

    # the stored table is the printed one: one row per grid factor (1.0 first, the reference), the choice
    table = load_checkpoint(first)["calibration"]["table"]
    rows = table["rows"]
    assert len(rows) == len(result.settings) == 81 + 1
    assert rows[0]["width_scale"] == 1.0 and rows[-1]["setting"].startswith("calibrated")
    assert rows[-1]["width_scale"] == stored["width_scale"]
    assert set(rows[0]["map"]) == set(result.map) and table["summary_key"] == "50-95"
    assert rows[-1]["map"]["50-95"] == pytest.approx(max(r["map"]["50-95"] for r in rows))
    assert table["classes"] == ["car"] and table["counts"]["det"] == 30 * 25
    # refined below the grid step around the best grid factor
    assert round(stored_wide["width_scale"] / REFINE_STEP) * REFINE_STEP == pytest.approx(stored_wide["width_scale"])


def test_length_search_is_stored_too(tmp_path):
    gt, det = cars(seed=3, n_images=10)
    ckpt = minimal_checkpoint(tmp_path / "c.pt")
    _, stored = calibrate_checkpoint(ckpt, gt, det, search_length=True)
    assert abs(stored["width_scale"] - 1.0) <= 0.015 and abs(stored["length_scale"] - 1.0) <= 0.02
    assert load_checkpoint(ckpt)["calibration"]["table"]["search_length"] is True


def test_set_calibration_replaces_and_validates(tmp_path):
    ckpt = minimal_checkpoint(tmp_path / "c.pt")
    set_calibration(ckpt, 0.93, 1.04)
    first = load_checkpoint(ckpt)["calibration"]
    assert (first["width_scale"], first["length_scale"], first["dataset"], first["table"]) == (0.93, 1.04, None, None)
    set_calibration(ckpt, 0.95, None, dataset="x", table={"rows": []})
    meta = checkpoint_inference_meta(load_checkpoint(ckpt))
    assert (meta["width_scale"], meta["length_scale"]) == (0.95, None)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            set_calibration(ckpt, bad)
    assert load_checkpoint(ckpt)["calibration"]["width_scale"] == 0.95


def test_store_needs_a_calibrated_result(tmp_path):
    gt, det = cars(n_images=2)
    from obbdet.eval import evaluate

    with pytest.raises(ValueError, match="calibrate=True"):
        store_calibration(minimal_checkpoint(tmp_path / "c.pt"), evaluate(gt, det))
    with pytest.raises(ValueError, match="contain 1.0"):
        calibration_sweep(gt, det, width_range=(0.8, 0.95))


# ---- eval --calibrate --write-checkpoint ---------------------------------------------------------------

def test_eval_write_checkpoint_stores_through_the_shared_function(tmp_path, capsys, monkeypatch):
    gt, det = cars(seed=5, n_images=10)
    gt_dir = write_folder(tmp_path / "gt", widened(gt, 1 / WIDENING))  # detections drawn 8% too wide
    det_dir = write_folder(tmp_path / "det", det)
    ckpt = minimal_checkpoint(tmp_path / "best.pt")
    import obbdet.calibration as calibration

    calls = []
    real = calibration.store_calibration
    monkeypatch.setattr(calibration, "store_calibration", lambda *a, **k: calls.append(a) or real(*a, **k))
    rc = pascalvoc.main(["-gt", str(gt_dir), "-det", str(det_dir), "--calibrate", "--write-checkpoint", str(ckpt),
                         "--dataset", "val-2025", "-q"])
    out = capsys.readouterr().out
    assert rc == 0 and len(calls) == 1
    stored = load_checkpoint(ckpt)["calibration"]
    assert abs(stored["width_scale"] - 1 / WIDENING) <= 0.01 and stored["dataset"] == "val-2025"
    assert f"stored in {ckpt}: width_scale {stored['width_scale']:g}" in out
    assert stored["table"]["rows"][-1]["setting"].startswith("calibrated")


@pytest.mark.parametrize("extra, code, message", [
    (["--write-checkpoint", "{ckpt}"], 2, "needs --calibrate"),
    (["--calibrate", "--dataset", "x"], 2, "--dataset needs --write-checkpoint"),
    (["--calibrate", "--write-checkpoint", "{missing}"], 3, "not found"),
    (["--calibrate", "--write-checkpoint", "{foreign}"], 2, "not an obbdet checkpoint"),
])
def test_eval_write_checkpoint_errors(tmp_path, capsys, extra, code, message):
    gt, det = cars(n_images=2)
    gt_dir, det_dir = write_folder(tmp_path / "gt", gt), write_folder(tmp_path / "det", det)
    ckpt = minimal_checkpoint(tmp_path / "best.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    names = {"ckpt": ckpt, "missing": tmp_path / "missing.pt", "foreign": foreign}
    rc = pascalvoc.main(["-gt", str(gt_dir), "-det", str(det_dir), "-q"] + [a.format(**names) for a in extra])
    err = capsys.readouterr().err.strip()
    assert rc == code and message in err and len(err.splitlines()) == 1, err
    assert "calibration" not in load_checkpoint(ckpt)


# ---- tools/calibrate.py ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def labelled_scenes(tmp_path_factory) -> Path:
    """Two synthetic scenes (what the tiny checkpoint was trained on) with obb_json ground truth."""
    from obbdet.datasets_registry.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("scenes")
    generate_synthetic_dataset(root, 2, seed=11, split="val", progress=False)
    return root


@pytest.fixture
def own_checkpoint(tiny_checkpoint, tmp_path) -> Path:
    """A copy of the session's tiny checkpoint, already holding a calibration (which must not be applied)."""
    path = Path(shutil.copy(tiny_checkpoint, tmp_path / "model.pt"))
    set_calibration(path, 0.6, 1.3, dataset="older")
    return path


def test_cli_calibrates_and_stores(own_checkpoint, labelled_scenes, tmp_path, capsys):
    from obbdet import Predictor

    out = tmp_path / "cal"
    rc = calibrate_cli.main([str(own_checkpoint), "--images", str(labelled_scenes / "images"), "--gt",
                             str(labelled_scenes / "labels"), "--vehicle-width", "-1", "--score", "0.001",
                             "--dataset", "synthetic-val", "--out", str(out), "--device", "cpu", "--length",
                             "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    printed = captured.out
    assert "mAP (%) by IoU threshold" in printed and "50-95%" in printed and "95%" in printed
    assert "w=0.800" in printed and "w=1.200" in printed and "calibrated w=" in printed
    stored = load_checkpoint(own_checkpoint)["calibration"]
    assert stored["dataset"] == "synthetic-val" and datetime.fromisoformat(stored["date"]).tzinfo is not None
    assert stored["length_scale"] is not None and stored["table"]["search_length"] is True
    assert len(stored["table"]["rows"]) == 81 + 1
    assert f"width_scale {stored['width_scale']:g}" in printed
    assert json.loads((out / "results.json").read_text())["calibration"]["width_scale"] == stored["width_scale"]
    assert (out / "calibration.png").stat().st_size > 1000

    # the detections were made with factors 1.0, not with the calibration the checkpoint held before
    image = sorted((labelled_scenes / "images").glob("*.png"))[0]
    plain = Predictor.from_checkpoint(own_checkpoint, device="cpu", score_threshold=0.001, width_scale=1.0,
                                      length_scale=1.0).predict(image)
    written = read_obb_json(out / "detections" / f"{image.stem}.json", detections=True)
    np.testing.assert_allclose(written.boxes[:, 2:4], plain.boxes[:, 2:4], rtol=1e-3, atol=1e-2)

    predictor = Predictor.from_checkpoint(own_checkpoint, device="cpu")
    assert predictor.option_sources["width"] == "checkpoint calibration"
    assert predictor.option_sources["length"] == "checkpoint calibration"
    assert predictor.options.width_scale == stored["width_scale"]
    assert predictor.options.length_scale == stored["length_scale"]


def test_cli_errors_are_one_line_and_store_nothing(own_checkpoint, labelled_scenes, tmp_path, capsys):
    images, labels = labelled_scenes / "images", labelled_scenes / "labels"
    (tmp_path / "empty").mkdir()
    (tmp_path / "other_gt").mkdir()
    write_obb_json(tmp_path / "other_gt" / "unrelated.json", ImageLabels(boxes=np.zeros((0, 5)), classes=[]))
    dota_named = tmp_path / "dota_named"
    dota_named.mkdir()
    for image in sorted(images.glob("*.png")):  # the right images, classes the checkpoint does not know
        write_obb_json(dota_named / f"{image.stem}.json",
                       ImageLabels(boxes=np.array([[50.0, 50.0, 40.0, 18.0, 0.3]]), classes=["small-vehicle"]))
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, foreign)
    before = own_checkpoint.read_bytes()
    cases = [
        ([own_checkpoint, "--images", tmp_path / "nowhere", "--gt", labels], "images folder"),
        ([own_checkpoint, "--images", images, "--gt", tmp_path / "nowhere"], "ground-truth folder"),
        ([tmp_path / "missing.pt", "--images", images, "--gt", labels], "not found"),
        ([foreign, "--images", images, "--gt", labels], "not an obbdet checkpoint"),
        ([own_checkpoint, "--images", tmp_path / "empty", "--gt", labels], "no images"),
        ([own_checkpoint, "--images", images, "--gt", tmp_path / "other_gt"], "has a ground-truth file"),
        ([own_checkpoint, "--images", images, "--gt", dota_named], "--rename SRC=DST"),
        ([own_checkpoint, "--images", images, "--gt", labels, "--gt-format", "dota"], "wrong format flag"),
    ]
    for args, message in cases:
        rc = calibrate_cli.main([str(a) for a in args] + ["--vehicle-width", "-1", "--device", "cpu", "--quiet",
                                                          "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and message in err and len(err.splitlines()) == 1, (args, err)
    assert own_checkpoint.read_bytes() == before
    assert not (tmp_path / "out").exists()


def test_script_runs_from_a_checkout():
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "tools" / "calibrate.py"), "--help"], cwd=root.parent,
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and "--write-checkpoint" not in proc.stdout and "--vehicle-width" in proc.stdout
