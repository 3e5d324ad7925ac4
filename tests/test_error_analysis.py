"""tools/error_analysis.py: each TIDE error type attributed and its dAP; box statistics; real fixtures."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.test_draw_obb import _labels, jittered_dota  # noqa: F401  (jittered_dota is a fixture)
from obbdet.tools import error_analysis
from obbdet.tools.error_analysis import analyze
from obbdet.tools.error_breakdown import angle_error_deg


def _every_point_ap(tp_flags, npos):
    """Independent every-point AP: precision envelope summed over recall steps."""
    tp_flags = np.asarray(tp_flags, bool)
    if npos == 0 or not tp_flags.any():
        return 0.0
    tp = np.cumsum(tp_flags)
    precision = tp / np.arange(1, len(tp_flags) + 1)
    ap = 0.0
    for k in np.flatnonzero(tp_flags):  # each TP raises recall by 1/npos at the envelope there
        ap += precision[k:].max() / npos
    return ap


def _constructed():
    """One of each error type, all detections of class car (scores in brackets).

    GT: g1 car (0, 0), g2 truck (200, 0), g3 car (0, 200), g5 car (400, 400) never found, g6 car (200, 400).
    Detections: background (.95) far away, TP on g1 (.9), duplicate on g1 (.8), classification on g2 (.7),
    localization on g3 (.6, IoU ~0.3), both near g2 (.5, IoU ~0.3 with a truck), TP on g6 (.3).
    """
    size = [40, 20, 0]
    gt = _labels([[0, 0, *size], [200, 0, *size], [0, 200, *size], [400, 400, *size], [200, 400, *size]],
                 ["car", "truck", "car", "car", "car"])
    det = _labels([[600, 600, *size], [0, 0, *size], [1, 0, *size], [200, 0, *size], [20, 200, *size],
                   [221, 0, *size], [200, 400, *size]],
                  ["car"] * 7, scores=[0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.3])
    return {"img": gt}, {"img": det}


def test_each_error_type_is_attributed():
    gt, det = _constructed()
    breakdown, collected = analyze(gt, det, iou_threshold=0.5, background_iou=0.1)
    assert collected.det_error == ["background", "", "duplicate", "classification", "localization", "both", ""]
    assert collected.det_status == ["fp", "tp", "fp", "fp", "fp", "fp", "tp"]
    assert collected.det_target[2:6] == [0, 1, 2, 1]
    expected_counts = {"classification": 1, "localization": 1, "both": 1, "duplicate": 1, "background": 1,
                       "missed": 1, "all FP": 5, "all FN": 3}
    assert breakdown.counts == expected_counts
    assert breakdown.per_class_counts["car"]["missed"] == 1 and breakdown.per_class_counts["truck"]["GT"] == 1


def test_delta_map_of_each_fix():
    gt, det = _constructed()
    b, _ = analyze(gt, det, iou_threshold=0.5)
    F, T = False, True
    car_base = [F, T, F, F, F, F, T]  # car detections in score order; car npos 4, truck npos 1
    base = (_every_point_ap(car_base, 4) + 0.0) / 2
    assert b.base_map == pytest.approx(base, abs=1e-12)
    expected = {
        "background": (_every_point_ap([T, F, F, F, F, T], 4) + 0) / 2,
        "duplicate": (_every_point_ap([F, T, F, F, F, T], 4) + 0) / 2,
        "classification": (_every_point_ap([F, T, F, F, F, T], 4) + 1.0) / 2,  # it becomes the truck's TP
        "localization": (_every_point_ap([F, T, F, F, T, F, T], 4) + 0) / 2,
        "both": (_every_point_ap([F, T, F, F, F, T], 4) + 0) / 2,
        "missed": (_every_point_ap(car_base, 3) + 0) / 2,
        "all FP": (_every_point_ap([T, T], 4) + 0) / 2,
        "all FN": (_every_point_ap(car_base, 2) + 0) / 2,  # truck: no positives left, AP 0
    }
    for name, value in expected.items():
        assert b.delta_map[name] == pytest.approx(value - base, abs=1e-12), name
    assert b.delta_map["classification"] > b.delta_map["background"] > 0


def test_base_map_agrees_with_the_evaluation():
    from obbdet.eval import evaluate

    gt, det = _constructed()
    b, _ = analyze(gt, det, iou_threshold=0.5)
    assert b.base_map == pytest.approx(evaluate(gt, det, iou_thresholds=[0.5]).map["0.50"], abs=1e-12)


def test_angle_error_is_mod_pi_and_near_square_aware():
    det = np.array([[0, 0, 40, 20, math.radians(-89.5)], [0, 0, 20, 19.5, math.radians(45)],
                    [0, 0, 40, 10, math.radians(30)]])
    gt = np.array([[0, 0, 40, 20, math.radians(89.5)], [0, 0, 20, 19.9, math.radians(-45)],
                   [0, 0, 40, 10, math.radians(-30)]])
    np.testing.assert_allclose(angle_error_deg(det, gt), [1.0, 0.0, 60.0], atol=1e-9)


def test_width_ratio_and_centre_statistics():
    gt = _labels([[100 * k, 0, 40, 20, 0.2] for k in range(5)], ["car"] * 5)
    boxes = gt.boxes.copy()
    boxes[:, 3] *= 1.1
    boxes[:, 0] += 3.0
    det = _labels(boxes, ["car"] * 5, scores=np.linspace(0.9, 0.5, 5))
    b, _ = analyze({"a": gt}, {"a": det}, iou_threshold=0.5)
    assert b.stats["tp"]["width_ratio"]["median"] == pytest.approx(1.1)
    assert b.stats["tp"]["length_ratio"]["median"] == pytest.approx(1.0)
    assert b.stats["tp"]["centre_error_px"]["median"] == pytest.approx(3.0)
    assert "width scale of about 0.909" in error_analysis.format_report(b)


def test_cli_on_real_fixtures(tmp_path, jittered_dota, capsys):  # noqa: F811
    dota, det_dir = jittered_dota
    out = tmp_path / "out"
    assert error_analysis.main([str(dota / "labelTxt"), str(det_dir), "--iou", "0.5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "classification" in printed and "dAP50" in printed
    doc = json.loads((out / "error_analysis.json").read_text())
    counts = doc["counts"]
    assert counts["background"] >= 10  # the fake boxes far from everything
    assert counts["missed"] > 0 and counts["localization"] > 0
    assert all(doc["delta_map"][t] >= -1e-12 for t in error_analysis.ERROR_TYPES)
    assert doc["stats"]["tp"]["angle_error_deg"]["n"] > 300
    for name in ("error_breakdown.png", "tp_errors.png", "fp_shapes.png", "error_analysis.txt"):
        assert (out / name).stat().st_size > 0
    n_det = sum(len(json.loads(p.read_text())["objects"]) for p in det_dir.glob("*.json"))
    assert doc["n_detections"] == n_det
    from obbdet.eval import evaluate
    from obbdet.formats import read_label_folder

    result = evaluate(read_label_folder(dota / "labelTxt", "dota"),
                      read_label_folder(det_dir, "obb_json", detections=True), iou_thresholds=[0.5])
    assert doc["map"] == pytest.approx(result.map["0.50"], abs=1e-12)


def test_bad_input_is_one_line_error(tmp_path, capsys):
    gt_dir, det_dir = tmp_path / "gt", tmp_path / "det"
    gt_dir.mkdir()
    det_dir.mkdir()
    (gt_dir / "a.txt").write_text("0 0 10 0 10 5 0 5 car 0\n")
    (det_dir / "a.txt").write_text("0 0 10 0 10 5 0 5 car 0.9\n0 0 10 0 10 5 car 0.9\n")
    status = error_analysis.main([str(gt_dir), str(det_dir), "--out", str(tmp_path / "out"), "--no-plots"])
    err = capsys.readouterr().err
    assert status == 1 and f"{det_dir / 'a.txt'}:2:" in err and "Traceback" not in err
