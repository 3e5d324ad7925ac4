"""Synthetic aerial scenes: determinism, labels on the vehicles, options, datasets on disk, the CLI."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

import obbdet.datasets_registry.synthetic as syn
import obbdet.datasets_registry.synthetic_draw as draw
import obbdet.datasets_registry.synthetic_vehicles as vehicles
from obbdet.datasets_registry.synthetic import (SYNTHETIC_CLASSES, generate_synthetic_dataset, load_synthetic,
                                         render_scene, scene_seed)
from obbdet.boxes import wrap_angle, xywha_to_poly
from obbdet.formats import read_obb_json
from obbdet.iou import box_iou_rotated


def _raster(shape, boxes, grow: float = 0.0) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for box in boxes:
        draw.fill_poly(mask, xywha_to_poly(box + np.array([0, 0, grow, grow, 0])), 1, aa=False)
    return mask


def test_same_seed_same_scene_and_different_seeds_differ():
    a_img, a_lab = render_scene(11)
    b_img, b_lab = render_scene(11)
    assert np.array_equal(a_img, b_img)
    assert np.array_equal(a_lab.boxes, b_lab.boxes) and a_lab.classes == b_lab.classes
    c_img, _ = render_scene(12)
    assert not np.array_equal(a_img, c_img)
    assert a_img.shape == (512, 512, 3) and a_img.dtype == np.uint8


def test_labels_sit_exactly_on_the_vehicles(monkeypatch):
    """Render each scene with and without drawing the vehicles: the pixels that change are the vehicles."""
    covers = []
    for seed in range(6):
        image, labels = render_scene(seed, 384, 384)
        with monkeypatch.context() as m:
            for cls in vehicles.VEHICLE_DRAWERS:
                m.setitem(vehicles.VEHICLE_DRAWERS, cls, lambda canvas, v, ppm: None)
            bare, bare_labels = render_scene(seed, 384, 384)
        assert np.array_equal(labels.boxes, bare_labels.boxes)  # drawing consumes no randomness
        changed = np.abs(image.astype(int) - bare.astype(int)).sum(axis=2) > 24
        if len(labels) == 0:
            assert not changed.any()
            continue
        near_boxes = _raster(changed.shape, labels.boxes, grow=3.0) > 0
        assert changed[near_boxes].sum() >= 0.995 * changed.sum(), f"seed {seed}: vehicle pixels outside labels"
        for box in labels.boxes[~labels.difficult]:
            covers.append(changed[_raster(changed.shape, [box]) > 0].mean())
    assert len(covers) > 40
    assert np.mean(covers) > 0.85 and np.percentile(covers, 5) > 0.5


def test_label_contract_and_geometry():
    for seed in range(4):
        image, labels = render_scene(seed, 400, 300)
        n = len(labels)
        assert labels.boxes.shape == (n, 5) and labels.heading.shape == (n,) and labels.difficult.shape == (n,)
        assert set(labels.classes) <= set(SYNTHETIC_CLASSES)
        w, h, a = labels.boxes[:, 2], labels.boxes[:, 3], labels.boxes[:, 4]
        assert np.all(w >= h) and np.all((a >= -math.pi / 2) & (a < math.pi / 2))
        assert np.all((labels.heading >= -math.pi) & (labels.heading < math.pi))
        # the box axis is the heading's axis (vehicles cut by the border are refitted to their visible part)
        corners = xywha_to_poly(labels.boxes)
        whole = (corners > 0.01).all(axis=(1, 2)) & (corners < np.array([400, 300]) - 0.01).all(axis=(1, 2))
        assert np.allclose(wrap_angle(labels.heading - a)[whole], 0, atol=1e-6)
        centres = labels.boxes[:, :2]  # vehicles cut by the border are labelled by their visible part
        assert np.all(centres >= 0) and np.all(centres <= np.array([400, 300]))
        if n > 1:  # vehicles never overlap
            iou = box_iou_rotated(labels.boxes, labels.boxes)
            np.fill_diagonal(iou, 0)
            assert iou.max() < 1e-6


def test_vehicle_sizes_and_aspect_ratios():
    lengths, widths = {c: [] for c in SYNTHETIC_CLASSES}, {c: [] for c in SYNTHETIC_CLASSES}
    for seed in range(12):
        _, labels = render_scene(seed, 384, 384, vehicle_width=16.0)
        for box, cls, difficult in zip(labels.boxes, labels.classes, labels.difficult):
            if not difficult and box[2] > 0:
                lengths[cls].append(box[2])
                widths[cls].append(box[3])
    cars = np.array(lengths["car"]) / np.array(widths["car"])
    assert len(cars) > 30
    assert 2.25 <= np.median(cars) <= 2.6  # about 2.4:1
    assert 14.5 <= np.median(widths["car"]) <= 17.5  # vehicle_width is a car's width
    for cls in ("truck", "bus"):
        if lengths[cls]:
            assert np.median(lengths[cls]) > 2.5 * np.median(lengths["car"]) * 0.55
            assert np.median(np.array(lengths[cls]) / np.array(widths[cls])) > 3.0


def test_options_classes_count_and_hard_negatives():
    _, labels = render_scene(3, 384, 384, classes=["bus", "truck"], n_vehicles=12)
    assert set(labels.classes) <= {"bus", "truck"} and len(labels) == 12
    _, labels = render_scene(4, 384, 384, n_vehicles=0)
    assert len(labels) == 0
    with_neg, _ = render_scene(5, 256, 256, hard_negatives=True)
    without, _ = render_scene(5, 256, 256, hard_negatives=False)
    assert not np.array_equal(with_neg, without)
    for kind in syn.SCENE_KINDS:
        _, labels = render_scene(6, 256, 256, scene=kind)
        assert labels.boxes.shape[1] == 5
    with pytest.raises(TypeError, match="unknown synthetic scene option"):
        render_scene(0, bogus=1)
    with pytest.raises(ValueError, match="classes"):
        render_scene(0, classes=["plane"])
    with pytest.raises(ValueError, match="vehicle_width"):
        render_scene(0, vehicle_width=(20, 10))


def test_dense_scene_holds_hundreds_of_vehicles():
    _, labels = render_scene(1, 1024, 1024, dense=True, n_vehicles=300, vehicle_width=14)
    assert len(labels) == 300
    _, natural = render_scene(2, 768, 768, dense=True, scene="parking", vehicle_width=14)
    assert len(natural) > 120


def test_generate_dataset_is_idempotent_and_guards_its_parameters(tmp_path):
    root = tmp_path / "syn"
    pairs = generate_synthetic_dataset(root, 3, seed=5, split="val", width=256, height=256, progress=False)
    assert [p.name for p, _ in pairs] == ["val_000000.png", "val_000001.png", "val_000002.png"]
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["n_images"] == 3 and manifest["params"]["seed"] == 5
    # the files hold exactly what render_scene makes for that image's seed
    image, labels = render_scene(scene_seed(5, "val", 1), 256, 256)
    read = read_obb_json(pairs[1][1])
    assert read.image == "val_000001.png" and read.classes == labels.classes
    assert np.allclose(read.boxes, labels.boxes, atol=1e-9)
    assert np.allclose(read.heading, labels.heading, atol=1e-9)
    import cv2
    assert np.array_equal(cv2.imread(str(pairs[1][0]))[..., ::-1], image)
    mtimes = [os.stat(p).st_mtime_ns for pair in pairs for p in pair]
    again = generate_synthetic_dataset(root, 4, seed=5, split="val", width=256, height=256, progress=False)
    assert [os.stat(p).st_mtime_ns for pair in again[:3] for p in pair] == mtimes  # reused, not rewritten
    assert again[3][0].is_file() and json.loads((root / "manifest.json").read_text())["n_images"] == 4
    with pytest.raises(ValueError, match="other parameters.*seed"):
        generate_synthetic_dataset(root, 3, seed=6, split="val", width=256, height=256, progress=False)
    with pytest.raises(ValueError, match="hard_negatives|options"):
        generate_synthetic_dataset(root, 3, seed=5, split="val", width=256, height=256, progress=False,
                                   hard_negatives=False)


def test_load_synthetic_samples_and_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("OBBDET_CACHE_DIR", str(tmp_path))
    samples = load_synthetic(n_train=3, n_val=2, seed=1, width=256, height=256, progress=False,
                             classes=("car", "van"))
    assert [s.meta["split"] for s in samples] == ["train"] * 3 + ["val"] * 2
    folders = list((tmp_path / "synthetic").iterdir())
    assert len(folders) == 1 and (folders[0] / "train" / "manifest.json").is_file()
    for s in samples:
        assert s.meta["class_names"] == ["car", "van"] and s.meta["classes"] == ("car", "van")
        assert s.boxes.dtype == np.float32 and s.labels.dtype == np.int64 and s.heading.dtype == np.float32
        assert s.source == "synthetic" and not s.aabb_only
        assert set(s.labels.tolist()) <= {0, 1}
        labels = read_obb_json(s.meta["label_path"])
        assert [["car", "van"][i] for i in s.labels] == labels.classes
    # train and val images are different scenes
    assert scene_seed(1, "train", 0) != scene_seed(1, "val", 0)
    other = load_synthetic(n_train=1, n_val=0, seed=2, width=256, height=256, progress=False)
    assert len(list((tmp_path / "synthetic").iterdir())) == 2 and other[0].meta["classes"] == SYNTHETIC_CLASSES


def test_make_synthetic_cli(tmp_path, capsys):
    from obbdet.tools.make_synthetic import main

    out = tmp_path / "cli"
    assert main([str(out), "--n", "2", "--width", "192", "--height", "160", "--vehicle-width", "14,18",
                 "--preview", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "2 images" in printed and (out / "preview" / "train_000000.png").is_file()
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["train_000000.json", "train_000001.json"]
    assert main([str(out), "--n", "2", "--seed", "9", "--width", "192", "--height", "160", "--quiet"]) == 2
    assert "other parameters" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(out), "--classes", "plane"])
