"""Inference: tiling, merging across tile borders, rescaling, caps, bad input, CLI.

These tests use ``BrightRectDetector`` (``tests/infer_support.py``), a deterministic stand-in for a trained
network, so tiling, merging, rescaling and caps are tested against known geometry; ``test_infer_real.py`` runs
real checkpoints.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from obbdet import inference
from obbdet.boxes import xywha_to_poly
from obbdet.formats import read_obb_json
from obbdet.boxes import scale_xywha_sides
from obbdet.imageio import read_image_rgb
from obbdet.inference import (InferenceOptions, Predictor, RawDetections, Tile, discover_images,
                              merge_tile_detections, plan_tiles, rescale_factor, run_inference, scale_xywha,
                              tile_origins)
from obbdet.iou import box_iou_rotated

from obbdet.cli import infer as infer_cli
from tests.infer_support import (BrightRectDetector, bad_input_folder, detect_image, grid_boxes, match_ious,
                                 render_rects, write_good)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------------
# Tiles
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("length,tile,overlap,align", [(100, 768, 128, 128), (768, 768, 128, 128),
                                                       (769, 768, 128, 128), (3840, 768, 128, 128),
                                                       (5616, 512, 100, 32), (2000, 640, 0, 1), (1000, 96, 64, 128)])
def test_tile_origins_cover_with_overlap_on_the_stride_grid(length, tile, overlap, align):
    origins = tile_origins(length, tile, overlap, align)
    assert origins[0] == 0 and origins == sorted(set(origins))
    assert origins[-1] < length <= origins[-1] + tile  # covered, and the last tile starts inside the image
    assert (tile - np.diff(origins) >= overlap).all()  # neighbours share at least `overlap` px
    if tile - overlap >= align:
        assert all(o % align == 0 for o in origins)
        assert length <= tile or origins[-1] + tile - length < align  # < align px of padding past the end


def test_plan_tiles_marks_inner_edges():
    tiles = plan_tiles(1300, 700, 768, 128, align=128)
    assert [(t.x0, t.x1, t.y0, t.y1) for t in tiles] == [(0, 768, 0, 700), (640, 1300, 0, 700)]
    left, right = tiles
    assert left.inner == (False, False, True, False) and right.inner == (True, False, False, False)
    assert plan_tiles(300, 200, None)[0].inner == (False,) * 4
    assert inference.network_tile(700, 128) == 768 and inference.network_tile(768, 128) == 768


# ---------------------------------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------------------------------

def test_rescale_factor_and_no_rescale():
    assert rescale_factor(18.0, 36.0) == 0.5
    assert rescale_factor(None, -1) == 1.0
    with pytest.raises(ValueError, match="no training vehicle width"):
        rescale_factor(None, 20.0)
    with pytest.raises(ValueError, match="vehicle_width"):
        rescale_factor(18.0, 0.0)


def test_scale_xywha_anisotropic_matches_corner_mapping():
    boxes = np.array([[100.0, 50.0, 40.0, 10.0, 0.3], [10.0, 20.0, 30.0, 30.0, -1.0]])
    out = scale_xywha(boxes, 0.5, 0.5)
    np.testing.assert_allclose(out, [[50, 25, 20, 5, 0.3], [5, 10, 15, 15, -1.0]])
    # axis-aligned box under unequal factors: exact
    aabb_box = np.array([[100.0, 50.0, 40.0, 10.0, 0.0]])
    np.testing.assert_allclose(scale_xywha(aabb_box, 0.5, 0.25), [[50, 12.5, 20, 2.5, 0.0]], atol=1e-9)


def test_apply_box_scales_width_and_length():
    boxes = np.array([[10.0, 10.0, 40.0, 20.0, 0.2]])
    np.testing.assert_allclose(scale_xywha_sides(boxes, 0.9, 1.1), [[10, 10, 44, 18, 0.2]])
    # shrinking the long side below the short one keeps le90 (w >= h)
    out = scale_xywha_sides(np.array([[0.0, 0.0, 20.0, 19.0, 0.0]]), 1.0, 0.5)
    assert out[0, 2] >= out[0, 3]


# ---------------------------------------------------------------------------------------------------
# Merging across tile borders
# ---------------------------------------------------------------------------------------------------

def _scene_with_cut_vehicles(seed=0):
    """A 1400 x 1100 scene, tile 512 / overlap 128: a grid of vehicles, plus vehicles centred exactly on
    every inner tile edge (each is cut in half by one tile and whole in its neighbour)."""
    width, height, tile, overlap = 1400, 1100, 512, 128
    tiles = plan_tiles(width, height, tile, overlap, align=BrightRectDetector.stride)
    xs = sorted({t.x1 for t in tiles if t.inner[2]} | {t.x0 for t in tiles if t.inner[0]})
    ys = sorted({t.y1 for t in tiles if t.inner[3]} | {t.y0 for t in tiles if t.inner[1]})
    on_edges = [[x, y, 40.0, 16.0, 0.0] for x in xs for y in (150.0, 650.0, 1000.0)]
    on_edges += [[x, y, 40.0, 16.0, math.pi / 2 - 0.4] for y in ys for x in (90.0, 700.0, 1300.0)]
    on_edges = np.array(on_edges)
    apart = [i for i in range(len(on_edges))  # drop edge vehicles that would touch an earlier one
             if all(np.hypot(*(on_edges[i, :2] - on_edges[j, :2])) > 45 for j in range(i))]
    on_edges = on_edges[apart]
    grid = grid_boxes(14, 11, 100.0, origin=(40.0, 40.0), seed=seed)
    far = box_iou_rotated(grid, on_edges).max(axis=1) == 0
    # keep grid vehicles well apart from the edge vehicles (they must not touch)
    near = np.array([np.min(np.hypot(on_edges[:, 0] - g[0], on_edges[:, 1] - g[1])) > 45 for g in grid])
    boxes = np.concatenate([on_edges, grid[far & near]])
    return render_rects(width, height, boxes), boxes, InferenceOptions(tile=tile, overlap=overlap, batch=3)


def test_vehicle_cut_by_tile_border_gives_one_detection():
    image, gt, options = _scene_with_cut_vehicles()
    det = detect_image(BrightRectDetector(), image, options=options)
    assert len(det) == len(gt), f"{len(det)} detections for {len(gt)} vehicles"
    ious = match_ious(gt, det.boxes)
    assert ious.min() > 0.85, f"worst IoU {ious.min():.3f}"
    # each vehicle is matched by exactly one detection (no half boxes next to whole ones)
    assert (box_iou_rotated(det.boxes, gt) > 0.1).sum(axis=0).max() == 1


def test_without_border_handling_halves_survive():
    """The same scene with the cut-vehicle rule disabled leaves extra half boxes: the rule is what fixes it."""
    image, gt, options = _scene_with_cut_vehicles()
    det = detect_image(BrightRectDetector(), image, options=replace(options, border_margin=-math.inf))
    assert len(det) > len(gt)


def test_merge_prefers_most_interior_tile():
    tiles = [Tile(0, 0, 512, 512, (False, False, True, False)), Tile(384, 0, 896, 512, (True, False, False, False))]
    whole_in_0 = [430.0, 100.0, 40.0, 16.0, 0.0]  # inside both tiles; 82 px from tile 0's inner edge
    whole_in_1 = [430.5, 100.0, 41.0, 16.0, 0.0]  # the same vehicle seen by tile 1, 46 px from its inner edge
    half = [500.0, 300.0, 24.0, 16.0, 0.0]  # cut by tile 0's right edge (x = 512)
    full_of_half = [512.0, 300.0, 48.0, 16.0, 0.0]  # the same vehicle, whole in tile 1
    dets = RawDetections(np.array([whole_in_0, half, whole_in_1, full_of_half]), np.array([0.8, 0.95, 0.9, 0.6]),
                         np.array([0, 1, 0, 0]), np.array([0, 0, 1, 1]))
    merged = merge_tile_detections(dets, tiles, nms_iou=0.5)
    assert len(merged) == 2
    kept = {tuple(np.round(b, 1)) for b in merged.boxes}
    assert tuple(full_of_half) in kept  # the cut view lost despite its higher score and other class
    assert tuple(whole_in_0) in kept  # the view with more context won over the higher score
    by_score = merge_tile_detections(dets, tiles, nms_iou=0.5, prefer="score")
    assert tuple(whole_in_1) in {tuple(np.round(b, 1)) for b in by_score.boxes}
    np.testing.assert_array_equal(merged.scores, np.sort(merged.scores)[::-1])


def test_cut_fragment_dropped_when_another_tile_saw_the_area_whole():
    """A car-sized fragment of a long vehicle cut by tile 0's edge, in an area tile 1 saw whole and found
    nothing in: dropped. A cut detection no other tile sees whole (image corner, tile too small) is kept."""
    tiles = [Tile(0, 0, 512, 512, (False, False, True, False)), Tile(384, 0, 896, 512, (True, False, False, False))]
    fragment = [490.0, 200.0, 44.0, 18.0, 0.0]  # x 468..512: cut by tile 0, whole and 106 px inside tile 1
    only_view = [880.0, 300.0, 40.0, 16.0, math.pi / 2]  # tile 1's right edge is the image border: not cut
    dets = RawDetections(np.array([fragment, only_view]), np.array([0.9, 0.8]), np.array([0, 0]), np.array([0, 1]))
    merged = merge_tile_detections(dets, tiles, nms_iou=0.4)
    np.testing.assert_allclose(merged.boxes, [only_view])
    # with a tile too narrow to hold the fragment with margin, the cut view is all there is: kept
    narrow = [Tile(0, 0, 512, 512, (False, False, True, False)), Tile(480, 0, 992, 512, (True, False, False, False))]
    kept = merge_tile_detections(RawDetections(np.array([fragment]), np.array([0.9]), np.array([0]), np.array([0])),
                                 narrow, nms_iou=0.4)
    assert len(kept) == 1


# ---------------------------------------------------------------------------------------------------
# Tiled vs whole, batching, memory
# ---------------------------------------------------------------------------------------------------

def test_tiled_and_whole_agree_on_one_pass_image():
    from obbdet.eval.miou import compute_miou  # the function behind tools/compute_miou.py

    boxes = grid_boxes(9, 9, 100.0, origin=(50.0, 50.0), seed=3)
    image = render_rects(900, 900, boxes)
    tiled = detect_image(BrightRectDetector(), image, options=InferenceOptions(tile=384, overlap=96))
    whole = detect_image(BrightRectDetector(), image, options=InferenceOptions(whole=True))
    result = compute_miou({"scene": tiled}, {"scene": whole})
    assert len(tiled) == len(whole) == len(boxes)
    assert result.miou >= 0.98


def test_memory_bounded_by_batch_not_image():
    detector = BrightRectDetector()
    image = render_rects(2400, 1500, grid_boxes(16, 10, 140.0, seed=1), supersample=1)
    detect_image(detector, image, options=InferenceOptions(tile=512, overlap=64, batch=2))
    assert len(detector.calls) == math.ceil(len(plan_tiles(2400, 1500, 512, 64, align=128)) / 2)
    assert all(shape[0] <= 2 and shape[2:] == (512, 512) for shape in detector.calls)


def test_small_images_share_batches_and_results_match(tmp_path):
    boxes = grid_boxes(3, 3, 90.0, origin=(40.0, 40.0), seed=5)
    for i in range(5):
        write_good(tmp_path / "in" / f"img{i}.png", boxes[i % 3:], size=(300, 280))
    detector = BrightRectDetector()
    images = discover_images(tmp_path / "in")
    summary = run_inference(Predictor(detector, ["car", "truck"], options=InferenceOptions(batch=4)), images,
                            tmp_path / "in", tmp_path / "out", progress=False)
    assert summary.images == 5 and not summary.failures
    assert [c[0] for c in detector.calls] == [4, 1]  # five 1-tile images in two forward passes
    for i, path in enumerate(images):
        labels = read_obb_json(tmp_path / "out" / f"{path.stem}.json", detections=True)
        assert len(labels) == len(boxes[i % 3:])
        assert match_ious(boxes[i % 3:], labels.boxes).min() > 0.85


# ---------------------------------------------------------------------------------------------------
# Caps
# ---------------------------------------------------------------------------------------------------

def test_no_silent_cap_and_warning_when_cap_reached(caplog):
    boxes = grid_boxes(40, 30, 24.0, origin=(12.0, 12.0), size=(12.0, 6.0), seed=2)  # 1200 vehicles
    image = render_rects(960, 720, boxes)
    detector = BrightRectDetector()
    det = detect_image(detector, image, options=InferenceOptions(whole=True, max_det=1500), name="dense.png")
    assert len(det) == 1200
    tiled = detect_image(detector, image, options=InferenceOptions(tile=512, overlap=64, max_det=1000),
                         name="dense.png")
    assert len(tiled) == 1200  # the image cap grows with the area (2000 per megapixel): nothing lost
    with caplog.at_level(logging.WARNING, logger="obbdet.inference"):
        capped = detect_image(detector, image, options=InferenceOptions(tile=512, overlap=64, max_det=1000,
                                                                        max_det_per_megapixel=1000),
                              name="dense.png")
    assert len(capped) == 1000  # 0.69 megapixels x 1000 < max_det: max_det applies
    assert any("dense.png" in r.getMessage() and "1000" in r.getMessage() for r in caplog.records)
    assert capped.scores.min() >= det.scores[np.argsort(-det.scores)][999] - 1e-6  # the top scores are kept


# ---------------------------------------------------------------------------------------------------
# Rescaling
# ---------------------------------------------------------------------------------------------------

def test_rescaling_two_resolutions_agree():
    boxes = grid_boxes(8, 6, 110.0, origin=(60.0, 60.0), size=(40.0, 18.0), seed=4)
    low = render_rects(900, 700, boxes, scale=1.0)
    high = render_rects(900, 700, boxes, scale=2.5)
    options = InferenceOptions(tile=512, overlap=128)
    det_low = detect_image(BrightRectDetector(), low, options=options, scale=rescale_factor(18.0, 18.0))
    det_high = detect_image(BrightRectDetector(), high, options=options, scale=rescale_factor(18.0, 45.0))
    assert det_high.width == high.shape[1]  # reported in the image's own pixels
    common = scale_xywha(det_high.boxes, 1 / 2.5, 1 / 2.5)
    assert len(det_low) == len(det_high) == len(boxes)
    iou = box_iou_rotated(det_low.boxes, common).max(axis=1)
    assert iou.min() > 0.9, iou.min()
    assert match_ious(boxes, common).min() > 0.85


# ---------------------------------------------------------------------------------------------------
# Reading images and folders
# ---------------------------------------------------------------------------------------------------

def test_read_image_reasons(tmp_path):
    good, bad = bad_input_folder(tmp_path)
    assert read_image_rgb(tmp_path / good[0]).shape == (256, 320, 3)
    for name, reason in bad.items():
        with pytest.raises(inference.ImageReadError, match=reason):
            read_image_rgb(tmp_path / name)


def test_discover_images_recursive_sorted_and_excludes_output(tmp_path):
    good, bad = bad_input_folder(tmp_path)
    write_good(tmp_path / "out" / "x.jpg", grid_boxes(1, 1, 10.0))
    found = [p.relative_to(tmp_path).as_posix() for p in discover_images(tmp_path, exclude=[tmp_path / "out"])]
    assert found == sorted(good + list(bad))
    assert "readme.txt" not in found


def test_bad_files_are_listed_and_good_ones_processed(tmp_path):
    good, bad = bad_input_folder(tmp_path / "in")
    images = discover_images(tmp_path / "in")
    summary = run_inference(Predictor(BrightRectDetector(), ["car"]), images, tmp_path / "in", tmp_path / "out",
                            progress=False)
    assert summary.images == len(good)
    assert sorted(Path(f.path).name for f in summary.failures) == sorted(bad)
    for failure in summary.failures:
        assert bad[Path(failure.path).name] in failure.reason
    for rel in good:
        assert (tmp_path / "out" / Path(rel).with_suffix(".json")).is_file()
    text = summary.format()
    assert "failures:" in text and "empty.jpg" in text


def test_stem_collision_is_a_failure_not_an_overwrite(tmp_path):
    boxes = grid_boxes(2, 2, 90.0, origin=(50.0, 50.0))
    write_good(tmp_path / "in" / "a.jpg", boxes)
    write_good(tmp_path / "in" / "a.png", boxes[:1])
    images = discover_images(tmp_path / "in")
    summary = run_inference(Predictor(BrightRectDetector(), ["car"]), images, tmp_path / "in", tmp_path / "out",
                            progress=False)
    assert summary.images == 1 and len(summary.failures) == 1 and "already used" in summary.failures[0].reason
    assert len(read_obb_json(tmp_path / "out" / "a.json", detections=True)) == 4


# ---------------------------------------------------------------------------------------------------
# Output modes and the CLI (detector loading replaced by the stand-in)
# ---------------------------------------------------------------------------------------------------

@pytest.fixture
def fake_loader(monkeypatch):
    """Make infer.py load ``BrightRectDetector`` with a training vehicle width of 16 px and a width factor."""
    info = inference.CheckpointInfo(["car", "truck"], 16.0, 0.9, None, 0.4)

    def loader(checkpoint, device, use_ema=True):
        if Path(checkpoint).read_bytes() != b"fake":
            raise inference.InferenceSetupError(f"{checkpoint}: not an obbdet checkpoint")
        return BrightRectDetector(), info

    original = inference.prepare_run
    monkeypatch.setattr(inference, "prepare_run", lambda *a, **k: original(*a, detector_loader=loader, **k))
    return info


def _cli_folder(tmp_path) -> tuple[Path, Path, np.ndarray]:
    boxes = grid_boxes(3, 2, 100.0, origin=(60.0, 60.0), size=(40.0, 16.0), seed=9)
    folder = tmp_path / "frames"
    write_good(folder / "f1.png", boxes, size=(400, 300))
    write_good(folder / "sub" / "f2.png", boxes, size=(400, 300))
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"fake")
    return folder, ckpt, boxes


def test_cli_obb_default_output_folder_and_width_scale(tmp_path, fake_loader, capsys):
    folder, ckpt, boxes = _cli_folder(tmp_path)
    rc = infer_cli.main([str(folder), "16", str(ckpt), "obb", "--device", "cpu", "--tile", "256",
                         "--overlap", "64", "--quiet", "--draw"])
    assert rc == 0
    out = tmp_path / "frames_det"
    labels = read_obb_json(out / "sub" / "f2.json", detections=True)
    assert labels.image == "f2.png" and (labels.width, labels.height) == (400, 300)
    assert set(labels.classes) == {"car"}
    order = box_iou_rotated(boxes, labels.boxes).argmax(axis=1)
    # the checkpoint's calibrated width factor (0.9) shrank every short side; lengths untouched
    np.testing.assert_allclose(labels.boxes[order, 3], boxes[:, 3] * 0.9, rtol=0.08)
    np.testing.assert_allclose(labels.boxes[order, 2], boxes[:, 2], rtol=0.06)
    assert (out / "overlays" / "f1.jpg").is_file()
    printed = capsys.readouterr().out
    assert "images: 2 processed, 0 failed" in printed and "per megapixel" in printed


def test_cli_width_scale_override_and_aabb_mode(tmp_path, fake_loader):
    folder, ckpt, boxes = _cli_folder(tmp_path)
    out = tmp_path / "custom"
    assert infer_cli.main([str(folder), "16", str(ckpt), "aabb", "--out", str(out), "--device", "cpu",
                           "--whole", "--width-scale", "1.0", "--quiet"]) == 0
    doc = json.loads((out / "f1.json").read_text())
    assert len(doc["objects"]) == len(boxes)
    for obj in doc["objects"]:
        x0, y0, x1, y1 = obj["bbox"]
        assert obj["angle"] in (0.0, -90.0)
        assert math.isclose(obj["length"], max(x1 - x0, y1 - y0), abs_tol=2e-3)
        assert math.isclose(obj["cx"], (x0 + x1) / 2, abs_tol=2e-3)
    hulls = np.array([o["bbox"] for o in doc["objects"]])
    poly = xywha_to_poly(boxes)
    truth = np.column_stack([poly[..., 0].min(1), poly[..., 1].min(1), poly[..., 0].max(1), poly[..., 1].max(1)])
    for row in truth:
        assert np.abs(hulls - row).max(axis=1).min() < 1.5


def test_cli_bad_files_exit_nonzero(tmp_path, fake_loader, capsys):
    good, bad = bad_input_folder(tmp_path / "frames")
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"fake")
    rc = infer_cli.main([str(tmp_path / "frames"), "-1", str(ckpt), "obb", "--device", "cpu", "--quiet"])
    assert rc == inference.EXIT_IMAGE_FAILURES == 1
    printed = capsys.readouterr().out
    for name in bad:
        assert name in printed
    assert f"images: {len(good)} processed, {len(bad)} failed" in printed


def test_cli_test_time_augmentation_finds_the_same_boxes(tmp_path, fake_loader, capsys):
    """``--tta d8`` on a detector that sees every flip and quarter turn exactly: the boxes found without it, on
    tiles smaller than the image (padded edge tiles included), every view's forward pass run."""
    folder, ckpt, boxes = _cli_folder(tmp_path)
    found = {}
    for tta in ("none", "d8"):
        out = tmp_path / f"out_{tta}"
        assert infer_cli.main([str(folder), "16", str(ckpt), "obb", "--out", str(out), "--device", "cpu",
                               "--tile", "256", "--overlap", "64", "--tta", tta, "--width-scale", "1",
                               "--quiet"]) == 0
        found[tta] = read_obb_json(out / "f1.json", detections=True)
    assert "test-time augmentation d8" in capsys.readouterr().out
    plain, fused = found["none"], found["d8"]
    assert len(plain.boxes) == len(fused.boxes) == len(boxes)
    assert match_ious(plain.boxes, fused.boxes).min() > 0.995
    np.testing.assert_allclose(np.sort(fused.scores), np.sort(plain.scores), atol=1e-6)  # seen in all 8 views
    rc = infer_cli.main([str(folder), "16", str(ckpt), "obb", "--device", "cpu", "--tta", "d4"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown test-time augmentation 'd4'" in err
    rc = infer_cli.main([str(folder), "16", str(ckpt), "obb", "--device", "cpu", "--tta", "d8", "--vote-iou", "0"])
    assert rc == 2 and "needs vote_iou > 0" in capsys.readouterr().err


def test_cli_setup_errors_fail_before_work(tmp_path, fake_loader, capsys):
    folder, ckpt, _ = _cli_folder(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    rc = infer_cli.main([str(folder), "16", str(ckpt), "obb", "--out", str(blocker / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "not writable" in err and len(err.strip().splitlines()) == 1
    other = tmp_path / "other.pt"
    other.write_bytes(b"something else")
    rc = infer_cli.main([str(folder), "16", str(other), "obb", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "not an obbdet checkpoint" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "frames_det").exists()  # nothing was written
    rc = infer_cli.main([str(tmp_path / "missing"), "16", str(ckpt), "obb", "--device", "cpu"])
    assert rc == 2 and "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        infer_cli.main([str(folder), "0", str(ckpt), "obb"])  # vehicle width must be > 0 or -1


def test_out_of_memory_fails_that_image_only(tmp_path):
    """A forward pass that runs out of memory fails the images of that batch; the run goes on."""

    class PickyDetector(BrightRectDetector):
        def predict(self, images, **kwargs):
            if images.shape[-1] > 256:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            return super().predict(images, **kwargs)

    boxes = grid_boxes(2, 2, 90.0, origin=(50.0, 50.0))
    write_good(tmp_path / "in" / "big.png", boxes, size=(600, 200))
    write_good(tmp_path / "in" / "small.png", boxes, size=(250, 200))
    images = discover_images(tmp_path / "in")
    summary = run_inference(Predictor(PickyDetector(), ["car"], options=InferenceOptions(whole=True, batch=1)),
                            images, tmp_path / "in", tmp_path / "out", progress=False)
    assert summary.images == 1 and [Path(f.path).name for f in summary.failures] == ["big.png"]
    assert "out of memory" in summary.failures[0].reason
    assert (tmp_path / "out" / "small.json").is_file() and not (tmp_path / "out" / "big.json").exists()


def test_heading_follows_anisotropic_rescaling():
    heading = np.array([0.0, math.pi / 4, -3 * math.pi / 4, np.nan])
    out = inference.scale_heading(heading, 1.0, 2.0)
    np.testing.assert_allclose(out[:3], [0.0, math.atan2(2, 1), math.atan2(-2, -1)])
    assert np.isnan(out[3])
    np.testing.assert_array_equal(inference.scale_heading(heading[:3], 0.5, 0.5), heading[:3])


def test_device_checks():
    assert inference.resolve_device("cpu", half=False) == "cpu"
    with pytest.raises(inference.InferenceSetupError, match="--half needs a CUDA device"):
        inference.resolve_device("cpu", half=True)
    with pytest.raises(inference.InferenceSetupError, match="device"):
        inference.resolve_device("banana", half=False)
    if not torch.cuda.is_available():
        with pytest.raises(inference.InferenceSetupError, match="CUDA is not available"):
            inference.resolve_device("cuda", half=False)
