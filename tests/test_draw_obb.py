"""tools/draw_obb.py and obbdet/visualize.py: outcome colours at known pixels, sheets, gallery, bad input."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from obbdet.formats import read_dota, write_obb_json
from obbdet.structures import ImageLabels
from obbdet.imageio import read_image_rgb, write_image_rgb
from obbdet.visualize import OUTCOME_COLORS, class_color, contact_sheet, crop_with_context, draw_labels
from obbdet.tools import draw_obb

BACKGROUND = (40, 40, 40)


def _labels(rows, classes, *, scores=None, difficult=None, heading=None) -> ImageLabels:
    boxes = np.asarray(rows, np.float64).reshape(-1, 5)
    n = len(boxes)
    return ImageLabels(boxes=boxes, classes=list(classes), scores=None if scores is None else np.asarray(scores, float),
                       difficult=np.zeros(n, bool) if difficult is None else np.asarray(difficult, bool),
                       ignore=np.zeros(n, bool), heading=None if heading is None else np.asarray(heading, float))


def _scene(tmp_path):
    """A 240x240 grey image; axis-aligned boxes so edge pixels are known exactly.

    GT: A (matched), B (missed, heading +x), C (difficult). Detections: TP near A, FP in an empty corner,
    one on C (ignored), one too low-scoring to be drawn.
    """
    images, gt_dir, det_dir = tmp_path / "images", tmp_path / "gt", tmp_path / "det"
    for folder in (images, gt_dir, det_dir):
        folder.mkdir()
    write_image_rgb(images / "scene.png", np.full((240, 240, 3), BACKGROUND, np.uint8))
    gt = _labels([[60, 60, 60, 30, 0], [60, 170, 60, 30, 0], [180, 170, 60, 30, 0]], ["car"] * 3,
                 difficult=[False, False, True], heading=[math.nan, 0.0, math.nan])
    det = _labels([[66, 62, 60, 30, 0], [180, 60, 50, 24, 0], [180, 170, 60, 30, 0], [150, 215, 40, 14, 0]],
                  ["car"] * 4, scores=[0.9, 0.8, 0.7, 0.1])
    write_obb_json(gt_dir / "scene.json", gt)
    write_obb_json(det_dir / "scene.json", det)
    return images, gt_dir, det_dir


def _bottom_mid(box, offset=0):
    cx, cy, w, h, _ = box
    return int(round(cy + h / 2)) + offset, int(round(cx))  # (row, col) on the bottom edge


def test_outcome_colours_at_known_pixels(tmp_path):
    images, gt_dir, det_dir = _scene(tmp_path)
    out = tmp_path / "out"
    status = draw_obb.main([str(gt_dir), str(det_dir), "--images", str(images), "--out", str(out), "--ext", "png",
                            "--thickness", "3", "--iou", "0.5", "--score", "0.3"])
    assert status == 0
    drawn = read_image_rgb(out / "images" / "scene.png")
    assert tuple(drawn[_bottom_mid([66, 62, 60, 30, 0])]) == OUTCOME_COLORS["tp"]
    assert tuple(drawn[_bottom_mid([180, 60, 50, 24, 0])]) == OUTCOME_COLORS["fp"]
    assert tuple(drawn[_bottom_mid([60, 170, 60, 30, 0])]) == OUTCOME_COLORS["missed"]
    assert tuple(drawn[_bottom_mid([180, 170, 60, 30, 0])]) == OUTCOME_COLORS["ignored"]
    # matched GT A: its left edge (x = 30) is clear of the TP's (x = 36)
    assert tuple(drawn[60, 30]) == OUTCOME_COLORS["matched_gt"]
    # the heading arrow of missed B points +x beyond the box's right edge (x = 90)
    assert tuple(drawn[170, 98]) == OUTCOME_COLORS["missed"]
    # below --score: not drawn; inside every box: untouched
    assert tuple(drawn[_bottom_mid([150, 215, 40, 14, 0])]) == BACKGROUND
    assert tuple(drawn[180, 60]) == BACKGROUND
    for name in ("false_positives.jpg", "missed.jpg", "index.html", "thumbs/scene.jpg"):
        assert (out / name).is_file(), name
    page = (out / "index.html").read_text()
    assert "images/scene.png" in page and "false_positives.jpg" in page and "missed.jpg" in page
    assert "TP 1, FP 1, missed 1" in page


def test_only_fn_skips_images_without_misses(tmp_path):
    images, gt_dir, det_dir = _scene(tmp_path)
    clean = _labels([[100, 100, 40, 20, 0.3]], ["car"])
    write_obb_json(gt_dir / "clean.json", clean)
    clean.scores = np.array([0.9])
    write_obb_json(det_dir / "clean.json", clean)
    write_image_rgb(images / "clean.jpg", np.zeros((200, 200, 3), np.uint8))
    out = tmp_path / "out"
    assert draw_obb.main([str(gt_dir), str(det_dir), "--images", str(images), "--out", str(out), "--only", "fn"]) == 0
    assert (out / "images" / "scene.jpg").is_file() and not (out / "images" / "clean.jpg").exists()
    assert (out / "missed.jpg").is_file() and not (out / "false_positives.jpg").exists()


def test_labels_only_uses_class_colours(tmp_path):
    images, gt_dir, _ = _scene(tmp_path)
    out = tmp_path / "out"
    assert draw_obb.main([str(gt_dir), "--images", str(images), "--out", str(out), "--ext", "png",
                          "--thickness", "2"]) == 0
    drawn = read_image_rgb(out / "images" / "scene.png")
    assert tuple(drawn[_bottom_mid([60, 170, 60, 30, 0])]) == class_color("car")
    assert not (out / "false_positives.jpg").exists()


def test_draw_labels_api_and_contact_sheet():
    image = np.zeros((100, 100, 3), np.uint8)
    labels = _labels([[50, 50, 40, 20, 0]], ["truck"], scores=[0.95])
    drawn = draw_labels(image, labels, (255, 0, 255), thickness=1)
    assert tuple(drawn[60, 50]) == (255, 0, 255) and image.max() == 0  # input untouched
    assert tuple(draw_labels(image, labels, score_threshold=0.99)[60, 50]) == (0, 0, 0)
    tile = crop_with_context(image, labels.boxes[0], tile_size=64)
    assert tile.shape == (64, 64, 3) and (tile == OUTCOME_COLORS["fp"]).all(axis=2).any()
    sheet = contact_sheet([tile, tile, tile], ["a", "b", "c"], columns=2, title="t")
    assert sheet.shape[1] == 2 * 64 + 3 * 4 and sheet.shape[0] > 2 * 64


def test_missing_image_warns_and_skips(tmp_path, capsys):
    images, gt_dir, det_dir = _scene(tmp_path)
    shutil.rmtree(images)  # also not beside the labels
    out = tmp_path / "out"
    assert draw_obb.main([str(gt_dir), str(det_dir), "--images", str(tmp_path / "nowhere"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning: no image for 'scene'" in err and "Traceback" not in err
    assert (out / "index.html").is_file() and not (out / "images" / "scene.jpg").exists()


def test_bad_detection_file_is_reported_and_the_rest_drawn(tmp_path, capsys):
    images, gt_dir, det_dir = _scene(tmp_path)
    shutil.copy(images / "scene.png", images / "other.png")
    (det_dir / "other.json").write_text('{"objects": [{"class": "car", "cx": 1, "cy": 2, "length": 3, '
                                        '"width": 1, "angle": 0}]}')  # no score
    out = tmp_path / "out"
    status = draw_obb.main([str(gt_dir), str(det_dir), "--images", str(images), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 1
    assert f"{det_dir / 'other.json'}: object #0" in err and "score" in err and "Traceback" not in err
    assert (out / "images" / "scene.jpg").is_file()


def _jitter_to_detections(labels: ImageLabels, rng) -> ImageLabels:
    n = len(labels)
    boxes = labels.boxes.copy()
    boxes[:, :2] += rng.normal(0, 1.0, (n, 2))
    boxes[:, 2:4] *= rng.uniform(0.9, 1.12, (n, 2))
    boxes[:, 4] += rng.normal(0, 0.05, n)
    keep = (rng.random(n) > 0.1) & (labels.boxes[:, 3] > 0)  # some misses; no zero-size detections
    fakes = np.column_stack([rng.uniform(50, 500, 5), rng.uniform(50, 500, 5), np.full(5, 30.0), np.full(5, 12.0),
                             rng.uniform(-1.5, 1.5, 5)])
    boxes = np.concatenate([boxes[keep], fakes])
    classes = [c for c, k in zip(labels.classes, keep) if k] + ["small-vehicle"] * 5
    return _labels(boxes, classes, scores=rng.uniform(0.05, 1.0, len(boxes)))


@pytest.fixture
def jittered_dota(tmp_path, fixtures_dir):
    """DOTA fixture labels and detections made by jittering them (obb_json), written to tmp_path."""
    rng = np.random.default_rng(0)
    det_dir = tmp_path / "det"
    det_dir.mkdir()
    labels_dir = fixtures_dir / "dota" / "labelTxt"
    for path in sorted(labels_dir.glob("*.txt")):
        write_obb_json(det_dir / f"{path.stem}.json", _jitter_to_detections(read_dota(path), rng))
    return fixtures_dir / "dota", det_dir


def test_real_fixtures_with_jittered_detections(tmp_path, jittered_dota, capsys):
    dota, det_dir = jittered_dota
    out = tmp_path / "out"
    assert draw_obb.main([str(dota / "labelTxt"), str(det_dir), "--out", str(out), "--sheet-max", "20"]) == 0
    captured = capsys.readouterr()
    for stem in ("P0003", "P1478__1__853___962", "P1888"):  # images found beside the labels (../images)
        drawn = read_image_rgb(out / "images" / f"{stem}.jpg")
        assert drawn.shape == read_image_rgb(dota / "images" / f"{stem}.png").shape
    sheet = read_image_rgb(out / "false_positives.jpg")
    assert sheet.shape[1] == 8 * (160 + 4) + 4
    assert "sheet shows 20 of" in captured.err  # the cap warns
    assert "3 of 3 image(s) drawn" in captured.out
