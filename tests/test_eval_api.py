"""Python API: evaluate_arrays / evaluate_samples, match_image, and the vectorized engine against literal
re-implementations of the matching rules on random data (ties, difficult, duplicates, many classes)."""
from __future__ import annotations

import numpy as np
import pytest

from obbdet.iou import box_iou_rotated
from obbdet.structures import ImageLabels, Sample

from obbdet.eval import EvalResult, evaluate, evaluate_arrays, evaluate_samples, match_image
from obbdet.eval.ap import average_precision, precision_recall
from obbdet.pairs import aabb_overlap_pairs

CLASSES = ["car", "truck", "bus"]


def random_set(seed: int, n_images: int = 25, tie_scores: bool = True):
    """Random scenes with jittered copies of GT, duplicates, misclassifications, difficult and ignored GT."""
    rng = np.random.default_rng(seed)
    gt, det = {}, {}
    for i in range(n_images):
        n = int(rng.integers(0, 14))
        boxes = np.column_stack([rng.uniform(0, 150, n), rng.uniform(0, 150, n), rng.uniform(12, 40, n),
                                 rng.uniform(5, 12, n), rng.uniform(-np.pi / 2, np.pi / 2, n)])
        boxes[rng.random(n) < 0.2, 4] = 0.0  # some axis-aligned
        classes = [CLASSES[k] for k in rng.integers(0, 3, n)]
        gt[f"im{i:03d}"] = ImageLabels(boxes=boxes, classes=classes, difficult=rng.random(n) < 0.15,
                                       ignore=rng.random(n) < 0.05)
        m = int(rng.integers(0, 18))
        src = rng.integers(0, max(n, 1), m)
        dboxes = np.column_stack([rng.uniform(0, 150, m), rng.uniform(0, 150, m), rng.uniform(12, 40, m),
                                  rng.uniform(5, 12, m), rng.uniform(-np.pi / 2, np.pi / 2, m)])
        if n:
            jitter = rng.normal(0, [2.0, 2.0, 2.0, 0.8, 0.08], (m, 5))
            copies = rng.random(m) < 0.8
            dboxes[copies] = boxes[src[copies]] + jitter[copies]
            dboxes[:, 2:4] = np.abs(dboxes[:, 2:4]) + 0.5
        dclasses = [classes[s] if n and rng.random() < 0.9 else CLASSES[rng.integers(0, 3)] for s in src]
        scores = np.round(rng.random(m), 1) if tie_scores else rng.random(m)
        det[f"im{i:03d}"] = ImageLabels(boxes=dboxes, classes=dclasses, scores=scores)
    return gt, det


# ---- literal reference implementations -----------------------------------------------------------------

def reference_voc(gt, det, thresholds, strict=False, method="voc"):
    """The default rule exactly as written in the evaluation notes, one detection at a time."""
    keys = sorted(set(gt) | set(det))
    out = {}
    for cls in CLASSES:
        dets = [(k, j, float(det[k].scores[j])) for k in keys if k in det for j in range(len(det[k]))
                if det[k].classes[j] == cls]
        dets.sort(key=lambda d: -d[2])  # stable
        npos = sum(1 for k in gt for g in range(len(gt[k])) if gt[k].classes[g] == cls
                   and not gt[k].difficult[g] and not gt[k].ignore[g])
        for t in thresholds:
            used, tp, fp = set(), [], []
            for k, j, _ in dets:
                best, best_g = 0.0, -1
                if k in gt:
                    for g in range(len(gt[k])):
                        if gt[k].classes[g] != cls or gt[k].ignore[g]:
                            continue
                        iou = float(box_iou_rotated(gt[k].boxes[g:g + 1], det[k].boxes[j:j + 1])[0, 0])
                        if iou > best:
                            best, best_g = iou, g
                ok = best_g >= 0 and (best > t if strict else best >= t)
                if ok and gt[k].difficult[best_g]:
                    continue
                hit = ok and (k, best_g) not in used
                if hit:
                    used.add((k, best_g))
                tp.append(hit)
                fp.append(not hit)
            recall, precision = precision_recall(np.array(tp, bool), np.array(fp, bool), npos)
            ap = average_precision(recall, precision, method) if npos else 0.0
            out[(cls, t)] = (ap, sum(tp), sum(fp))
    return out


def reference_coco(gt, det, thresholds, max_det=1000):
    """pycocotools ``evaluateImg`` + ``accumulate`` transcribed literally (difficult GT: ignored crowd-like)."""
    keys = sorted(set(gt) | set(det))
    out = {}
    for cls in CLASSES:
        for t in thresholds:
            scores, tps, fps, npos = [], [], [], 0
            for k in keys:
                g_idx = [g for g in range(len(gt[k])) if gt[k].classes[g] == cls and not gt[k].ignore[g]] \
                    if k in gt else []
                d_idx = [j for j in range(len(det[k])) if det[k].classes[j] == cls] if k in det else []
                d_idx = sorted(d_idx, key=lambda j: -det[k].scores[j])[:max_det]
                ig = [bool(gt[k].difficult[g]) for g in g_idx]
                order = np.argsort(ig, kind="mergesort")
                g_idx = [g_idx[o] for o in order]
                ig = [ig[o] for o in order]
                npos += sum(not x for x in ig)
                matched = [False] * len(g_idx)
                for j in d_idx:
                    iou_best, m = min(t, 1 - 1e-10), -1
                    for gi, g in enumerate(g_idx):
                        if matched[gi] and not ig[gi]:
                            continue
                        if m > -1 and not ig[m] and ig[gi]:
                            break
                        iou = float(box_iou_rotated(gt[k].boxes[g:g + 1], det[k].boxes[j:j + 1])[0, 0])
                        if iou < iou_best:
                            continue
                        iou_best, m = iou, gi
                    scores.append(float(det[k].scores[j]))
                    if m == -1:
                        tps.append(False)
                        fps.append(True)
                    else:
                        matched[m] = True
                        tps.append(not ig[m])
                        fps.append(False)
            order = np.argsort(-np.array(scores), kind="mergesort")
            tp = np.array(tps, bool)[order] if scores else np.zeros(0, bool)
            fp = np.array(fps, bool)[order] if scores else np.zeros(0, bool)
            counted = tp | fp
            recall, precision = precision_recall(tp[counted], fp[counted], npos)
            out[(cls, t)] = (average_precision(recall, precision, "coco") if npos else 0.0, int(tp.sum()),
                             int(fp.sum()))
    return out


def _check_against(result: EvalResult, reference: dict, thresholds):
    for (cls, t), (ap, tp, fp) in reference.items():
        key = f"{t:.2f}"
        got = result.per_class[cls][key]
        assert (got["tp"], got["fp"]) == (tp, fp), (cls, key)
        assert got["ap"] == pytest.approx(ap, abs=1e-12), (cls, key)


THRESHOLDS = [0.3, 0.5, 0.7, 0.9]


@pytest.mark.parametrize("seed", [0, 1])
def test_default_rule_matches_literal_reference(seed):
    gt, det = random_set(seed)
    result = evaluate(gt, det, iou_thresholds=THRESHOLDS)
    _check_against(result, reference_voc(gt, det, THRESHOLDS), THRESHOLDS)
    dota = evaluate(gt, det, iou_thresholds=THRESHOLDS, compat="dota")
    _check_against(dota, reference_voc(gt, det, THRESHOLDS, strict=True, method="voc07"), THRESHOLDS)


def test_coco_rule_matches_literal_pycocotools_transcription():
    gt, det = random_set(2)
    result = evaluate(gt, det, iou_thresholds=THRESHOLDS, compat="coco")
    _check_against(result, reference_coco(gt, det, THRESHOLDS), THRESHOLDS)
    capped = evaluate(gt, det, iou_thresholds=THRESHOLDS, compat="coco", max_dets=[2])
    _check_against(capped, reference_coco(gt, det, THRESHOLDS, max_det=2), THRESHOLDS)


@pytest.mark.parametrize("compat", [None, "dota", "coco"])
def test_match_image_sums_to_evaluate(compat):
    gt, det = random_set(3)
    result = evaluate(gt, det, iou_thresholds=[0.5], compat=compat)
    totals = {c: [0, 0] for c in CLASSES}
    for key in gt:
        match = match_image(gt[key], det[key], 0.5, compat=compat)
        for cls, status in zip(det[key].classes, match.status):
            totals[cls][0] += status == "tp"
            totals[cls][1] += status == "fp"
        assert match.gt_matched.sum() == (match.status == "tp").sum()
        assert not (match.gt_matched & match.gt_ignored).any()
    for cls in CLASSES:
        assert (result.per_class[cls]["0.50"]["tp"], result.per_class[cls]["0.50"]["fp"]) == tuple(totals[cls])


def test_match_image_outcomes_and_fp_kinds():
    gt = ImageLabels(boxes=np.array([[50.0, 50, 40, 20, 0.3], [150, 50, 40, 20, 0.0], [250, 50, 40, 20, 0.0]]),
                     classes=["car", "car", "bus"], difficult=np.array([False, False, True]))
    det = ImageLabels(
        boxes=np.array([[50.0, 50, 40, 20, 0.3], [51, 50, 40, 20, 0.3], [150, 58, 40, 20, 0.0],
                        [250, 50, 40, 20, 0.0], [150, 50, 40, 20, 0.0], [600, 600, 10, 10, 0.0]]),
        classes=["car", "car", "car", "bus", "truck", "car"], scores=np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4]))
    match = match_image(gt, det, 0.5)
    assert list(match.status) == ["tp", "fp", "fp", "ignored", "fp", "fp"]
    assert list(match.fp_kind) == ["", "duplicate", "localization", "", "class", "background"]
    assert list(match.gt_index) == [0, 0, 1, 2, -1, -1]
    assert match.iou[0] == pytest.approx(1.0) and match.iou[2] == pytest.approx(12 / 28)
    assert list(match.gt_matched) == [True, False, False] and list(match.missed) == [False, True, False]
    assert list(match.gt_det_index) == [0, -1, -1]


def test_evaluate_arrays_equals_evaluate_on_records():
    gt, det = random_set(4, tie_scores=False)
    keys = sorted(gt)
    index = {c: i for i, c in enumerate(CLASSES)}

    def keep(labels):
        return ~labels.ignore if labels.scores is None else np.ones(len(labels), bool)

    def arrays(records, field):
        return [np.asarray(getattr(records[k], field))[keep(records[k])] for k in keys]

    def label_ids(records):
        return [np.array([index[c] for c, k in zip(records[key].classes, keep(records[key])) if k], np.int64)
                for key in keys]

    from_arrays = evaluate_arrays(arrays(gt, "boxes"), label_ids(gt), arrays(det, "boxes"), arrays(det, "scores"),
                                  label_ids(det), CLASSES, gt_difficult=arrays(gt, "difficult"))
    from_records = evaluate(gt, det, classes=CLASSES)
    assert from_arrays.map == pytest.approx(from_records.map, abs=1e-12)
    samples = [Sample(image_path=f"{k}.jpg", width=200, height=200, boxes=b.astype(np.float32), labels=lab,
                      difficult=d) for k, b, lab, d in zip(keys, arrays(gt, "boxes"), label_ids(gt),
                                                            arrays(gt, "difficult"))]
    from_samples = evaluate_samples(samples, arrays(det, "boxes"), arrays(det, "scores"), label_ids(det), CLASSES)
    assert from_samples.map["0.50"] == pytest.approx(from_records.map["0.50"], abs=1e-4)  # float32 boxes
    assert set(from_arrays.map) == {f"{t:.2f}" for t in np.linspace(0.5, 0.95, 10)} | {"50-95"}
    assert "50-95" in from_arrays.format_tables()


def test_evaluate_arrays_validates_inputs():
    from obbdet.eval import EvalInputError

    with pytest.raises(EvalInputError, match="one entry per image"):
        evaluate_arrays([np.zeros((0, 5))], [np.zeros(0)], [], [], [], ["car"])
    with pytest.raises(EvalInputError, match="label indices"):
        evaluate_arrays([np.zeros((1, 5)) + 1], [np.array([3])], [np.zeros((0, 5))], [np.zeros(0)],
                        [np.zeros(0, np.int64)], ["car"])
    with pytest.raises(EvalInputError, match="not finite"):
        evaluate_arrays([np.array([[1.0, 1, np.nan, 1, 0]])], [np.array([0])], [np.zeros((0, 5))], [np.zeros(0)],
                        [np.zeros(0, np.int64)], ["car"])


def test_width_scaling_settings_match_rescaled_detections():
    gt, det = random_set(5)
    result = evaluate(gt, det, width_scales=[1.0, 0.9], length_scales=[1.0, 1.05])
    assert [(s.width_scale, s.length_scale) for s in result.settings] == [(1.0, 1.0), (0.9, 1.0), (1.0, 1.05),
                                                                           (0.9, 1.05)]
    scaled = {}
    for k, d in det.items():
        boxes = d.boxes.copy()
        long_is_w = boxes[:, 2] >= boxes[:, 3]
        boxes[:, 2] *= np.where(long_is_w, 1.05, 0.9)
        boxes[:, 3] *= np.where(long_is_w, 0.9, 1.05)
        scaled[k] = ImageLabels(boxes=boxes, classes=d.classes, scores=d.scores)
    direct = evaluate(gt, scaled)
    assert result.settings[3].map == pytest.approx(direct.map, abs=1e-12)


# ---- building blocks ------------------------------------------------------------------------------------

def test_candidate_pairs_equal_brute_force():
    rng = np.random.default_rng(7)
    n1, n2 = 400, 500
    g1, g2 = rng.integers(0, 12, n1), rng.integers(0, 12, n2)
    lo1, lo2 = rng.uniform(0, 300, (n1, 2)), rng.uniform(0, 300, (n2, 2))
    a1 = np.hstack([lo1, lo1 + rng.uniform(0, 40, (n1, 2))])
    a2 = np.hstack([lo2, lo2 + rng.uniform(0, 40, (n2, 2))])
    a2[:5] = a1[:5]  # exact touches and duplicates
    g2[:5] = g1[:5]
    i, j = aabb_overlap_pairs(a1, a2, g1, g2, touching=True)  # the evaluation's candidate pairs
    brute = ((g1[:, None] == g2[None, :]) & (a1[:, None, 0] <= a2[None, :, 2]) & (a2[None, :, 0] <= a1[:, None, 2])
             & (a1[:, None, 1] <= a2[None, :, 3]) & (a2[None, :, 1] <= a1[:, None, 3]))
    assert set(zip(i.tolist(), j.tolist())) == set(zip(*np.nonzero(brute)))
    assert len(i) == brute.sum()
