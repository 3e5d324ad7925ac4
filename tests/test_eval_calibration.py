"""Width calibration: detections drawn 8% too wide are recovered by ``--calibrate``."""
from __future__ import annotations

import json

import pytest

from obbdet.formats import write_obb_json
from obbdet.eval import evaluate
from obbdet.eval.calibration import search_factor
from obbdet.eval.pascalvoc import main
from tests.eval_support import noisy_cars

WIDENING = 1.08


def widened_set(seed: int = 0, n_images: int = 30, per_image: int = 25):
    """GT cars and detections with the short side widened by 8% plus realistic noise."""
    return noisy_cars(seed, n_images, per_image, widening=WIDENING)


def test_calibrate_recovers_the_widening():
    gt, det = widened_set()
    result = evaluate(gt, det, calibrate=True)
    cal = result.calibration
    assert abs(cal["width_scale"] - 1 / WIDENING) < 0.01
    assert cal["length_scale"] == 1.0
    assert cal["gain"] > 0.03 and cal["summary"] == pytest.approx(result.settings[-1].summary)
    assert result.best_setting["label"].startswith("calibrated") and result.best_setting["gain"] == cal["gain"]
    table = result.format_tables(per_class=False)
    assert f"({100 * cal['gain']:+.2f})" in table and "*best" in table and "Calibration: best w=" in table
    curve = dict((round(f, 6), v) for f, v in cal["width_curve"])
    assert curve[1.0] == pytest.approx(cal["reference"]) and max(curve.values()) == cal["summary"]


def test_calibrate_length_keeps_a_correct_length():
    gt, det = widened_set(seed=1, n_images=12)
    cal = evaluate(gt, det, calibrate=True, calibrate_length=True).calibration
    assert abs(cal["width_scale"] - 1 / WIDENING) < 0.015 and abs(cal["length_scale"] - 1.0) < 0.02
    assert cal["length_curve"]


def test_cli_calibrate_writes_plot_and_json(tmp_path, capsys):
    gt, det = widened_set(seed=2, n_images=8)
    for name, records in (("gt", gt), ("det", det)):
        (tmp_path / name).mkdir()
        for key, labels in records.items():
            write_obb_json(tmp_path / name / f"{key}.json", labels)
    code = main(["-gt", str(tmp_path / "gt"), "-det", str(tmp_path / "det"), "--calibrate",
                 "--width-scales", "1.0,0.938", "-sp", str(tmp_path / "out"), "--no-per-class"])
    out = capsys.readouterr().out
    assert code == 0 and "calibrated w=0.9" in out and "Calibration: best" in out
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(data["settings"]) == 3 and data["best_setting"]["label"].startswith("calibrated")
    assert abs(data["calibration"]["width_scale"] - 1 / WIDENING) < 0.015
    assert (tmp_path / "out" / "calibration.png").stat().st_size > 1000


def test_search_factor_prefers_one_on_flat_curves_and_finds_peaks():
    assert search_factor(lambda f: 0.5, 0.7, 1.1) == (1.0, 0.5)
    best, value = search_factor(lambda f: -(f - 0.8731) ** 2, 0.7, 1.1)
    assert abs(best - 0.8731) <= 0.0005 and value <= 0


def test_plateau_of_equal_scores_takes_its_middle_unless_it_holds_one():
    from obbdet.eval.calibration import search_factor

    # mAP flat on [1.026, 1.137] (labels 8% wider than exact detections): the middle, not the end nearest 1
    plateau = lambda f: 1.0 if 1.026 <= f <= 1.137 else 0.5  # noqa: E731
    best, value = search_factor(plateau, 0.8, 1.2, steps=(0.005, 0.001))
    assert value == 1.0 and abs(best - (1.026 + 1.137) / 2) <= 0.003
    # a flat curve that includes 1.0 keeps 1.0
    best, _ = search_factor(lambda f: 1.0 if 0.97 <= f <= 1.2 else 0.0, 0.8, 1.2, steps=(0.005, 0.001))
    assert best == 1.0
