"""Golden tests: every rule of the evaluation notes on hand-built cases with hand-computed expectations.

Boxes are axis-aligned ``[x0, y0, x1, y1]`` so every IoU is a simple fraction computed exactly.
"""
from __future__ import annotations

import numpy as np
import pytest

from obbdet.boxes import aabb_to_xywha
from obbdet.structures import ImageLabels

from obbdet.eval import evaluate, match_image
from obbdet.eval.ap import ap_11_point, ap_101_point, ap_every_point, precision_recall

FAR = [500, 500, 510, 510]  # overlaps nothing


def labels(rects, classes="car", scores=None, difficult=None, ignore=None) -> ImageLabels:
    rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    n = len(rects)
    names = [classes] * n if isinstance(classes, str) else list(classes)
    return ImageLabels(boxes=aabb_to_xywha(rects), classes=names,
                       scores=None if scores is None else np.asarray(scores, dtype=np.float64),
                       difficult=np.zeros(n, bool) if difficult is None else np.asarray(difficult, bool),
                       ignore=np.zeros(n, bool) if ignore is None else np.asarray(ignore, bool))


def stats(result, cls="car", key="0.50"):
    s = result.per_class[cls][key]
    return s["ap"], s["tp"], s["fp"], s["gt"], s["det"]


# ---- AP interpolation ---------------------------------------------------------------------------------

# ranked TP, FP, TP, FP, FP, TP with 3 positives:
# recall 1/3 1/3 2/3 2/3 2/3 1, precision 1 1/2 2/3 1/2 2/5 1/2
RANKED_TP = np.array([1, 0, 1, 0, 0, 1], bool)


def test_every_point_11_point_101_point_by_hand():
    recall, precision = precision_recall(RANKED_TP, ~RANKED_TP, 3)
    # every point: envelope 1 on (0, 1/3], 2/3 on (1/3, 2/3], 1/2 on (2/3, 1]
    assert ap_every_point(recall, precision) == pytest.approx(13 / 18, abs=1e-15)
    # 11 point: r = 0..0.3 -> 1 (4x), 0.4..0.6 -> 2/3 (3x), 0.7..1.0 -> 1/2 (4x)
    assert ap_11_point(recall, precision) == pytest.approx(8 / 11, abs=1e-15)
    # 101 point: r = 0..0.33 -> 1 (34x), 0.34..0.66 -> 2/3 (33x), 0.67..1 -> 1/2 (34x)
    assert ap_101_point(recall, precision) == pytest.approx(73 / 101, abs=1e-15)


def test_ap_methods_through_evaluate():
    gt = {"a": labels([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]])}
    det_rects = [[0, 0, 10, 10], FAR, [20, 0, 30, 10], FAR, FAR, [40, 0, 50, 10]]
    det = {"a": labels(det_rects, scores=[0.9, 0.8, 0.7, 0.6, 0.5, 0.4])}
    expected = {"voc": 13 / 18, "voc07": 8 / 11, "coco": 73 / 101}
    for method, value in expected.items():
        result = evaluate(gt, det, iou_thresholds=0.5, ap_method=method)
        assert result.map["0.50"] == pytest.approx(value, abs=1e-15), method
        assert stats(result)[1:] == (3, 3, 3, 6)


def test_eleven_point_uses_linspace_thresholds():
    # recall reaches exactly 0.3 (3 of 10): np.linspace(0, 1, 11)[3] is 0.30000000000000004 > 0.3, so the
    # precision at recall 0.3 does not count for r = 0.3 (same as the VOC and DOTA devkits)
    tp = np.array([1, 1, 1], bool)
    recall, precision = precision_recall(tp, ~tp, 10)
    assert recall[-1] == 0.3
    assert ap_11_point(recall, precision) == pytest.approx(3 / 11)


# ---- matching rules --------------------------------------------------------------------------------

def test_equal_scores_keep_reading_order_across_files():
    # the FP is in "img10", which sorts before "img9": ranked FP then TP -> precision 1/2 at recall 1
    gt = {"img9": labels([[0, 0, 10, 10]]), "img10": labels([[0, 0, 10, 10]])}
    det = {"img9": labels([[0, 0, 10, 10]], scores=[0.5]), "img10": labels([FAR], scores=[0.5])}
    gt["img10"] = labels(np.zeros((0, 4)))
    assert stats(evaluate(gt, det, iou_thresholds=0.5))[:3] == (0.5, 1, 1)
    # the same within one file: line order decides
    gt = {"a": labels([[0, 0, 10, 10]])}
    fp_first = {"a": labels([FAR, [0, 0, 10, 10]], scores=[0.5, 0.5])}
    tp_first = {"a": labels([[0, 0, 10, 10], FAR], scores=[0.5, 0.5])}
    assert stats(evaluate(gt, fp_first, iou_thresholds=0.5))[0] == 0.5
    assert stats(evaluate(gt, tp_first, iou_thresholds=0.5))[0] == 1.0


def test_best_gt_first_on_ties_whether_or_not_matched():
    # the detection overlaps two GT with IoU 1/3 each: it takes the first (g0); the second, identical
    # detection takes g0 again (already matched) -> FP, although g1 is free
    gt = {"a": labels([[0, 0, 10, 10], [10, 0, 20, 10]])}
    det = {"a": labels([[5, 0, 15, 10], [5, 0, 15, 10]], scores=[0.9, 0.8])}
    result = evaluate(gt, det, iou_thresholds=0.3)
    assert stats(result, key="0.30") == (0.5, 1, 1, 2, 2)
    match = match_image(gt["a"], det["a"], 0.3)
    assert list(match.status) == ["tp", "fp"] and list(match.gt_index) == [0, 0]
    assert list(match.fp_kind) == ["", "duplicate"]
    assert list(match.gt_matched) == [True, False]
    # COCO takes the best *unmatched* GT (the last one on ties): both detections are TPs
    coco = evaluate(gt, det, iou_thresholds=0.3, compat="coco")
    assert stats(coco, key="0.30")[1:3] == (2, 0)
    assert list(match_image(gt["a"], det["a"], 0.3, compat="coco").gt_index) == [1, 0]


def test_first_on_ties_picks_a_difficult_gt():
    gt = {"a": labels([[0, 0, 10, 10], [10, 0, 20, 10]], difficult=[True, False])}
    det = {"a": labels([[5, 0, 15, 10]], scores=[0.9])}
    result = evaluate(gt, det, iou_thresholds=0.3)
    assert stats(result, key="0.30") == (0.0, 0, 0, 1, 1)  # ignored: neither TP nor FP
    assert list(match_image(gt["a"], det["a"], 0.3).status) == ["ignored"]


def test_difficult_gt_is_neither_tp_nor_fp_nor_positive():
    rects = [[0, 0, 10, 10], [20, 0, 30, 10]]
    dets = labels([[20, 0, 30, 10], FAR, [0, 0, 10, 10], [0, 0, 10, 10]], scores=[0.9, 0.8, 0.7, 0.6])
    # g0 difficult: ranked TP, FP, ignored, ignored -> npos 1, AP 1
    hard = evaluate({"a": labels(rects, difficult=[True, False])}, {"a": dets}, iou_thresholds=0.5)
    assert stats(hard) == (1.0, 1, 1, 1, 4)
    # not difficult: TP, FP, TP, FP(duplicate) -> recall .5 .5 1 1, precision 1 .5 .667 .5 -> AP 1/2 + 1/2 * 2/3
    easy = evaluate({"a": labels(rects)}, {"a": dets}, iou_thresholds=0.5)
    assert stats(easy) == (pytest.approx(0.5 + 0.5 * 2 / 3), 2, 2, 2, 4)


def test_ignored_gt_is_dropped_entirely():
    gt = {"a": labels([[0, 0, 10, 10], [20, 0, 30, 10]], ignore=[True, False])}
    det = {"a": labels([[0, 0, 10, 10], [20, 0, 30, 10]], scores=[0.9, 0.8])}
    assert stats(evaluate(gt, det, iou_thresholds=0.5)) == (pytest.approx(0.5), 1, 1, 1, 2)


def test_duplicates_are_false_positives():
    gt = {"a": labels([[0, 0, 10, 10]])}
    det = {"a": labels([[0, 0, 10, 10], [0, 0, 10, 9], [1, 0, 10, 10]], scores=[0.9, 0.8, 0.7])}
    result = evaluate(gt, det, iou_thresholds=0.5)
    assert stats(result) == (1.0, 1, 2, 1, 3)


def test_detections_of_images_without_gt_are_false_positives_with_warning():
    gt = {"a": labels([[0, 0, 10, 10]])}
    det = {"a": labels([[0, 0, 10, 10]], scores=[0.5]), "b": labels([[0, 0, 10, 10]], scores=[0.9])}
    result = evaluate(gt, det, iou_thresholds=0.5)
    assert stats(result) == (0.5, 1, 1, 1, 2)  # ranked FP (image b), TP
    assert any("1 detection(s) in 1 image(s) without a ground-truth file" in w for w in result.warnings)


def test_class_only_in_detections_is_reported_but_not_in_map():
    gt = {"a": labels([[0, 0, 10, 10]])}
    det = {"a": labels([[0, 0, 10, 10], [0, 0, 10, 10]], classes=["car", "plane"], scores=[0.9, 0.8])}
    result = evaluate(gt, det, iou_thresholds=0.5)
    assert result.map["0.50"] == 1.0
    assert stats(result, "plane") == (0.0, 0, 1, 0, 1)
    assert result.det_only_classes == ["plane"] and result.map_classes == ["car"]
    assert any("'plane' occurs only in detections" in w for w in result.warnings)
    # DOTA devkit: mAP over every listed class (a class without GT scores 0)
    dota = evaluate(gt, det, iou_thresholds=0.5, compat="dota")
    assert dota.map["0.50"] == 0.5


def test_gt_class_without_detections_counts_zero():
    gt = {"a": labels([[0, 0, 10, 10], [20, 0, 30, 10]], classes=["car", "bus"])}
    det = {"a": labels([[0, 0, 10, 10]], scores=[0.9])}
    result = evaluate(gt, det, iou_thresholds=0.5)
    assert result.map["0.50"] == 0.5
    assert stats(result, "bus") == (0.0, 0, 0, 1, 0)


def test_iou_exactly_at_threshold():
    gt = {"a": labels([[0, 0, 10, 10]])}
    det = {"a": labels([[0, 0, 10, 5]], scores=[0.9])}  # IoU 50/100 = 0.5 exactly
    assert stats(evaluate(gt, det, iou_thresholds=0.5))[1:3] == (1, 0)  # >= by default
    assert stats(evaluate(gt, det, iou_thresholds=0.5, compat="dota"))[1:3] == (0, 1)  # > under dota
    assert list(match_image(gt["a"], det["a"], 0.5, compat="dota").fp_kind) == ["localization"]
    # 12/16 = 0.75 against the 0.75 of np.linspace(0.5, 0.95, 10)
    gt = {"a": labels([[0, 0, 4, 4]])}
    det = {"a": labels([[0, 0, 4, 3]], scores=[0.9])}
    result = evaluate(gt, det)
    assert result.per_class["car"]["0.75"]["tp"] == 1 and result.per_class["car"]["0.80"]["tp"] == 0
    assert result.map["50-95"] == pytest.approx(6 / 10)


def test_rotated_iou_exactly_at_threshold_is_stable():
    # identical rotated boxes except for half the length: IoU 0.5 up to rounding; both readings must
    # agree with match_image (same arithmetic)
    box = np.array([[100.0, 80.0, 40.0, 10.0, 0.6]])
    half = box.copy()
    half[0, 2] = 20.0
    half[0, :2] += 10.0 * np.array([np.cos(0.6), np.sin(0.6)])
    gt = {"a": ImageLabels(boxes=box, classes=["car"])}
    det = {"a": ImageLabels(boxes=half, classes=["car"], scores=np.array([0.9]))}
    match = match_image(gt["a"], det["a"], 0.5)
    assert match.iou[0] == pytest.approx(0.5, abs=1e-12)
    assert stats(evaluate(gt, det, iou_thresholds=0.5))[1] == int(match.status[0] == "tp")


def test_empty_inputs():
    gt = {"a": labels([[0, 0, 10, 10]])}
    no_det = evaluate(gt, {}, iou_thresholds=0.5)
    assert no_det.map == {"0.50": 0.0, "mean": 0.0} and stats(no_det) == (0.0, 0, 0, 1, 0)
    assert any("no detections" in w for w in no_det.warnings)
    no_gt = evaluate({}, {"a": labels([[0, 0, 10, 10]], scores=[0.9])}, iou_thresholds=0.5)
    assert no_gt.map["0.50"] == 0.0 and no_gt.map_classes == [] and stats(no_gt)[1:3] == (0, 1)
    nothing = evaluate({}, {})
    assert nothing.map["50-95"] == 0.0 and nothing.classes == []
    assert nothing.format_tables()  # prints without failing


def test_map_is_mean_over_classes_with_positives_and_50_95_over_ten_thresholds():
    gt = {"a": labels([[0, 0, 10, 10], [20, 0, 30, 10]], classes=["car", "bus"])}
    det = {"a": labels([[0, 0, 10, 10], [20, 0, 30, 7]], classes=["car", "bus"], scores=[0.9, 0.8])}
    result = evaluate(gt, det)  # bus IoU 0.7: TP up to 0.70
    bus = [result.per_class["bus"][k]["ap"] for k in result.map if k != "50-95"]
    assert bus == [1.0] * 5 + [0.0] * 5
    assert result.map["0.70"] == 1.0 and result.map["0.75"] == 0.5
    assert result.map["50-95"] == pytest.approx((5 * 1.0 + 5 * 0.5) / 10)
    assert list(result.map) == ["0.50", "0.55", "0.60", "0.65", "0.70", "0.75", "0.80", "0.85", "0.90", "0.95",
                                "50-95"]


def test_coco_max_dets_and_area_ranges():
    # small GT (20x20 = 400 px^2) found, large GT (100x100) missed
    gt = {"a": labels([[0, 0, 20, 20], [200, 200, 300, 300]])}
    det = {"a": labels([[0, 0, 20, 20]], scores=[0.9])}
    coco = evaluate(gt, det, iou_thresholds=0.5).coco
    assert coco["AP"] == pytest.approx(51 / 101)  # recall 1/2: recall thresholds 0..0.50 score 1
    assert coco["APs"] == 1.0 and coco["APl"] == 0.0 and coco["APm"] is None
    assert coco["AR@100"] == 0.5
    # compat coco keeps at most max(max_dets) detections per image and class
    gt = {"a": labels([[0, 0, 10, 10], [20, 0, 30, 10]])}
    det = {"a": labels([FAR, [0, 0, 10, 10], [20, 0, 30, 10]], scores=[0.9, 0.8, 0.7])}
    capped = evaluate(gt, det, iou_thresholds=0.5, compat="coco", max_dets=[2])
    assert stats(capped)[1:3] == (1, 1)
    full = evaluate(gt, det, iou_thresholds=0.5, compat="coco")
    assert stats(full)[1:3] == (2, 1)


def test_width_scales_make_one_setting_each():
    gt = {"a": labels([[0, 0, 40, 10]])}
    det = {"a": labels([[0, -1, 40, 11]], scores=[0.9])}  # 20% too wide: IoU 10/12
    result = evaluate(gt, det, width_scales=[1.0, 1 / 1.2])
    assert [s.label for s in result.settings] == ["w=1.000", "w=0.833"]
    assert result.settings[0].map["0.80"] == 1.0 and result.settings[0].map["0.85"] == 0.0
    assert result.settings[1].map["0.95"] == 1.0
    assert result.best_setting["index"] == 1 and result.best_setting["gain"] == pytest.approx(0.3)
    assert result.map == result.settings[0].map  # the first listed setting is the reference
