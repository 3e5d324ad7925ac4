"""The operating point: per-class score of best F1, measured by eval, stored by training and calibration,
used by infer.py --score auto and --draw."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from obbdet import Predictor
from obbdet.checkpoint import load_checkpoint, operating_point_record, save_checkpoint
from obbdet.cli import infer as infer_cli
from obbdet.eval.core import best_f1
from obbdet.inference import Detections


def test_best_f1_picks_the_cut_and_respects_ties():
    recall = np.array([1, 2, 2, 3]) / 4  # TP, TP, FP, TP of 4 positives
    precision = np.array([1, 1, 2 / 3, 3 / 4])
    f1, score = best_f1(recall, precision, np.array([0.9, 0.8, 0.7, 0.6]))
    assert f1 == pytest.approx(0.75) and score == 0.6  # 3 of 4 found, 3 of 4 kept correct
    # equal scores cannot be split: the cut after the second detection is not available
    f1, score = best_f1(recall, precision, np.array([0.9, 0.8, 0.8, 0.2]))
    assert score in (0.9, 0.2) and f1 == pytest.approx(max(2 * 0.25 / 1.25, 0.75))
    assert best_f1(np.zeros(0), np.zeros(0), np.zeros(0)) == (0.0, None)


def test_training_stores_the_validation_operating_point(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    point = ckpt["operating_point"]
    assert point["iou"] == "0.50" and point["source"].startswith("validation, epoch")
    assert set(point["scores"]) == set(ckpt["model"]["class_names"])


@pytest.fixture
def pointed_checkpoint(tiny_checkpoint, tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint)
    names = ckpt["model"]["class_names"]
    ckpt["operating_point"] = operating_point_record({names[0]: 0.003, names[1]: 0.5}, "test")
    path = tmp_path / "pointed.pt"
    save_checkpoint(ckpt, path)
    return path, names


def test_score_auto_cuts_each_class_at_its_operating_point(pointed_checkpoint, tmp_path):
    path, names = pointed_checkpoint
    torch.set_num_threads(1)
    image = np.random.default_rng(0).integers(0, 255, (256, 256, 3)).astype(np.uint8)
    auto = Predictor.from_checkpoint(path, device="cpu", score_threshold="auto")
    assert auto.options.score_threshold == pytest.approx(0.003)
    det = auto(image)
    low = Predictor.from_checkpoint(path, device="cpu", score_threshold=0.003)(image)
    expected = low.above({names[0]: 0.003, names[1]: 0.5})
    np.testing.assert_array_equal(det.scores, expected.scores)
    assert np.all(det.scores[det.labels == 1] >= 0.5)


def test_score_auto_without_operating_point_is_a_setup_error(tiny_checkpoint, tmp_path, capsys):
    ckpt = load_checkpoint(tiny_checkpoint)
    ckpt.pop("operating_point", None)
    path = tmp_path / "bare.pt"
    save_checkpoint(ckpt, path)
    (tmp_path / "in").mkdir()
    from obbdet.imageio import write_image_rgb

    write_image_rgb(tmp_path / "in" / "a.png", np.zeros((64, 64, 3), np.uint8))
    rc = infer_cli.main([str(tmp_path / "in"), "-1", str(path), "obb", "--score", "auto", "--device", "cpu"])
    assert rc == 2 and "no operating point" in capsys.readouterr().err


def test_detections_above_thresholds():
    det = Detections(np.zeros((4, 5)), np.array([0.9, 0.4, 0.3, 0.1]), np.array([0, 1, 0, 1]), ["car", "bus"],
                     None, (10, 10))
    kept = det.above({"car": 0.35, "bus": 0.05})
    assert kept.scores.tolist() == [0.9, 0.4, 0.1]
    assert det.above(None) is det
    assert json.dumps(operating_point_record({"car": np.float32(0.5), "bus": None}, "x"))  # plain numbers
