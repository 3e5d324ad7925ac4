"""Inference with real checkpoints: a tiny one trained for one short epoch in a fixture (plumbing, real images,
bad input), and the quickstart run's (``python train.py quickstart 167``; skipped without it) for what needs a
model that actually detects vehicles."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from obbdet import inference
from obbdet.boxes import xywha_to_poly
from obbdet.cli import infer as infer_cli
from obbdet.formats import read_obb_json
from obbdet.inference import InferenceOptions, plan_tiles, rescale_factor, scale_xywha
from obbdet.iou import box_iou_rotated
from obbdet.run_outputs import best_checkpoint
from tests.infer_support import bad_input_folder, detect_image


pytestmark = pytest.mark.usefixtures("one_torch_thread")



PROJECT_ROOT = Path(__file__).resolve().parents[1]
QUICKSTART_RUN = Path(os.environ.get("OBBDET_QUICKSTART", PROJECT_ROOT / "runs" / "quickstart"))


def quickstart_checkpoint() -> Path:
    """The checkpoint of ``python train.py quickstart 167`` (best epoch, else last); skips when absent."""
    run = QUICKSTART_RUN
    if run.is_file():
        return run
    best = best_checkpoint(run)
    if best is not None:
        return best
    if (run / "last.pt").is_file():
        return run / "last.pt"
    pytest.skip(f"no quickstart checkpoint in {run}: run `python train.py quickstart 167` first "
                f"(or set OBBDET_QUICKSTART to a run folder or .pt file)")


def test_real_checkpoint_runs_on_dota_fixtures(tiny_checkpoint, fixtures_dir, tmp_path, capsys):
    out = tmp_path / "dota_det"
    rc = infer_cli.main([str(fixtures_dir / "dota" / "images"), "-1", str(tiny_checkpoint), "obb", "--out", str(out),
                         "--device", "cpu", "--quiet", "--score", "0.2"])
    assert rc == 0, capsys.readouterr()
    for image in (fixtures_dir / "dota" / "images").glob("*.png"):
        labels = read_obb_json(out / f"{image.stem}.json", detections=True)
        assert labels.image == image.name
        assert (labels.width, labels.height) == cv2.imread(str(image)).shape[1::-1]
        assert np.isfinite(labels.boxes).all() and (labels.boxes[:, 2] >= labels.boxes[:, 3]).all()
        assert set(labels.classes) <= {"car", "truck", "bus", "van"}
    assert "images: 3 processed, 0 failed" in capsys.readouterr().out


def test_real_checkpoint_runs_on_unlabeled_bus_yard(tiny_checkpoint, fixtures_dir, tmp_path, capsys):
    """dota_demo.jpg (1616 x 1565), rescaled (buses and cars ~ 22 px wide there), aabb output and overlays."""
    out = tmp_path / "demo_det"
    rc = infer_cli.main([str(fixtures_dir / "unlabeled"), "22", str(tiny_checkpoint), "aabb", "--out", str(out),
                         "--device", "cpu", "--quiet", "--draw", "--score", "0.2", "--batch", "2"])
    assert rc == 0, capsys.readouterr()
    doc = json.loads((out / "dota_demo.json").read_text())
    assert (doc["width"], doc["height"]) == (1616, 1565)
    assert all(len(obj["bbox"]) == 4 and obj["angle"] in (0.0, -90.0) for obj in doc["objects"])
    overlay = cv2.imread(str(out / "overlays" / "dota_demo.jpg"))
    assert overlay is not None and overlay.shape[:2] == (1565, 1616)
    assert "rescale x" in capsys.readouterr().out


def test_real_checkpoint_bad_files_and_foreign_checkpoint(tiny_checkpoint, tmp_path, capsys):
    good, bad = bad_input_folder(tmp_path / "frames")
    rc = infer_cli.main([str(tmp_path / "frames"), "20", str(tiny_checkpoint), "obb", "--device", "cpu", "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 1
    assert f"images: {len(good)} processed, {len(bad)} failed" in printed
    for name, reason in bad.items():
        assert any(name in line and reason in line for line in printed.splitlines())
    written = sorted(p.relative_to(tmp_path / "frames_det").as_posix() for p in (tmp_path / "frames_det").rglob("*.json"))
    assert written == sorted(Path(g).with_suffix(".json").as_posix() for g in good)
    # a checkpoint from another tool (a bare state dict) and a non-checkpoint file: one line, nothing written
    foreign = tmp_path / "other_tool.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, foreign)
    notes = tmp_path / "notes.pt"
    notes.write_text("not a checkpoint")
    for ckpt in (foreign, notes):
        rc = infer_cli.main([str(tmp_path / "frames"), "20", str(ckpt), "obb", "--out", str(tmp_path / "never"),
                             "--device", "cpu"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "not an obbdet checkpoint" in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "never").exists()


def _quickstart_setup():
    ckpt = quickstart_checkpoint()
    detector, info = inference.load_detector(ckpt, "cpu")
    return detector, info


def _subset(labels, keep: np.ndarray):
    """The detections of ``labels`` where ``keep`` is True."""
    from obbdet.structures import ImageLabels

    index = np.flatnonzero(keep)
    return ImageLabels(image=labels.image, width=labels.width, height=labels.height, boxes=labels.boxes[index],
                       classes=[labels.classes[i] for i in index], scores=labels.scores[index],
                       difficult=np.zeros(len(index), bool), ignore=np.zeros(len(index), bool))


def test_quickstart_dense_scene_600_vehicles_not_capped(caplog):
    """A dense synthetic car park with 600 vehicles: about 600 detections at the model's best-F1 score
    threshold, and nearly every vehicle found: nothing caps them at 100, 300 or 500."""
    from obbdet.datasets_registry.synthetic import render_scene
    from obbdet.eval import match_image

    detector, info = _quickstart_setup()
    image, gt = render_scene(11, 2048, 2048, dense=True, n_vehicles=600, vehicle_width=16.0)
    assert len(gt) == 600
    options = InferenceOptions(tile=768, overlap=128, batch=2, score_threshold=0.3, max_det=3000,
                               nms_iou=info.nms_iou or 0.4)
    with caplog.at_level(logging.WARNING):
        det = detect_image(detector, image, options=options, scale=rescale_factor(info.train_vehicle_width, 16.0),
                           class_names=info.class_names, name="dense")
    assert not [r for r in caplog.records if "cap" in r.getMessage()]
    positives = len(gt) - int(gt.difficult.sum())
    found_any_class = box_iou_rotated(gt.boxes[~gt.difficult], det.boxes).max(axis=1) >= 0.5
    assert found_any_class.mean() >= 0.9, f"only {found_any_class.sum()} of {positives} vehicles found"
    best_f1, best = -1.0, None
    for threshold in np.arange(0.3, 0.95, 0.05):
        kept = _subset(det, det.scores >= threshold)
        tp = int(match_image(gt, kept, 0.5).tp.sum())
        f1 = 2 * tp / (len(kept) + positives)
        if f1 > best_f1:
            best_f1, best = f1, (threshold, len(kept), tp)
    threshold, count, tp = best
    print(f"best F1 {best_f1:.3f} at score {threshold:.2f}: {count} detections, {tp} true positives")
    assert 0.85 * 600 <= count <= 1.15 * 600
    assert tp >= 0.8 * positives


def _crossing_tile_edges(boxes: np.ndarray, tiles) -> np.ndarray:
    """Mask of boxes ``[N, 5]`` whose axis-aligned extent straddles an inner edge of some tile."""
    polys = xywha_to_poly(boxes)
    x0, y0, x1, y1 = polys[..., 0].min(1), polys[..., 1].min(1), polys[..., 0].max(1), polys[..., 1].max(1)
    edges_x = {t.x1 for t in tiles if t.inner[2]} | {t.x0 for t in tiles if t.inner[0]}
    edges_y = {t.y1 for t in tiles if t.inner[3]} | {t.y0 for t in tiles if t.inner[1]}
    crossing = np.zeros(len(boxes), bool)
    for x in edges_x:
        crossing |= (x0 < x) & (x < x1)
    for y in edges_y:
        crossing |= (y0 < y) & (y < y1)
    return crossing


def test_quickstart_vehicles_cut_by_tile_borders_detected_once():
    """Vehicles crossing inner tile edges are found as in whole-image mode, and no half-vehicle box survives
    beside the whole one (a detection lying mostly on a crossing vehicle but matching no vehicle)."""
    from obbdet.datasets_registry.synthetic import render_scene
    from obbdet.iou import intersection_area_rotated

    detector, info = _quickstart_setup()
    image, gt = render_scene(22, 1280, 896, vehicle_width=float(info.train_vehicle_width), dense=True,
                             scene="parking")
    options = InferenceOptions(tile=512, overlap=128, batch=4, score_threshold=0.5, nms_iou=info.nms_iou or 0.4)
    tiled = detect_image(detector, image, options=options, class_names=info.class_names)
    whole = detect_image(detector, image, options=replace(options, whole=True), class_names=info.class_names)
    crossing = _crossing_tile_edges(gt.boxes, plan_tiles(1280, 896, 512, 128, align=detector.stride)) & ~gt.difficult
    assert crossing.sum() >= 20
    found_tiled = (box_iou_rotated(gt.boxes[crossing], tiled.boxes) >= 0.5).any(axis=1)
    found_whole = (box_iou_rotated(gt.boxes[crossing], whole.boxes) >= 0.5).any(axis=1)
    assert found_tiled.sum() >= 0.9 * found_whole.sum(), (found_tiled.sum(), found_whole.sum())

    def halves(det) -> int:
        """Detections covered >= 60% by a crossing vehicle without matching any vehicle (IoU < 0.5)."""
        if not len(det):
            return 0
        iou = box_iou_rotated(det.boxes, gt.boxes)
        i, j = np.nonzero(iou[:, crossing] > 0)
        cover = intersection_area_rotated(det.boxes[i], gt.boxes[crossing][j]) / (det.boxes[i, 2] * det.boxes[i, 3])
        partial = np.zeros(len(det), bool)
        partial[i[cover >= 0.6]] = True
        return int((partial & (iou.max(axis=1) < 0.5)).sum())

    assert halves(tiled) <= halves(whole) + 0.05 * crossing.sum(), (halves(tiled), halves(whole))


def test_quickstart_tiled_and_whole_agree(tmp_path):
    """A car park that fits in one pass (1024 x 1024): default tiling (768, overlap >= 128: four tiles) vs
    ``--whole``, compared with tools/compute_miou.py: matched mIoU >= 0.98 and (almost) every detection matched."""
    from obbdet.datasets_registry.synthetic import render_scene
    from obbdet.checkpoint import load_checkpoint
    from obbdet.tools import compute_miou as miou_tool

    ckpt = quickstart_checkpoint()
    info = inference.checkpoint_info(load_checkpoint(ckpt))
    image, _ = render_scene(5, 1024, 1024, vehicle_width=float(info.train_vehicle_width), dense=True)
    folder = tmp_path / "scene"
    folder.mkdir()
    cv2.imwrite(str(folder / "scene.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    common = [str(folder), "-1", str(ckpt), "obb", "--device", "cpu", "--quiet", "--score", "0.5"]
    assert infer_cli.main(common + ["--out", str(tmp_path / "tiled")]) == 0
    assert infer_cli.main(common + ["--out", str(tmp_path / "whole"), "--whole"]) == 0
    assert miou_tool.main([str(tmp_path / "tiled"), str(tmp_path / "whole"), "--out", str(tmp_path / "miou")]) == 0
    report = json.loads((tmp_path / "miou" / "miou.json").read_text())
    n_whole = len(read_obb_json(tmp_path / "whole" / "scene.json", detections=True))
    assert n_whole >= 20
    print(f"{n_whole} detections whole, {report['matched']} matched, {report['unmatched_a']} only tiled, "
          f"{report['unmatched_b']} only whole, matched mIoU {report['miou']:.4f}")
    assert report["matched"] >= 0.9 * n_whole and report["unmatched_a"] <= 0.1 * n_whole  # no extra halves
    assert report["miou"] >= 0.98, report


def test_quickstart_rescaling_two_resolutions_agree():
    """One scene at two resolutions (rendered at 2x, downsampled for 1x), each with its matching vehicle_width:
    the detections agree after mapping the 2x ones to the 1x scale."""
    from obbdet.datasets_registry.synthetic import render_scene
    from obbdet.eval.miou import compute_miou

    detector, info = _quickstart_setup()
    high, _ = render_scene(8, 1280, 1024, vehicle_width=30.0)
    low = cv2.resize(high, (640, 512), interpolation=cv2.INTER_AREA)
    options = InferenceOptions(tile=768, overlap=128, score_threshold=0.5, nms_iou=info.nms_iou or 0.4)
    det_high = detect_image(detector, high, options=options, scale=rescale_factor(info.train_vehicle_width, 30.0),
                            class_names=info.class_names)
    det_low = detect_image(detector, low, options=options, scale=rescale_factor(info.train_vehicle_width, 15.0),
                           class_names=info.class_names)
    assert (det_high.width, det_low.width) == (1280, 640)  # each in its own image's pixels
    det_high.boxes = scale_xywha(det_high.boxes, 0.5, 0.5)
    result = compute_miou({"scene": det_low}, {"scene": det_high})
    assert len(det_low) >= 10
    assert result.matched >= 0.9 * max(len(det_low), len(det_high)), result.format()
    assert result.miou >= 0.9, result.format()


