"""tools/compute_miou.py and eval.miou.compute_miou: one-to-one matching, counts, mIoU, both directions."""
from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from obbdet.boxes import aabb_to_xywha
from obbdet.formats import write_obb_json
from obbdet.iou import box_iou_rotated
from obbdet.structures import ImageLabels

from obbdet.eval.miou import compute_miou

TOOL = Path(__file__).resolve().parents[1] / "tools" / "compute_miou.py"


def rects(boxes, classes="car"):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    names = [classes] * len(boxes) if isinstance(classes, str) else list(classes)
    return ImageLabels(boxes=aabb_to_xywha(boxes), classes=names)


def load_tool():
    spec = importlib.util.spec_from_file_location("compute_miou_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_counts_miou_and_zero_iou_lists():
    a = {"x": rects([[0, 0, 10, 10], [20, 0, 30, 10], [100, 100, 110, 110]])}
    b = {"x": rects([[0, 0, 10, 10], [20, 0, 30, 5], [300, 300, 310, 310], [301, 301, 311, 311]])}
    result = compute_miou(a, b)
    assert (result.matched, result.unmatched_a, result.unmatched_b) == (2, 1, 2)
    assert result.miou == pytest.approx((1.0 + 0.5) / 2)
    assert result.a_to_b.miou_all == pytest.approx(1.5 / 3) and result.b_to_a.miou_all == pytest.approx(1.5 / 4)
    assert result.a_to_b.zero_iou == [("x", 2, "car")]
    assert result.b_to_a.zero_iou == [("x", 2, "car"), ("x", 3, "car")]
    assert sorted(result.pairs) == [("x", 0, 0, 1.0), ("x", 1, 1, 0.5)]
    assert sum(result.a_to_b.histogram) == 2 and result.a_to_b.histogram[-1] == 1
    text = result.format()
    assert "matched pairs: 2   unmatched in A: 1   unmatched in B: 2" in text and "B -> A" in text


def test_matching_is_one_to_one_and_optimal():
    rng = np.random.default_rng(0)
    base = np.column_stack([rng.uniform(0, 60, 6), rng.uniform(0, 60, 6), rng.uniform(20, 30, 6),
                            rng.uniform(8, 12, 6), rng.uniform(-1.5, 1.5, 6)])
    other = base[:5] + rng.normal(0, [6, 6, 2, 1, 0.3], (5, 5))
    other[:, 2:4] = np.abs(other[:, 2:4])
    a = {"x": ImageLabels(boxes=base, classes=["car"] * 6)}
    b = {"x": ImageLabels(boxes=other, classes=["car"] * 5)}
    result = compute_miou(a, b)
    used_a = [p[1] for p in result.pairs]
    used_b = [p[2] for p in result.pairs]
    assert len(set(used_a)) == len(used_a) and len(set(used_b)) == len(used_b)
    iou = box_iou_rotated(base, other)
    best_total = max(sum(iou[i, j] for i, j in zip(perm, range(5))) for perm in itertools.permutations(range(6), 5))
    assert sum(p[3] for p in result.pairs) == pytest.approx(best_total, abs=1e-9)


def test_same_class_by_default_any_class_on_request():
    a = {"x": rects([[0, 0, 10, 10]], "car")}
    b = {"x": rects([[0, 0, 10, 10]], "van")}
    strict = compute_miou(a, b)
    assert strict.matched == 0 and strict.a_to_b.zero_iou == [("x", 0, "car")]
    loose = compute_miou(a, b, any_class=True)
    assert loose.matched == 1 and loose.class_mismatches == 1 and loose.miou == 1.0


def test_images_on_one_side_only_warn():
    result = compute_miou({"x": rects([[0, 0, 1, 1]]), "y": rects([[0, 0, 1, 1]])}, {"x": rects([[0, 0, 1, 1]])})
    assert result.unmatched_a == 1 and any("only in A" in w for w in result.warnings)


def test_cli_prints_both_directions_and_writes_outputs(tmp_path, capsys):
    tool = load_tool()
    for name, boxes in (("a", [[0, 0, 10, 10], [50, 50, 60, 60]]), ("b", [[0, 0, 10, 8]])):
        (tmp_path / name).mkdir()
        write_obb_json(tmp_path / name / "img.json", rects(boxes))
    code = tool.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0 and "mIoU of matched pairs: 0.8000" in out
    assert f"{tmp_path / 'a'} -> {tmp_path / 'b'}" in out and f"{tmp_path / 'b'} -> {tmp_path / 'a'}" in out
    data = json.loads((tmp_path / "out" / "miou.json").read_text())
    assert data["matched"] == 1 and data["unmatched_a"] == 1 and data["a_to_b"]["zero_iou"] == [["img", 1, "car"]]
    assert (tmp_path / "out" / "miou_histogram.png").stat().st_size > 1000
    assert tool.main([str(tmp_path / "missing"), str(tmp_path / "b")]) == 3
    assert "does not exist" in capsys.readouterr().err
