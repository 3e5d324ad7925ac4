"""Heading (a vehicle's front) lies on its box's long axis: in importers, in prediction, and when detected."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from obbdet.boxes import rolabelimg_to_xywha, snap_heading_to_axis
from obbdet.config import variant_config
from obbdet.model.detector import build_detector


def _axis_gap(heading, angle):
    """Distance of each heading from the nearest end of its box axis (0 when snapped)."""
    d = np.mod(np.asarray(heading) - np.asarray(angle), math.pi)
    return np.minimum(d, math.pi - d)


def test_snap_numpy_and_torch_agree_and_keep_nan():
    rng = np.random.default_rng(0)
    heading, angle = rng.uniform(-math.pi, math.pi, 200), rng.uniform(-math.pi / 2, math.pi / 2, 200)
    heading[::17] = np.nan
    snapped = snap_heading_to_axis(heading, angle)
    finite = np.isfinite(heading)
    assert np.all(np.isnan(snapped[~finite]))
    assert np.allclose(_axis_gap(snapped[finite], angle[finite]), 0, atol=1e-12)
    assert np.all((snapped[finite] >= -math.pi) & (snapped[finite] < math.pi))
    # the nearer end: never more than 90 degrees from the given heading
    turn = np.abs(np.angle(np.exp(1j * (snapped[finite] - heading[finite]))))
    assert np.all(turn <= math.pi / 2 + 1e-12)
    as_torch = snap_heading_to_axis(torch.tensor(heading[finite]), torch.tensor(angle[finite])).numpy()
    np.testing.assert_allclose(np.exp(1j * as_torch), np.exp(1j * snapped[finite]), atol=1e-9)


def test_snap_max_deviation_marks_crosswise_headings_unknown():
    out = snap_heading_to_axis(np.array([0.2, 1.4, -1.6]), np.zeros(3), max_deviation=math.pi / 4)
    assert out[0] == 0.0 and np.isnan(out[1]) and np.isnan(out[2])


def test_rolabelimg_swap_gives_no_heading_and_long_side_keeps_it():
    boxes, heading = rolabelimg_to_xywha(np.array([[0, 0, 40, 20, 3.5], [0, 0, 20, 40, 0.2], [0, 0, 40, 20, 0.1]]))
    assert np.isclose(heading[0], 3.5 - 2 * math.pi) and np.isnan(heading[1])
    assert np.isclose(heading[2], boxes[2, 4]) and boxes[1, 2] == 40  # le90: w is the long side


def test_dota_corner_headings_are_snapped(tmp_path):
    import cv2

    from obbdet.datasets_registry.dota import load_dota

    (tmp_path / "images").mkdir()
    (tmp_path / "labelTxt").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((100, 100, 3), np.uint8))
    # front edge first (points 0, 1 at x=60): heading +x; a slightly skewed quadrilateral; a side-first one
    (tmp_path / "labelTxt" / "a.txt").write_text(
        "60 40 60 50 20 50 20 40 car 0\n"
        "61 10 60 20 20 20 21 10 car 0\n"
        "20 80 60 80 60 90 20 90 car 0\n")
    sample, = load_dota(tmp_path, heading_from_corners=True)
    assert np.isclose(sample.heading[0], 0.0)
    assert np.allclose(_axis_gap(sample.heading[1], sample.boxes[1, 4]), 0, atol=1e-12)
    assert np.isnan(sample.heading[2])  # its first edge runs along the vehicle: no front to read


def test_predicted_heading_lies_on_the_predicted_axis():
    torch.manual_seed(0)
    cfg = variant_config("tiny").model
    detector = build_detector(cfg, ["car", "truck"], heading=True).eval()
    out = detector.predict(torch.rand(1, 3, 128, 128), score_threshold=0.0, max_det_per_image=200)[0]
    assert len(out["boxes"]) > 0 and "heading" in out
    gap = _axis_gap(out["heading"].double().numpy(), out["boxes"][:, 4].double().numpy())
    assert np.all(gap < 1e-5)


@pytest.mark.parametrize("position", [0, 700])
def test_heading_detection_looks_at_every_sample(position):
    from obbdet.structures import Sample
    from obbdet.training import DataSources

    def sample(heading):
        return Sample(image_path="x.png", width=10, height=10, boxes=np.zeros((1, 5)), labels=np.zeros(1, np.int64),
                      difficult=np.zeros(1, bool),
                      heading=heading)

    train = [sample(None) for _ in range(800)]
    train[position] = sample(np.array([0.5]))
    assert DataSources(train, [], ["car"], [800]).has_heading
    assert not DataSources([sample(None)] * 3, [], ["car"], [3]).has_heading
