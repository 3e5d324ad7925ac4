"""Rotated NMS: keep sets identical to a greedy NMS with shapely polygon IoU, on random and adversarial sets.

The Triton kernels are checked against the CPU path on small inputs under ``TRITON_INTERPRET=1`` (read when the
kernels are decorated, so that check runs in a subprocess), and on CUDA when a GPU is present.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import shapely
import torch

import obbdet
from obbdet.boxes import BOX_DIM, xywha_to_aabb, xywha_to_poly
from obbdet.iou import box_iou_rotated, intersection_area_rotated
from obbdet.nms import batched_nms_rotated, nms_rotated
from obbdet.nms_cpu import TOL_REL_FLOAT64, nms_rotated_numpy
from obbdet.pairs import aabb_overlap_pairs

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_IOU_FLOOR = 1e-9  # shapely's round-off on touching boxes; NMS treats such overlaps as zero too
HALF_PI = math.pi / 2


# ---------------------------------------------------------------------------------------------------
# Reference: greedy NMS with shapely IoU
# ---------------------------------------------------------------------------------------------------

def shapely_iou(boxes: np.ndarray, i: int, others: np.ndarray) -> np.ndarray:
    """IoU ``[M]`` of box ``i`` with boxes ``others`` (indices) of ``boxes [N, 5]`` by shapely polygons.

    Zero-area boxes have IoU 0 (their union may be 0); IoU is clamped to 1 and round-off below
    ``REFERENCE_IOU_FLOOR`` is 0.
    """
    areas = boxes[:, 2] * boxes[:, 3]
    iou = np.zeros(len(others))
    if areas[i] <= 0:
        return iou
    positive = areas[others] > 0
    polys = shapely.polygons(xywha_to_poly(boxes[np.append(others[positive], i)]))
    inter = shapely.area(shapely.intersection(polys[-1], polys[:-1]))
    union = areas[i] + areas[others[positive]] - inter
    iou[positive] = np.minimum(inter / union, 1.0)
    iou[iou < REFERENCE_IOU_FLOOR] = 0.0
    return iou


def reference_nms(boxes, scores, iou_threshold: float, labels=None) -> np.ndarray:
    """Greedy NMS: by descending score (stable), keep a box unless a kept one has IoU > threshold with it."""
    boxes = np.asarray(boxes, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    suppressed = np.zeros(len(boxes), dtype=bool)
    keep = []
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[pos + 1:]
        rest = rest[~suppressed[rest]]
        if labels is not None:
            rest = rest[labels[rest] == labels[i]]
        if len(rest):
            suppressed[rest[shapely_iou(boxes, i, rest) > iou_threshold]] = True
    return np.asarray(keep, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------
# Scenes
# ---------------------------------------------------------------------------------------------------

def clustered_scene(rng, n: int, extent: float = 200.0, jitter: float = 4.0, square: bool = False,
                    right_angles: bool = False):
    """``n`` boxes ``[n, 5]`` float64 in clusters of jittered candidates, and scores ``[n]``."""
    n_objects = max(1, n // 4)
    centres = rng.uniform(0, extent, (n_objects, 2))
    owner = rng.integers(0, n_objects, n)
    length = rng.uniform(8, 40, n_objects)
    width = length if square else length * rng.uniform(0.3, 1.0, n_objects)
    angle = rng.uniform(-HALF_PI, HALF_PI, n_objects)
    if right_angles:
        angle = rng.choice([-HALF_PI, 0.0, HALF_PI, math.pi], n_objects)
    boxes = np.column_stack([centres[owner] + rng.normal(0, jitter, (n, 2)),
                             length[owner] * rng.uniform(0.85, 1.15, n),
                             width[owner] * rng.uniform(0.85, 1.15, n),
                             angle[owner] + rng.normal(0, 0.15, n) * (not right_angles)])
    if square:
        boxes[:, 3] = boxes[:, 2]
    return boxes, rng.uniform(0, 1, n)


def assert_same_keep(boxes, scores, thr, labels=None):
    expected = reference_nms(boxes, scores, thr, labels)
    boxes_t, scores_t = torch.as_tensor(boxes), torch.as_tensor(scores)
    if labels is None:
        got = nms_rotated(boxes_t, scores_t, thr)
    else:
        got = batched_nms_rotated(boxes_t, scores_t, torch.as_tensor(labels), thr)
    assert got.dtype == torch.int64
    np.testing.assert_array_equal(got.numpy(), expected)
    return got.numpy()


# ---------------------------------------------------------------------------------------------------
# Exact intersection
# ---------------------------------------------------------------------------------------------------

def nms_intersection_areas(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The areas NMS decides float64 boxes with: the one rotated intersection, at NMS's tolerance."""
    return intersection_area_rotated(a, b, tol_rel=TOL_REL_FLOAT64)


def _shapely_pair_areas(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return shapely.area(shapely.intersection(shapely.polygons(xywha_to_poly(a)), shapely.polygons(xywha_to_poly(b))))


def test_nms_intersection_matches_shapely_on_random_and_degenerate_pairs():
    rng = np.random.default_rng(0)
    k = 4000
    a = np.column_stack([rng.uniform(-50, 50, (k, 2)), rng.uniform(1, 40, k), rng.uniform(1, 20, k),
                         rng.uniform(-4, 4, k)])
    b = a + np.column_stack([rng.normal(0, 8, (k, 2)), rng.normal(0, 5, (k, 2)), rng.normal(0, 0.6, k)])
    b[:, 2:4] = np.abs(b[:, 2:4])
    b[:400] = a[:400]  # exact duplicates
    b[400:600] = a[400:600] + [0, 0, 0, 0, math.pi]  # the same rectangle, corners in another order
    a[600:700, 3] = a[600:700, 2]
    b[600:700] = a[600:700] + [0, 0, 0, 0, HALF_PI]  # the same square turned by 90 degrees
    b[700:800] = a[700:800][:, [0, 1, 3, 2, 4]] + [0, 0, 0, 0, -HALF_PI]  # sides swapped: the same rectangle
    b[800:1000, 2:] = a[800:1000, 2:]  # same shape and angle, shifted: collinear edges
    b[800:900, :2] = a[800:900, :2] + rng.uniform(-5, 5, (100, 1)) * np.column_stack(
        [np.cos(a[800:900, 4]), np.sin(a[800:900, 4])])
    b[1000:1100] = a[1000:1100] * [1, 1, 0.3, 0.3, 1]  # nested, same centre and angle
    area = nms_intersection_areas(a, b)
    expected = _shapely_pair_areas(a, b)
    # the same rectangle with its corners in another order: the area is known exactly, while GEOS's overlay
    # gets about 1 in 1000 of these nearly coincident polygons wrong (an area near 0)
    expected[:800] = a[:800, 2] * a[:800, 3]
    scale = np.maximum(a[:, 2:4].max(1), b[:, 2:4].max(1)) ** 2
    np.testing.assert_array_less(np.abs(area - expected), 1e-9 * scale)
    np.testing.assert_allclose(area[:800], expected[:800], rtol=1e-12)


def test_nms_intersection_touching_zero_size_and_far_from_origin():
    boxes = np.array([[10.0, 10.0, 20.0, 10.0, 0.0]] * 6)
    theta = 0.3
    other = np.array([
        [30.0, 10.0, 20.0, 10.0, 0.0],  # shares the right edge
        [10.0, 20.0, 20.0, 10.0, math.pi],  # shares the bottom edge, opposite corner order
        [30.0, 20.0, 20.0, 10.0, 0.0],  # shares a corner
        [10.0, 10.0, 20.0, 0.0, 0.3],  # zero height, inside
        [10.0, 10.0, 0.0, 0.0, 0.0],  # a point
        [10.0, 10.0, 10.0, 20.0, -HALF_PI],  # the same box with w/h swapped and turned
    ])
    area = nms_intersection_areas(boxes, other)
    np.testing.assert_array_equal(area[:5], 0.0)
    assert area[5] == pytest.approx(200.0, rel=1e-12)
    # rotated neighbours sharing a long edge exactly touch: zero, not round-off
    a = np.array([[100.0, 50.0, 30.0, 12.0, theta]])
    b = a + [[-12.0 * math.sin(theta), 12.0 * math.cos(theta), 0, 0, 0]]
    assert nms_intersection_areas(a, b)[0] == 0.0
    # a million pixels from the origin: the same areas as near it
    near = np.array([[3.0, 4.0, 30.0, 12.0, 0.7]]), np.array([[9.0, 1.0, 25.0, 14.0, -0.2]])
    offset = np.array([[1e6, -2e6, 0, 0, 0]])
    far = nms_intersection_areas(near[0] + offset, near[1] + offset)
    assert far[0] == pytest.approx(nms_intersection_areas(*near)[0], rel=1e-9)
    assert far[0] == pytest.approx(_shapely_pair_areas(*near)[0], rel=1e-9)


def test_overlapping_pairs_equals_brute_force():
    rng = np.random.default_rng(1)
    for trial in range(60):
        n = int(rng.integers(1, 500))
        centres = rng.uniform(0, rng.choice([50, 400, 3000]), (n, 2))
        extents = rng.lognormal(2.5, rng.choice([0.1, 1.0, 2.0]), (n, 2))
        if trial % 4 == 0:  # grid-aligned: many exactly touching bounds
            centres, extents = np.round(centres / 10) * 10, np.round(extents / 10) * 10 + 10
        aabb = np.column_stack([centres - extents / 2, centres + extents / 2])
        # odd trials: pairs within groups only (class labels), including groups with big boxes
        groups = rng.integers(0, int(rng.integers(1, 5)), n) if trial % 2 else None
        i, j = aabb_overlap_pairs(aabb, None, groups)
        got = set(zip(i.tolist(), j.tolist()))
        assert len(got) == len(i) and all(a < b for a, b in got)
        bi, bj = np.triu_indices(n, k=1)
        hit = ((aabb[bi, 0] < aabb[bj, 2]) & (aabb[bj, 0] < aabb[bi, 2])
               & (aabb[bi, 1] < aabb[bj, 3]) & (aabb[bj, 1] < aabb[bi, 3]))
        if groups is not None:
            hit &= groups[bi] == groups[bj]
        assert got == set(zip(bi[hit].tolist(), bj[hit].tolist()))


# ---------------------------------------------------------------------------------------------------
# NMS against the reference
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("thr", [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0])
def test_random_clustered_sets_match_reference(thr):
    rng = np.random.default_rng(int(thr * 100))
    for n in (1, 2, 30, 250):
        boxes, scores = clustered_scene(rng, n)
        assert_same_keep(boxes, scores, thr)


def test_float32_input_and_large_scene_match_reference():
    rng = np.random.default_rng(7)
    boxes, scores = clustered_scene(rng, 1500, extent=1200.0, jitter=3.0)
    boxes, scores = boxes.astype(np.float32), scores.astype(np.float32)
    keep = assert_same_keep(boxes, scores, 0.5)
    assert 0 < len(keep) < len(boxes)


@pytest.mark.parametrize("first_chunk", [1, 3, 16, 100000])
def test_blocks_of_ranks_give_the_same_keep_set_as_one_pass(first_chunk):
    # the CPU path takes ranks in doubling blocks (kept boxes of earlier blocks suppress later ones first);
    # any block size must give the greedy result, also with ties, classes and zero-area boxes
    rng = np.random.default_rng(first_chunk)
    boxes, scores = clustered_scene(rng, 400, jitter=2.0)
    scores = np.round(scores * 5) / 5
    boxes[::37, 3] = 0.0
    labels = rng.integers(0, 3, 400)
    for thr, lab in ((0.3, None), (0.5, labels), (0.0, labels)):
        expected = reference_nms(boxes, scores, thr, lab)
        got = nms_rotated_numpy(boxes, scores, thr, labels=lab, first_chunk=first_chunk)
        np.testing.assert_array_equal(got, expected)


def test_equal_scores_keep_input_order_for_ties():
    rng = np.random.default_rng(2)
    boxes, _ = clustered_scene(rng, 200)
    scores = np.round(rng.uniform(0, 1, 200) * 3) / 3  # four distinct values
    keep = assert_same_keep(boxes, scores, 0.4)
    ranked = np.lexsort((keep, -scores[keep]))
    np.testing.assert_array_equal(ranked, np.arange(len(keep)))
    # all equal: the first of each duplicate group wins, groups in input order
    dup = np.repeat(boxes[:20], 3, axis=0)
    keep = assert_same_keep(dup, np.ones(len(dup)), 0.5)
    leaders = reference_nms(boxes[:20], np.ones(20), 0.5)
    np.testing.assert_array_equal(keep, 3 * leaders)


def test_exact_duplicates_threshold_semantics():
    box = np.array([[50.0, 60.0, 30.0, 12.0, 0.4]])
    boxes = np.repeat(box, 5, axis=0)
    scores = np.array([0.2, 0.9, 0.9, 0.5, 0.1])
    assert assert_same_keep(boxes, scores, 0.5).tolist() == [1]
    assert assert_same_keep(boxes, scores, 0.999999).tolist() == [1]
    # IoU of duplicates is exactly 1 and suppression needs IoU > threshold: 1.0 keeps every duplicate
    assert assert_same_keep(boxes, scores, 1.0).tolist() == [1, 2, 3, 0, 4]


def test_iou_equal_to_threshold_does_not_suppress():
    pair = np.array([[0.0, 0.0, 10.0, 10.0, 0.0], [5.0, 0.0, 10.0, 10.0, HALF_PI]])  # IoU 50 / 150
    scores = np.array([0.9, 0.8])
    assert assert_same_keep(pair, scores, 50.0 / 150.0).tolist() == [0, 1]
    assert assert_same_keep(pair, scores, 0.333).tolist() == [0]


def test_threshold_tie_is_decided_by_the_iou_box_iou_rotated_reports():
    # NMS and box_iou_rotated (hence the evaluation) share one rotated intersection and one IoU formula: at a
    # threshold equal to the reported IoU the pair survives, one ulp below it the second box goes
    rng = np.random.default_rng(15)
    first, _ = clustered_scene(rng, 200)
    second = first + np.column_stack([rng.normal(0, 3, (200, 2)), rng.normal(0, 2, (200, 2)), rng.normal(0, 0.2, 200)])
    second[:, 2:4] = np.abs(second[:, 2:4])
    iou = box_iou_rotated(first, second, aligned=True)
    tested = 0
    for a, b, value in zip(first, second, iou):
        if not 0.05 < value < 0.95:
            continue
        pair = np.stack([a, b])
        keep = nms_rotated_numpy(pair, np.array([0.9, 0.8]), float(value))
        assert keep.tolist() == [0, 1], value
        keep = nms_rotated_numpy(pair, np.array([0.9, 0.8]), float(np.nextafter(value, 0.0)))
        assert keep.tolist() == [0], value
        tested += 1
    assert tested > 100


def test_threshold_one_keeps_everything():
    rng = np.random.default_rng(3)
    boxes, scores = clustered_scene(rng, 300, jitter=1.0)
    keep = assert_same_keep(boxes, scores, 1.0)
    np.testing.assert_array_equal(np.sort(keep), np.arange(300))


def test_threshold_zero_suppresses_any_overlap_but_not_touching():
    # a 6 x 6 grid of 10 x 10 cells: neighbours share edges and corners but no area
    g = np.arange(6) * 10.0
    cx, cy = np.meshgrid(g, g)
    grid = np.column_stack([cx.ravel(), cy.ravel(), np.full(36, 10.0), np.full(36, 10.0), np.zeros(36)])
    grid[::2, 4] = HALF_PI  # squares turned by 90 degrees are the same squares
    grid[1::4, 4] = -HALF_PI
    scores = np.random.default_rng(4).uniform(size=36)
    assert len(assert_same_keep(grid, scores, 0.0)) == 36
    # a rotated row of cars sharing long edges: all touching, all kept
    theta = 0.6
    k = np.arange(8)
    row = np.column_stack([100 - 12 * k * math.sin(theta), 50 + 12 * k * math.cos(theta), np.full(8, 30.0),
                           np.full(8, 12.0), np.full(8, theta)])
    assert len(assert_same_keep(row, scores[:8], 0.0)) == 8
    # a sliver of overlap suppresses at 0.0 only
    pair = np.array([[0.0, 0.0, 10.0, 10.0, 0.0], [9.999, 0.0, 10.0, 10.0, 0.0]])
    assert assert_same_keep(pair, np.array([1.0, 0.5]), 0.0).tolist() == [0]
    assert assert_same_keep(pair, np.array([1.0, 0.5]), 1e-3).tolist() == [0, 1]
    rng = np.random.default_rng(5)
    boxes, scores = clustered_scene(rng, 200, extent=400.0)
    assert_same_keep(boxes, scores, 0.0)


def test_plus_minus_90_degrees_and_square_boxes():
    box = np.array([30.0, 40.0, 25.0, 10.0])
    pm = np.array([[*box, HALF_PI], [*box, -HALF_PI], [*box[:2], 10.0, 25.0, 0.0], [*box, HALF_PI + 1e-12]])
    assert assert_same_keep(pm, np.array([0.5, 0.9, 0.7, 0.8]), 0.9).tolist() == [1]
    squares = np.array([[0.0, 0.0, 20.0, 20.0, a] for a in (0.3, 0.3 + HALF_PI, 0.3 - HALF_PI, 0.3 + math.pi)])
    assert assert_same_keep(squares, np.array([0.1, 0.2, 0.3, 0.4]), 0.99).tolist() == [3]
    rng = np.random.default_rng(6)
    for thr in (0.0, 0.5, 0.8):
        boxes, scores = clustered_scene(rng, 200, square=True)
        assert_same_keep(boxes, scores, thr)
        boxes, scores = clustered_scene(rng, 200, right_angles=True)
        assert_same_keep(boxes, scores, thr)


def test_zero_area_boxes_are_kept_and_never_suppress():
    rng = np.random.default_rng(8)
    boxes, scores = clustered_scene(rng, 120)
    boxes[::5, 3] = 0.0  # zero height
    boxes[1::7, 2:4] = 0.0  # points
    scores[::5] = 2.0  # the highest scores: they must not suppress anything
    keep = assert_same_keep(boxes, scores, 0.3)
    zero = np.flatnonzero(boxes[:, 2] * boxes[:, 3] == 0)
    assert set(zero.tolist()) <= set(keep.tolist())
    dup_zero = np.repeat([[5.0, 5.0, 10.0, 0.0, 0.2]], 4, axis=0)
    assert len(assert_same_keep(dup_zero, np.ones(4), 0.0)) == 4


def test_far_from_origin_matches_the_same_scene_near_it():
    rng = np.random.default_rng(9)
    boxes, scores = clustered_scene(rng, 300)
    offset = np.array([3.0e6, 1.5e6, 0, 0, 0])
    far = boxes + offset
    near_exact = far - offset  # exact in float64 (Sterbenz): the reference sees the very same geometry
    expected = reference_nms(near_exact, scores, 0.5)
    got = nms_rotated(torch.as_tensor(far), torch.as_tensor(scores), 0.5)
    np.testing.assert_array_equal(got.numpy(), expected)


def test_dense_car_park_matches_reference():
    spec = importlib.util.spec_from_file_location("bench_nms", PROJECT_ROOT / "bench" / "nms.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    boxes, scores = bench.car_park_candidates(1200, seed=3)
    assert_same_keep(boxes, scores, 0.5)


# ---------------------------------------------------------------------------------------------------
# Classes
# ---------------------------------------------------------------------------------------------------

def test_batched_never_suppresses_across_classes():
    box = np.array([[10.0, 10.0, 30.0, 12.0, 0.2]])
    boxes = np.repeat(box, 4, axis=0)
    keep = batched_nms_rotated(torch.as_tensor(boxes), torch.tensor([0.9, 0.8, 0.7, 0.6]),
                               torch.tensor([0, 1, 2, 1]), 0.5)
    assert keep.tolist() == [0, 1, 2]
    rng = np.random.default_rng(10)
    boxes, scores = clustered_scene(rng, 300)
    labels = rng.integers(0, 3, 300)
    keep = assert_same_keep(boxes, scores, 0.4, labels)
    for c in range(3):  # per class, exactly plain NMS on that class
        idx = np.flatnonzero(labels == c)
        expected = idx[nms_rotated(torch.as_tensor(boxes[idx]), torch.as_tensor(scores[idx]), 0.4).numpy()]
        np.testing.assert_array_equal(keep[labels[keep] == c], expected)
    same = batched_nms_rotated(torch.as_tensor(boxes), torch.as_tensor(scores), torch.zeros(300, dtype=torch.long),
                               0.4)
    np.testing.assert_array_equal(same.numpy(), nms_rotated(torch.as_tensor(boxes), torch.as_tensor(scores),
                                                            0.4).numpy())


def test_batched_huge_coordinates_and_labels_do_not_interact():
    # the coordinate-offset trick (boxes + label * big) would lose precision here; the label test cannot
    boxes = np.array([[4.0e6, 4.0e6, 30.0, 12.0, 0.2], [4.0e6 + 0.5, 4.0e6, 30.0, 12.0, 0.2],
                      [4.0e6 + 0.5, 4.0e6, 30.0, 12.0, 0.2]])
    keep = batched_nms_rotated(torch.as_tensor(boxes), torch.tensor([0.9, 0.8, 0.7]),
                               torch.tensor([7, 7, 1000000]), 0.5)
    assert keep.tolist() == [0, 2]


# ---------------------------------------------------------------------------------------------------
# Output contract and errors
# ---------------------------------------------------------------------------------------------------

def test_output_contract_max_output_and_empty_input():
    rng = np.random.default_rng(11)
    boxes, scores = clustered_scene(rng, 100)
    full = nms_rotated(torch.as_tensor(boxes, dtype=torch.float32), torch.as_tensor(scores), 0.5)
    assert full.dtype == torch.int64 and full.device.type == "cpu"
    assert torch.all(torch.as_tensor(scores)[full][:-1] >= torch.as_tensor(scores)[full][1:])
    assert nms_rotated(torch.as_tensor(boxes), torch.as_tensor(scores), 0.5, max_output=3).tolist() == full[:3].tolist()
    assert nms_rotated(torch.as_tensor(boxes), torch.as_tensor(scores), 0.5, max_output=0).numel() == 0
    empty = nms_rotated(torch.zeros(0, BOX_DIM), torch.zeros(0), 0.5)
    assert empty.dtype == torch.int64 and empty.shape == (0,)
    assert batched_nms_rotated(torch.zeros(0, BOX_DIM), torch.zeros(0), torch.zeros(0, dtype=torch.long),
                               0.5).shape == (0,)
    # numpy input is accepted and gives a tensor
    assert nms_rotated(boxes, scores, 0.5).tolist() == full.tolist()


def test_lazy_top_level_exports():
    assert obbdet.nms_rotated is nms_rotated
    assert obbdet.batched_nms_rotated is batched_nms_rotated


def test_nms_modules_form_no_import_cycle():
    # the dispatcher imports the CPU path (and the Triton path lazily); the Triton path imports only the CPU
    # path; the CPU path is numpy only
    code = ("import sys; import obbdet.nms_cpu; assert 'torch' not in sys.modules, 'torch'; "
            "import obbdet.nms_triton; assert 'obbdet.nms' not in sys.modules, 'obbdet.nms'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("boxes, scores, thr, match", [
    (torch.zeros(3, 4), torch.zeros(3), 0.5, r"boxes must have shape \[N, 5\]"),
    (torch.zeros(3, 5, 1), torch.zeros(3), 0.5, r"boxes must have shape"),
    (torch.zeros(3, 5), torch.zeros(4), 0.5, r"scores must have shape \[3\]"),
    (torch.zeros(3, 5), torch.zeros(3, 1), 0.5, r"scores must have shape"),
    (torch.zeros(3, 5), torch.zeros(3), -0.1, r"iou_threshold must be in \[0, 1\]"),
    (torch.zeros(3, 5), torch.zeros(3), 1.5, r"iou_threshold must be in \[0, 1\]"),
    (torch.zeros(3, 5), torch.zeros(3), float("nan"), r"iou_threshold must be in \[0, 1\]"),
    (torch.zeros(3, 5), torch.zeros(3), "high", r"iou_threshold must be a number"),
])
def test_shape_and_threshold_errors(boxes, scores, thr, match):
    with pytest.raises(ValueError, match=match):
        nms_rotated(boxes, scores, thr)


def test_nan_boxes_are_reported_with_count_and_indices():
    boxes = torch.tensor([[0.0, 0, 10, 5, 0]] * 8)
    boxes[2, 0] = float("nan")
    boxes[6, 4] = float("nan")
    with pytest.raises(ValueError, match=r"nms_rotated: 2 box\(es\) with NaN or infinite coordinates "
                                         r"\(indices \[2, 6\]\)"):
        nms_rotated(boxes, torch.ones(8), 0.5)
    boxes = torch.tensor([[0.0, 0, 10, 5, 0]] * 8)
    boxes[:, 1] = float("inf")
    with pytest.raises(ValueError, match=r"8 box\(es\) with NaN or infinite coordinates \(indices \[0, 1, 2, 3, 4, "
                                         r"\.\.\.\]\)"):
        nms_rotated(boxes, torch.ones(8), 0.5)
    with pytest.raises(ValueError, match=r"1 NaN or infinite score\(s\) \(indices \[3\]\)"):
        nms_rotated(torch.tensor([[0.0, 0, 10, 5, 0]] * 4), torch.tensor([1.0, 0.5, 0.2, float("nan")]), 0.5)


def test_negative_sizes_labels_and_max_output_errors():
    boxes = torch.tensor([[0.0, 0, 10, 5, 0], [0.0, 0, 10, -5, 0], [0.0, 0, -1, 5, 0]])
    with pytest.raises(ValueError, match=r"2 box\(es\) with a negative width or height \(indices \[1, 2\]\)"):
        nms_rotated(boxes, torch.ones(3), 0.5)
    good = torch.tensor([[0.0, 0, 10, 5, 0]] * 3)
    with pytest.raises(ValueError, match="labels must be integers"):
        batched_nms_rotated(good, torch.ones(3), torch.ones(3), 0.5)
    with pytest.raises(ValueError, match=r"labels must have shape \[3\]"):
        batched_nms_rotated(good, torch.ones(3), torch.ones(2, dtype=torch.long), 0.5)
    with pytest.raises(ValueError, match="labels are required"):
        batched_nms_rotated(good, torch.ones(3), None, 0.5)
    with pytest.raises(ValueError, match="max_output must be None or a non-negative int"):
        nms_rotated(good, torch.ones(3), 0.5, max_output=-1)
    with pytest.raises(ValueError, match="max_output must be None or a non-negative int"):
        nms_rotated(good, torch.ones(3), 0.5, max_output=2.5)


# ---------------------------------------------------------------------------------------------------
# Triton kernels: under the interpreter (subprocess) and on CUDA
# ---------------------------------------------------------------------------------------------------

def kernel_cases():
    """Small cases for the Triton path: (name, boxes [N, 5], scores [N], labels [N] or None, threshold, dtype)."""
    rng = np.random.default_rng(12)
    cases = []
    boxes, scores = clustered_scene(rng, 60, extent=80.0)
    cases.append(("random-f64", boxes, scores, None, 0.3, "float64"))
    boxes, scores = clustered_scene(rng, 60, extent=80.0)
    cases.append(("random-f32", boxes, scores, None, 0.5, "float32"))
    boxes, scores = clustered_scene(rng, 48, extent=60.0)
    cases.append(("labels", boxes, scores, rng.integers(0, 2, 48), 0.2, "float64"))
    dup = np.repeat(clustered_scene(rng, 8, extent=30.0)[0], 3, axis=0)
    dup[::4, 4] += math.pi  # same rectangles, other corner order
    dup[1::6, 3] = 0.0  # zero area
    ties = np.round(rng.uniform(size=len(dup)) * 2) / 2
    cases.append(("duplicates-thr1", dup, ties, None, 1.0, "float64"))
    cases.append(("duplicates-thr0.5", dup, ties, None, 0.5, "float64"))
    g = np.arange(5) * 10.0
    cx, cy = np.meshgrid(g, g)
    grid = np.column_stack([cx.ravel(), cy.ravel(), np.full(25, 10.0), np.full(25, 10.0), np.zeros(25)])
    grid[::2, 4] = HALF_PI
    grid = np.concatenate([grid, grid[:5] + [[3.0, 0, 0, 0, 0]]])
    cases.append(("touching-thr0", grid, rng.uniform(size=len(grid)), None, 0.0, "float64"))
    # float32 cannot hold pi/2: its +-pi/2 boxes are parallel to the 0 ones at float32 resolution on every path
    cases.append(("touching-thr0-f32", grid[:25] + [2.0e4, 1.0e4, 0, 0, 0], rng.uniform(size=25), None, 0.0,
                  "float32"))
    boxes, scores = clustered_scene(rng, 40, extent=50.0, square=True)
    cases.append(("squares-far-f32", boxes + [1.0e5, 2.0e5, 0, 0, 0], scores, None, 0.4, "float32"))
    boxes, scores = clustered_scene(rng, 70, extent=150.0)  # more than 64 ranks: two mask words
    cases.append(("two-words", boxes, scores, None, 0.1, "float64"))
    # three mask words read one at a time: the reduction's loop over column chunks runs more than once
    boxes, scores = clustered_scene(rng, 150, extent=900.0, jitter=2.0)
    cases.append(("three-words-narrow-columns", boxes, scores, None, 0.3, "float64"))
    return cases


NARROW_COLUMN_CASES = {"three-words-narrow-columns": 1}  # case -> REDUCE_COLUMN_WORDS for that case


def run_kernel_cases(device: str) -> list[dict]:
    """Run :func:`kernel_cases` through the Triton path on ``device``; report each against the CPU path."""
    import obbdet.nms_triton as nms_triton

    report = []
    default_column_words = nms_triton.REDUCE_COLUMN_WORDS
    for name, boxes, scores, labels, thr, dtype in kernel_cases():
        torch_dtype = getattr(torch, dtype)
        boxes_t = torch.as_tensor(boxes, dtype=torch_dtype, device=device)
        scores_t = torch.as_tensor(scores, dtype=torch_dtype, device=device)
        labels_t = None if labels is None else torch.as_tensor(labels, device=device)
        nms_triton.REDUCE_COLUMN_WORDS = NARROW_COLUMN_CASES.get(name, default_column_words)
        try:
            got = nms_triton.nms_rotated_triton(boxes_t, scores_t, thr, labels=labels_t).cpu().numpy()
        finally:
            nms_triton.REDUCE_COLUMN_WORDS = default_column_words
        cpu_args = (boxes_t.cpu(), scores_t.cpu(), thr) if labels is None else (
            boxes_t.cpu(), scores_t.cpu(), labels_t.cpu(), thr)
        expected = (nms_rotated if labels is None else batched_nms_rotated)(*cpu_args).numpy()
        report.append({"case": name, "same": bool(np.array_equal(got, expected)), "got": got.tolist(),
                       "expected": expected.tolist()})
    return report


def test_triton_kernels_under_interpreter_match_cpu_path():
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(PROJECT_ROOT))
    code = "import json, tests.test_nms as t; print(json.dumps(t.run_kernel_cases('cpu')))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(report) == len(kernel_cases())
    mismatched = [r for r in report if not r["same"]]
    assert not mismatched, mismatched


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_triton_kernels_on_cuda_match_cpu_path():
    mismatched = [r for r in run_kernel_cases("cuda") if not r["same"]]
    assert not mismatched, mismatched
    rng = np.random.default_rng(13)
    for thr in (0.0, 0.5, 0.9):
        boxes, scores = clustered_scene(rng, 3000, extent=1500.0)
        labels = rng.integers(0, 4, 3000)
        for dtype in (torch.float32, torch.float64):
            b, s = torch.as_tensor(boxes, dtype=dtype), torch.as_tensor(scores, dtype=dtype)
            cpu = batched_nms_rotated(b, s, torch.as_tensor(labels), thr).numpy()
            gpu = batched_nms_rotated(b.cuda(), s.cuda(), torch.as_tensor(labels).cuda(), thr)
            assert gpu.device.type == "cuda"
            if dtype == torch.float64:
                np.testing.assert_array_equal(gpu.cpu().numpy(), cpu)
            else:  # float32 arithmetic on the device: an IoU within ~1e-6 of the threshold may go either way
                assert len(set(gpu.cpu().tolist()) ^ set(cpu.tolist())) <= 2


def test_triton_spatial_tiles_cover_every_overlapping_pair():
    from obbdet.nms_triton import BLOCK, _active_tiles, _spatial_order

    rng = np.random.default_rng(14)
    boxes = torch.as_tensor(clustered_scene(rng, 500, extent=600.0)[0])
    boxes = boxes[_spatial_order(boxes)]
    tiles = {tuple(t) for t in _active_tiles(boxes, BLOCK).tolist()}
    i, j = aabb_overlap_pairs(xywha_to_aabb(boxes.numpy()))
    for a, b in zip((i // BLOCK).tolist(), (j // BLOCK).tolist()):
        assert (min(a, b), max(a, b)) in tiles
    assert len(tiles) < (len(boxes) // BLOCK + 1) ** 2 / 4  # spatial blocking skips most tiles
