"""The real-data workflow end to end, each link asserted: merge datasets of different scale in their native
formats, train (tiny model) with validation through the inference path, calibrate the width factor on a
labelled folder, detect with the stored factor, evaluate.

Datasets: the DOTA fixtures (native DOTA labels, car width measured), the same images as DroneVehicle XML with
a few axis-aligned ``<bndbox>`` objects (car width given), and synthetic scenes written as obb_json at another
resolution (car width given).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from obbdet.boxes import scale_xywha_sides, xywha_to_aabb, xywha_to_poly
from obbdet.checkpoint import load_checkpoint
from obbdet.formats import read_dota, read_obb_json, write_obb_json
from obbdet.imageio import read_image_rgb, write_image_rgb
from obbdet.iou import box_iou_rotated

ROOT = Path(__file__).resolve().parents[1]
WIDENING = 1.08
COMMON_WIDTH = 16.0


def _dronevehicle_xml(labels, stem: str, bndbox_every: int = 4) -> str:
    objects = []
    for k, (box, cls) in enumerate(zip(labels.boxes, labels.classes)):
        name = {"small-vehicle": "car", "large-vehicle": "truck"}.get(cls)
        if name is None or box[3] <= 0:
            continue
        if k % bndbox_every == 0:  # an axis-aligned annotation: its angle is unknown, not 0
            x0, y0, x1, y1 = xywha_to_aabb(box[None])[0]
            shape = f"<bndbox><xmin>{x0:.1f}</xmin><ymin>{y0:.1f}</ymin><xmax>{x1:.1f}</xmax><ymax>{y1:.1f}</ymax></bndbox>"
        else:
            poly = xywha_to_poly(box[None])[0]
            shape = "<polygon>" + "".join(f"<x{i + 1}>{x:.1f}</x{i + 1}><y{i + 1}>{y:.1f}</y{i + 1}>"
                                          for i, (x, y) in enumerate(poly)) + "</polygon>"
        objects.append(f"<object><name>{name}</name>{shape}</object>")
    return (f"<annotation><filename>{stem}.jpg</filename><size><width>{labels.width}</width>"
            f"<height>{labels.height}</height><depth>3</depth></size>{''.join(objects)}</annotation>")


def _datasets(fixtures: Path, tmp: Path) -> tuple[Path, float]:
    """The registry config and the DOTA fixtures' median car width."""
    dota = fixtures / "dota"
    dv = tmp / "dronevehicle" / "train"
    (dv / "trainimg").mkdir(parents=True)
    (dv / "trainlabel").mkdir(parents=True)
    widths = []
    for i, image in enumerate(sorted((dota / "images").glob("*.png"))):
        labels = read_dota(dota / "labelTxt" / f"{image.stem}.txt")
        labels.width, labels.height = read_image_rgb(image).shape[1::-1]
        widths += [b[3] for b, c in zip(labels.boxes, labels.classes) if c == "small-vehicle" and b[3] > 0]
        write_image_rgb(dv / "trainimg" / f"{i:05d}.jpg", read_image_rgb(image))
        (dv / "trainlabel" / f"{i:05d}.xml").write_text(_dronevehicle_xml(labels, f"{i:05d}"))
    dota_width = float(np.median(widths))
    synthetic = tmp / "synthetic"
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_synthetic.py"), str(synthetic), "--n", "4",
                    "--seed", "3", "--quiet"], check=True, cwd=ROOT)
    config = {
        "seed": 0, "classes": ["car", "truck", "bus", "van"], "samples_per_epoch": 16, "cache": False,
        "datasets": [
            {"name": "dota", "type": "dota", "root": str(dota),
             "class_map": {"small-vehicle": "car", "large-vehicle": "truck", "*": "ignore"},
             "val_fraction": 0.34, "group_by": r"^(P\d+)"},
            {"name": "dronevehicle", "type": "dronevehicle", "root": str(tmp / "dronevehicle"),
             "options": {"split": "train", "crop_border": False}, "vehicle_width": round(dota_width, 2),
             "class_map": {"car": "car", "truck": "truck", "freight_car": "truck", "bus": "bus", "van": "van"},
             "val_fraction": 0.34},
            {"name": "synthetic", "type": "obb_json", "root": str(synthetic), "vehicle_width": 18.0,
             "val_fraction": 0.25},
        ],
    }
    path = tmp / "registry.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, dota_width


def _run(*args, timeout=600) -> subprocess.CompletedProcess:
    env_cmd = [sys.executable, *map(str, args)]
    done = subprocess.run(env_cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"})
    assert done.returncode == 0, f"{args[:2]}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_real_data_workflow(fixtures_dir, tmp_path):
    config, dota_width = _datasets(fixtures_dir, tmp_path)

    # 1. the registry: three formats, each dataset's car width before and after resampling
    table = _run("-m", "datasets_registry", config, "--vehicle-width", COMMON_WIDTH).stdout
    for name in ("dota", "dronevehicle", "synthetic"):
        assert re.search(rf"{name}: [\d.]+ (measured|given|from)", table), table
    from obbdet.datasets_registry import build_registry

    registry = build_registry(config, vehicle_width=COMMON_WIDTH)
    dv = [s for s in registry.train + registry.val if s.source == "dronevehicle"]
    unknown = sum(int((~s.angle_known).sum()) for s in dv)
    assert 0 < unknown < sum(len(s.boxes) for s in dv)  # the <bndbox> objects, and only those

    # 2. a short run of the tiny model; validation runs the inference path (tiles at the training scale)
    out = tmp_path / "runs"
    train = _run("train.py", "real", "0", "--config", "tiny", "--no-progress", f"train.out_dir={out}",
                 f"data.registry={config}", f"data.vehicle_width={COMMON_WIDTH}", "train.epochs=1",
                 "train.threads=1", "data.batch_size=4", "train.score_threshold=0.001")
    assert "IoU" in train.stdout and "[RESULT]: Val. Epoch: 1" in train.stdout
    record = json.loads((out / "real" / "log.jsonl").read_text().splitlines()[-1])
    assert "map_0.50" in record
    ckpt_path = out / "real" / "last.pt"
    ckpt = load_checkpoint(ckpt_path)
    assert ckpt["vehicle_width"] == pytest.approx(COMMON_WIDTH, rel=0.25)  # cars of all three at the common width
    assert ckpt["operating_point"]["source"] == "validation, epoch 1"

    # 3. a labelled folder: two DOTA images, labelled with the model's own strongest boxes (exact labels), and
    #    the same labels drawn 8% wider (loose labels)
    from obbdet import Predictor

    images = tmp_path / "images"
    images.mkdir()
    gt_true, gt_wide = tmp_path / "gt_true", tmp_path / "gt_wide"
    gt_true.mkdir()
    gt_wide.mkdir()
    predictor = Predictor.from_checkpoint(ckpt_path, device="cpu", score_threshold=0.001, width_scale=1.0,
                                          length_scale=1.0)
    detections = {}
    for image in sorted((fixtures_dir / "dota" / "images").glob("*.png"))[:2]:
        shutil.copy(image, images / image.name)
        detections[image] = predictor.predict(images / image.name, vehicle_width=dota_width)
    # labels: every detection above one score for both images, so that ranked across images, all labelled
    # boxes come before all others (AP 100 at the right width factor)
    scores = np.sort(np.concatenate([d.scores for d in detections.values()]))[::-1]
    assert len(scores) >= 10, "the tiny model should propose boxes at score 0.001"
    cut = scores[min(49, len(scores) - 1)]
    for image, det in detections.items():
        keep = np.flatnonzero(det.scores >= cut)
        labels = det.to_labels(image=image.name)
        labels.boxes, labels.scores = labels.boxes[keep], None
        labels.classes = [labels.classes[k] for k in keep]
        labels.difficult, labels.ignore, labels.heading = np.zeros(len(keep), bool), np.zeros(len(keep), bool), None
        write_obb_json(gt_true / f"{image.stem}.json", labels)
        labels.boxes = scale_xywha_sides(labels.boxes, WIDENING, 1.0)
        write_obb_json(gt_wide / f"{image.stem}.json", labels)

    # 4. calibrate twice: true labels and 8%-wider labels; the stored factors differ by 1.08
    stored = {}
    for name, gt in (("true", gt_true), ("wide", gt_wide)):
        path = tmp_path / f"{name}.pt"
        shutil.copy(ckpt_path, path)
        _run("tools/calibrate.py", path, "--images", images, "--gt", gt, "--vehicle-width", dota_width,
             "--dataset", f"dota-{name}", "--score", "0.001", "--out", tmp_path / f"cal_{name}", "--device", "cpu",
             "--quiet")
        stored[name] = load_checkpoint(path)["calibration"]
        assert stored[name]["dataset"] == f"dota-{name}" and stored[name]["table"]
    ratio = stored["wide"]["width_scale"] / stored["true"]["width_scale"]
    assert abs(ratio - WIDENING) <= 0.01, stored

    # 5. infer.py applies the stored factor (and says so); widths are exactly the uncalibrated ones times it
    common = [images, dota_width, tmp_path / "wide.pt", "obb", "--device", "cpu", "--score", "0.001", "--quiet"]
    run = _run("infer.py", *common, "--out", tmp_path / "det_cal")
    assert "(checkpoint calibration)" in run.stdout
    _run("infer.py", *common, "--out", tmp_path / "det_plain", "--width-scale", "1")
    for image in images.iterdir():
        cal = read_obb_json(tmp_path / "det_cal" / f"{image.stem}.json", detections=True)
        plain = read_obb_json(tmp_path / "det_plain" / f"{image.stem}.json", detections=True)
        expected = scale_xywha_sides(plain.boxes, stored["wide"]["width_scale"], 1.0)
        assert len(cal) == len(plain) and np.all(box_iou_rotated(cal.boxes, expected, aligned=True) > 0.9999)

    # 6. eval scores the calibrated detections against the loose labels they were calibrated on
    done = _run("-m", "eval.pascalvoc", "-gt", gt_wide, "-det", tmp_path / "det_cal", "-q")
    summary = float(re.search(r"SUMMARY: ([\d.]+)", done.stdout).group(1))
    assert summary > 80.0, done.stdout[-1500:]
