"""Exact rotated IoU (obbdet/iou.py) against shapely polygon overlay, on random and adversarial pairs."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import shapely

from obbdet import boxes as B
from obbdet import iou as I

PI = math.pi
TOL = 1e-6  # the required agreement with shapely; float64 results are ~1e-12 off in practice


# ------------------------------------------------------------------------------------------------
# Reference and data
# ------------------------------------------------------------------------------------------------

def shapely_polygons(boxes):
    return shapely.polygons(B.xywha_to_poly(np.asarray(boxes, dtype=np.float64)))


def shapely_iou(boxes1, boxes2, *, aligned=True):
    """IoU by shapely's polygon overlay (vectorized over arrays of polygons); 0 where the union is 0."""
    p1, p2 = shapely_polygons(boxes1), shapely_polygons(boxes2)
    if not aligned:
        p1, p2 = p1[:, None], p2[None, :]
    inter = shapely.area(shapely.intersection(p1, p2))
    union = shapely.area(p1) + shapely.area(p2) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def random_pairs(rng, n):
    """``n`` aligned pairs mixing sizes, aspect ratios, angles (any range), overlap amounts and placements."""
    w1 = rng.uniform(0.5, 200.0, n)
    h1 = w1 * rng.uniform(0.05, 1.0, n)
    w2 = w1 * np.exp(rng.normal(0.0, 0.5, n))
    h2 = w2 * rng.uniform(0.05, 1.0, n)
    a1 = rng.uniform(-PI, PI, n)
    a2 = rng.uniform(-PI, PI, n)
    kind = rng.integers(0, 4, n)
    a2 = np.where(kind == 1, a1 + rng.normal(0.0, 1e-6, n), a2)  # near-parallel edges
    a2 = np.where(kind == 2, a1 + PI / 2 + rng.choice([0.0, 1e-12, -1e-9], n), a2)  # near-perpendicular
    reach = (np.hypot(w1, h1) + np.hypot(w2, h2)) / 2
    offset = rng.uniform(-1.0, 1.0, (n, 2)) * reach[:, None] * rng.choice([0.05, 0.3, 0.8, 1.1], n)[:, None]
    centre = rng.uniform(-100.0, 100.0, (n, 2)) + np.where(rng.random(n) < 0.4, 5000.0, 0.0)[:, None]
    b1 = np.column_stack([centre, w1, h1, a1])
    b2 = np.column_stack([centre + offset, w2, h2, a2])
    return b1, b2


def scene(rng, n, extent=1500.0):
    """Vehicles in an aerial image: clusters of near-parallel, closely packed boxes."""
    clusters = rng.uniform(0.0, extent, (max(1, n // 25), 2))
    owner = rng.integers(0, len(clusters), n)
    direction = rng.uniform(-PI, PI, len(clusters))[owner]
    centres = clusters[owner] + rng.normal(0.0, 40.0, (n, 2))
    length = rng.uniform(25.0, 60.0, n)
    return np.column_stack([centres, length, length * rng.uniform(0.35, 0.6, n),
                            direction + rng.normal(0.0, 0.05, n)])


def jitter(rng, boxes, scale=0.1):
    out = boxes.copy()
    out[:, :2] += rng.normal(0.0, scale, (len(boxes), 2)) * boxes[:, 3:4] * 3
    out[:, 2:4] *= np.exp(rng.normal(0.0, scale, (len(boxes), 2)))
    out[:, 4] += rng.normal(0.0, scale, len(boxes))
    return out


# ------------------------------------------------------------------------------------------------
# Agreement with shapely
# ------------------------------------------------------------------------------------------------

def test_100k_random_pairs_match_shapely():
    rng = np.random.default_rng(2024)
    b1, b2 = random_pairs(rng, 100_000)
    expected = shapely_iou(b1, b2)
    assert 0.3 < np.mean(expected > 0) < 0.95  # the sample is not trivially all-overlap or all-disjoint
    got = I.box_iou_rotated(b1, b2, aligned=True)
    assert got.dtype == np.float64 and got.shape == (100_000,)
    np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)
    inter = I.intersection_area_rotated(b1, b2)
    expected_inter = shapely.area(shapely.intersection(shapely_polygons(b1), shapely_polygons(b2)))
    np.testing.assert_allclose(inter, expected_inter, atol=1e-7, rtol=1e-9)


def test_dense_matrix_matches_shapely(monkeypatch):
    rng = np.random.default_rng(7)
    gt = scene(rng, 180)
    det = np.concatenate([jitter(rng, gt[:120]), scene(rng, 90)])
    expected = shapely_iou(det, gt, aligned=False)
    got = I.box_iou_rotated(det, gt)
    assert got.shape == (210, 180)
    assert (expected > 0).sum() > 400
    np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)
    np.testing.assert_array_equal(got == 0, expected == 0)  # AABB prefilter zeros only truly disjoint pairs
    # small prefilter blocks and kernel chunks give the same matrix
    monkeypatch.setattr(I, "PREFILTER_BLOCK_ELEMENTS", 1000)
    monkeypatch.setattr(I, "NUMPY_CHUNK_PAIRS", 100)
    np.testing.assert_array_equal(I.box_iou_rotated(det, gt), got)


def _adversarial_cases():
    """(name, box1, box2, expected IoU or None) with boxes relative to the origin."""
    base = np.array([0.0, 0.0, 40.0, 16.0, 0.4])
    cx, cy, w, h, a = base
    u = np.array([math.cos(a), math.sin(a)])
    v = np.array([-math.sin(a), math.cos(a)])

    def moved(box, du=0.0, dv=0.0, **changes):
        out = box.copy()
        out[:2] += du * u + dv * v
        for key, value in changes.items():
            out["xywha".index(key) if key != "a" else 4] = value
        return out

    cases = [
        ("identical", base, base, 1.0),
        ("identical axis-aligned", moved(base, a=0.0), moved(base, a=0.0), 1.0),
        ("identical vertical", moved(base, a=-PI / 2), moved(base, a=PI / 2), 1.0),
        ("w/h swapped + 90 deg", base, np.array([cx, cy, h, w, a + PI / 2]), 1.0),
        ("angle + 180 deg", base, moved(base, a=a + PI), 1.0),
        ("angle - 360 deg", base, moved(base, a=a - 2 * PI), 1.0),
        ("contained", base, np.array([cx + 3, cy - 1, 10.0, 4.0, 1.1]), 40.0 / 640.0),
        ("contained, sharing an edge", base, moved(base, du=10.0, w=20.0), 0.5),
        ("contained, sharing two edges", base, moved(base, du=10.0, dv=4.0, w=20.0, h=8.0), 0.25),
        ("same box, half length", base, moved(base, du=-10.0, w=20.0), 0.5),
        ("shared edge, outside", base, moved(base, du=40.0), 0.0),
        ("shared long edge, outside", base, moved(base, dv=16.0), 0.0),
        ("shared edge, half overlap", base, moved(base, du=20.0), 1.0 / 3.0),
        ("touching corners", base, moved(base, du=40.0, dv=16.0), 0.0),
        ("touching corner of a rotated box", moved(base, a=0.0),
         np.array([20.0 + 5 * math.sqrt(2), 8.0 + 5 * math.sqrt(2), 10.0, 10.0, PI / 4]), 0.0),
        ("corner touching an edge", moved(base, a=0.0), np.array([0.0, 8.0 + 5 * math.sqrt(2), 10.0, 10.0, PI / 4]),
         0.0),
        ("near-parallel 1e-9", base, moved(base, a=a + 1e-9), None),
        ("near-parallel 1e-13", base, moved(base, a=a + 1e-13), None),
        ("near-parallel, offset 1e-9", base, moved(base, dv=1e-9, a=a + 1e-10), None),
        ("near-parallel edges crossing", base, moved(base, du=15.0, dv=15.999, a=a + 1e-7), None),
        ("near-parallel, shared edge", base, moved(base, dv=16.0, a=a + 1e-8), None),
        ("near-perpendicular", base, moved(base, du=5.0, a=a + PI / 2 + 1e-11), None),
        ("cross", base, moved(base, a=a + PI / 2), 256.0 / (2 * 640.0 - 256.0)),
        ("octagon (45 deg, same centre)", np.array([0, 0, 20.0, 20.0, 0.0]), np.array([0, 0, 20.0, 20.0, PI / 4]),
         None),
        ("zero width", base, moved(base, w=0.0), 0.0),
        ("zero height", base, moved(base, h=0.0), 0.0),
        ("zero size", base, moved(base, w=0.0, h=0.0), 0.0),
        ("both zero height", moved(base, h=0.0), moved(base, h=0.0), 0.0),
        ("both zero size", moved(base, w=0.0, h=0.0), moved(base, w=0.0, h=0.0), 0.0),
        ("tiny inside big", np.array([0, 0, 1e4, 1e4, 0.1]), np.array([3, 4, 1e-3, 1e-3, 0.2]), 1e-14),
        ("disjoint far", base, moved(base, du=1e4), 0.0),
        ("disjoint, AABBs overlap", np.array([0, 0, 40.0, 16.0, PI / 4]),
         np.array([-17 * math.sin(PI / 4), 17 * math.cos(PI / 4), 40.0, 16.0, PI / 4]), 0.0),
        ("shared long edge, rotated", np.array([0, 0, 40.0, 16.0, PI / 4]),
         np.array([-16 * math.sin(PI / 4), 16 * math.cos(PI / 4), 40.0, 16.0, PI / 4 - PI]), 0.0),
    ]
    return [(name, np.asarray(b1, float), np.asarray(b2, float), expected) for name, b1, b2, expected in cases]


ADVERSARIAL = _adversarial_cases()


@pytest.mark.parametrize("offset", [0.0, 5000.0, -5000.0], ids=["origin", "x=5000", "x=-5000"])
def test_adversarial_pairs(offset):
    shift = np.array([offset, offset * 0.6, 0.0, 0.0, 0.0])
    b1 = np.stack([c[1] for c in ADVERSARIAL]) + shift
    b2 = np.stack([c[2] for c in ADVERSARIAL]) + shift
    got = I.box_iou_rotated(b1, b2, aligned=True)
    reference = shapely_iou(b1, b2)
    dense = I.box_iou_rotated(b1, b2)
    swapped = I.box_iou_rotated(b2, b1, aligned=True)
    for k, (name, _, _, expected) in enumerate(ADVERSARIAL):
        assert abs(got[k] - reference[k]) <= TOL, (name, got[k], reference[k])
        if expected is not None:
            assert got[k] == pytest.approx(expected, abs=1e-9), name
        assert abs(dense[k, k] - got[k]) <= 1e-12, name  # the dense AABB prefilter may zero 1e-29 slivers
        assert abs(swapped[k] - got[k]) <= 1e-12, name
    assert np.all(np.isfinite(got)) and np.all((got >= 0) & (got <= 1))


def test_equivalent_representations_give_identical_iou():
    rng = np.random.default_rng(5)
    gt = scene(rng, 150)
    det = jitter(rng, gt)
    cx, cy, w, h, a = det.T
    twins = [np.column_stack([cx, cy, h, w, a + PI / 2]), np.column_stack([cx, cy, w, h, a - PI]),
             B.normalize_xywha(det), B.xywha_to_oc(det), B.xywha_to_le135(det)]
    reference = I.box_iou_rotated(det, gt)
    for twin in twins:
        np.testing.assert_allclose(I.box_iou_rotated(twin, gt), reference, atol=1e-12, rtol=0)


def test_near_square_boxes_are_representation_independent():
    base = np.array([[5000.0, 300.0, 30.0, 30.0 * (1 + 1e-9), 0.2]])
    other = np.array([[5003.0, 304.0, 28.0, 25.0, 0.9]])
    variants = np.concatenate([base, base[:, [0, 1, 3, 2, 4]] + [0, 0, 0, 0, PI / 2], base - [0, 0, 0, 0, PI / 2]])
    ious = I.box_iou_rotated(variants, other)[:, 0]
    np.testing.assert_allclose(ious, ious[0], atol=1e-9)
    assert abs(ious[0] - shapely_iou(base, other)[0]) <= TOL


def test_a_pairs_area_does_not_depend_on_its_batch():
    # NMS intersects pairs in batches of every size (often one pair) and must decide with the very values that
    # box_iou_rotated reports for the same pairs in one call
    b1, b2 = random_pairs(np.random.default_rng(11), 3000)
    rows1, rows2 = I.trig_rows(b1), I.trig_rows(b2)
    index = np.arange(len(b1))
    whole = I.intersection_area_pairs(rows1, rows2, index, index)
    np.testing.assert_array_equal(whole, I.intersection_area_rotated(b1, b2))
    for size in (1, 2, 3, 7, 2049):
        parts = [I.intersection_area_pairs(rows1, rows2, index[s:s + size], index[s:s + size])
                 for s in range(0, min(len(b1), 200 * size), size)]
        parts = np.concatenate(parts)
        np.testing.assert_array_equal(parts, whole[:len(parts)])
    iou = I.box_iou_rotated(b1, b2, aligned=True)
    singles = [I.box_iou_rotated(b1[k:k + 1], b2[k:k + 1], aligned=True)[0] for k in range(200)]
    np.testing.assert_array_equal(singles, iou[:200])


def test_nms_tolerance_snaps_right_angles_and_floors_round_off():
    box = np.array([[30.0, 40.0, 25.0, 10.0, 0.3]])
    turned = box[:, [0, 1, 3, 2, 4]] + [0, 0, 0, 0, PI / 2 + 1e-12]  # the same rectangle, 1e-12 rad off
    exact = I.intersection_area_rotated(box, turned)[0]
    assert exact == pytest.approx(250.0, rel=1e-9)
    assert I.intersection_area_rotated(box, turned, tol_rel=1e-9)[0] == 250.0  # snapped: the same edges
    theta = 0.6  # rotated neighbours sharing a long edge: exactly 0 at the tolerance, whatever the rounding
    row = np.array([[100.0 - 12.0 * k * math.sin(theta), 50.0 + 12.0 * k * math.cos(theta), 30.0, 12.0, theta]
                    for k in range(40)])
    np.testing.assert_array_equal(I.intersection_area_rotated(row[:-1], row[1:], tol_rel=1e-9), 0.0)
    with pytest.raises(ValueError, match="tol_rel"):
        I.intersection_area_rotated(box, box, tol_rel=-1.0)


def test_iou_properties_on_a_scene():
    rng = np.random.default_rng(9)
    boxes = scene(rng, 300)
    self_iou = I.box_iou_rotated(boxes, boxes)
    np.testing.assert_allclose(np.diag(self_iou), 1.0, atol=1e-12)
    np.testing.assert_allclose(self_iou, self_iou.T, atol=1e-12)
    assert np.all((self_iou >= 0) & (self_iou <= 1))
    # IoU is invariant under a common translation and rotation of the scene
    turn = 0.7
    rot = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    moved = boxes.copy()
    moved[:, :2] = boxes[:, :2] @ rot.T + [4321.0, -987.0]
    moved[:, 4] += turn
    np.testing.assert_allclose(I.box_iou_rotated(moved, moved), self_iou, atol=1e-9)


# ------------------------------------------------------------------------------------------------
# API behaviour
# ------------------------------------------------------------------------------------------------

def test_empty_inputs_and_shapes():
    boxes = np.array([[1.0, 2.0, 3.0, 1.0, 0.0]])
    empty = np.zeros((0, 5))
    assert I.box_iou_rotated(empty, boxes).shape == (0, 1)
    assert I.box_iou_rotated(boxes, empty).shape == (1, 0)
    assert I.box_iou_rotated(empty, empty, aligned=True).shape == (0,)
    idx1, idx2, iou = I.box_iou_rotated_sparse(empty, boxes)
    assert len(idx1) == len(idx2) == len(iou) == 0 and idx1.dtype == np.int64
    assert I.box_iou_rotated(boxes.astype(np.float32), boxes, dtype=np.float32).dtype == np.float32
    assert I.box_iou_rotated([[0, 0, 2, 2, 0]], [[1, 0, 2, 2, 0]])[0, 0] == pytest.approx(1 / 3)


def test_bad_input_is_rejected_clearly():
    boxes = np.zeros((3, 5))
    with pytest.raises(ValueError, match=r"boxes1: expected boxes of shape \[N, 5\]"):
        I.box_iou_rotated(np.zeros((3, 4)), boxes)
    with pytest.raises(ValueError, match="aligned mode needs equal lengths"):
        I.box_iou_rotated(boxes, np.zeros((2, 5)), aligned=True)
    with pytest.raises(ValueError, match="aligned mode needs equal lengths"):
        I.intersection_area_rotated(boxes, np.zeros((2, 5)))
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="both be numpy arrays or both torch tensors"):
        I.box_iou_rotated(torch.zeros(3, 5), boxes)


def test_nan_boxes_do_not_poison_other_pairs():
    rng = np.random.default_rng(1)
    boxes = scene(rng, 50)
    bad = boxes.copy()
    bad[3] = np.nan
    dense = I.box_iou_rotated(bad, boxes)
    clean = I.box_iou_rotated(boxes, boxes)
    keep = np.arange(50) != 3
    np.testing.assert_array_equal(dense[keep], clean[keep])
    idx1, idx2, iou = I.box_iou_rotated_sparse(bad, boxes)
    assert 3 not in idx1
    np.testing.assert_array_equal(iou, clean[idx1, idx2])


def test_top_level_export_and_no_torch_import_for_numpy():
    code = ("import sys, numpy as np, obbdet; b = np.array([[1., 2., 3., 1., 0.4], [1.5, 2., 3., 1., 0.]]); "
            "m = obbdet.box_iou_rotated(b, b); from obbdet.iou import box_iou_rotated_sparse; "
            "box_iou_rotated_sparse(b, b); assert m.shape == (2, 2) and abs(m[0, 0] - 1) < 1e-12; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(Path(__file__).resolve().parents[1]))


# ------------------------------------------------------------------------------------------------
# Sparse mode
# ------------------------------------------------------------------------------------------------

def test_sparse_matches_dense():
    rng = np.random.default_rng(3)
    gt = scene(rng, 700, extent=3000.0)
    det = np.concatenate([jitter(rng, gt[:500]), scene(rng, 200, extent=3000.0)])
    # a few boxes much larger than the grid cells, and degenerate ones
    det[:3, 2:4] = [[2500.0, 900.0], [1200.0, 1100.0], [800.0, 30.0]]
    det[5, 2:4] = 0.0
    det[6, 3] = 0.0
    dense = I.box_iou_rotated(det, gt)
    idx1, idx2, iou = I.box_iou_rotated_sparse(det, gt)
    assert idx1.dtype == np.int64 and idx2.dtype == np.int64 and iou.dtype == np.float64
    expected1, expected2 = np.nonzero(dense)
    np.testing.assert_array_equal(idx1, expected1)  # sorted by (idx1, idx2), like np.nonzero
    np.testing.assert_array_equal(idx2, expected2)
    np.testing.assert_array_equal(iou, dense[idx1, idx2])
    for threshold in (0.3, 0.75):
        t1, t2, t_iou = I.box_iou_rotated_sparse(det, gt, min_iou=threshold)
        e1, e2 = np.nonzero(dense >= threshold)
        np.testing.assert_array_equal(t1, e1)
        np.testing.assert_array_equal(t2, e2)
        assert np.all(t_iou >= threshold)


@pytest.mark.parametrize("cell_size", [None, 3.0, 1000.0])
def test_aabb_overlap_pairs_matches_brute_force(cell_size):
    rng = np.random.default_rng(4)
    lo = rng.uniform(0.0, 500.0, (400, 2))
    aabb1 = np.concatenate([lo, lo + rng.exponential(15.0, (400, 2))], 1)
    lo2 = rng.uniform(-20.0, 520.0, (300, 2))
    aabb2 = np.concatenate([lo2, lo2 + rng.exponential(15.0, (300, 2))], 1)
    aabb2[:5, 2:] = aabb2[:5, :2] + 300.0  # big boxes take the direct path
    aabb1[7, 2] = aabb1[7, 0]  # zero width: never overlaps
    aabb1[8] = np.nan
    idx1, idx2 = I.aabb_overlap_pairs(aabb1, aabb2, cell_size=cell_size)
    assert idx1.dtype == np.int64 and idx2.dtype == np.int64
    overlap = ((aabb1[:, None, 0] < aabb2[None, :, 2]) & (aabb2[None, :, 0] < aabb1[:, None, 2])
               & (aabb1[:, None, 1] < aabb2[None, :, 3]) & (aabb2[None, :, 1] < aabb1[:, None, 3]))
    overlap[7] = False  # a zero-width box overlaps nothing with positive area
    order = np.lexsort((idx2, idx1))  # pairs come in no particular order
    e1, e2 = np.nonzero(overlap)
    np.testing.assert_array_equal(idx1[order], e1)
    np.testing.assert_array_equal(idx2[order], e2)


def _brute_pairs(aabb1, aabb2, groups1, groups2, touching):
    """The pair set of :func:`obbdet.pairs.aabb_overlap_pairs` by an ``N x M`` matrix."""
    if touching:
        hit = ((aabb1[:, None, 0] <= aabb2[None, :, 2]) & (aabb2[None, :, 0] <= aabb1[:, None, 2])
               & (aabb1[:, None, 1] <= aabb2[None, :, 3]) & (aabb2[None, :, 1] <= aabb1[:, None, 3]))
    else:
        hit = ((aabb1[:, None, 0] < aabb2[None, :, 2]) & (aabb2[None, :, 0] < aabb1[:, None, 2])
               & (aabb1[:, None, 1] < aabb2[None, :, 3]) & (aabb2[None, :, 1] < aabb1[:, None, 3]))
        hit &= ((aabb1[:, 2] > aabb1[:, 0]) & (aabb1[:, 3] > aabb1[:, 1]))[:, None]
        hit &= ((aabb2[:, 2] > aabb2[:, 0]) & (aabb2[:, 3] > aabb2[:, 1]))[None, :]
    if groups1 is not None:
        hit &= groups1[:, None] == groups2[None, :]
    return hit


@pytest.mark.parametrize("touching", [False, True])
@pytest.mark.parametrize("n_groups", [None, 3, 400])
def test_one_pair_search_for_sparse_iou_nms_and_eval(touching, n_groups):
    # within one set (NMS: i < j, each pair once) and between two (IoU, eval), with groups (classes; images and
    # classes, many of them sparse) and touching bounds (eval); sizes from specks to a scene-wide box
    rng = np.random.default_rng(5 + (n_groups or 0))
    boxes = []
    for n in (900, 700):
        centres = np.round(rng.uniform(0.0, 1500.0, (n, 2)) / 5) * 5  # a 5 px lattice: many exact touches
        extents = np.round(rng.lognormal(3.0, 0.8, (n, 2)) / 5) * 5
        aabb = np.concatenate([centres - extents / 2, centres + extents / 2], 1)
        aabb[:3, 2:] = aabb[:3, :2] + [[1500.0, 1400.0], [600.0, 20.0], [0.0, 0.0]]  # huge, long, a point
        boxes.append(aabb)
    aabb1, aabb2 = boxes
    groups1 = groups2 = None
    if n_groups is not None:  # ids need not be small or non-negative
        groups1, groups2 = (rng.integers(0, n_groups, len(a)) * 1000 - 7 for a in (aabb1, aabb2))
    for found, expected in (
            (I.aabb_overlap_pairs(aabb1, aabb2, groups1, groups2, touching=touching),
             _brute_pairs(aabb1, aabb2, groups1, groups2, touching)),
            (I.aabb_overlap_pairs(aabb1, None, groups1, touching=touching),
             np.triu(_brute_pairs(aabb1, aabb1, groups1, groups1, touching), k=1))):
        got = np.zeros_like(expected, dtype=np.int64)
        np.add.at(got, found, 1)  # each pair once
        np.testing.assert_array_equal(got, expected)


def test_sparse_handles_a_dense_car_park():
    rows, cols = 60, 80  # 4800 cars, bumper to bumper, side by side
    gx, gy = np.meshgrid(np.arange(cols) * 22.0, np.arange(rows) * 48.0)
    gt = np.column_stack([gx.ravel() + 5000.0, gy.ravel(), np.full(gx.size, 45.0), np.full(gx.size, 20.0),
                          np.full(gx.size, PI / 2)])
    det = jitter(np.random.default_rng(0), gt, scale=0.05)
    idx1, idx2, iou = I.box_iou_rotated_sparse(det, gt, min_iou=0.5)
    assert np.all(iou >= 0.5)
    assert np.mean(idx1 == idx2) > 0.9  # mostly each detection with its own car
    # rows of the dense matrix for a sample of detections hold exactly the same pairs and values
    sample = np.arange(0, len(det), 23)
    dense = I.box_iou_rotated(det[sample], gt)
    in_sample = np.isin(idx1, sample)
    rows_got = np.searchsorted(sample, idx1[in_sample])
    e_rows, e_cols = np.nonzero(dense >= 0.5)
    np.testing.assert_array_equal(rows_got, e_rows)
    np.testing.assert_array_equal(idx2[in_sample], e_cols)
    np.testing.assert_array_equal(iou[in_sample], dense[e_rows, e_cols])
    np.testing.assert_allclose(iou[in_sample], shapely_iou(det[idx1[in_sample]], gt[idx2[in_sample]]), atol=TOL)


# ------------------------------------------------------------------------------------------------
# Torch
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_torch_matches_numpy(device):
    torch = pytest.importorskip("torch")
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    rng = np.random.default_rng(12)
    b1, b2 = random_pairs(rng, 20_000)
    expected = I.box_iou_rotated(b1, b2, aligned=True)
    t1, t2 = torch.from_numpy(b1).to(device), torch.from_numpy(b2).to(device)
    got64 = I.box_iou_rotated(t1, t2, aligned=True)
    assert got64.dtype == torch.float64 and got64.device.type == device
    np.testing.assert_allclose(got64.cpu().numpy(), expected, atol=1e-12, rtol=0)
    # float32 keeps its dtype; compare with float64 on the same (rounded) inputs
    f1, f2 = t1.float(), t2.float()
    got32 = I.box_iou_rotated(f1, f2, aligned=True)
    assert got32.dtype == torch.float32
    rounded = I.box_iou_rotated(f1.double().cpu().numpy(), f2.double().cpu().numpy(), aligned=True)
    np.testing.assert_allclose(got32.cpu().numpy(), rounded, atol=2e-5, rtol=0)
    # the float64 option for evaluation
    as64 = I.box_iou_rotated(f1, f2, aligned=True, dtype=torch.float64)
    assert as64.dtype == torch.float64
    np.testing.assert_allclose(as64.cpu().numpy(), rounded, atol=1e-12, rtol=0)
    half = I.box_iou_rotated(f1[:100].half(), f2[:100].half(), aligned=True)
    assert half.dtype == torch.float16
    # dense and sparse
    gt = scene(rng, 250)
    det = jitter(rng, gt)
    dense_np = I.box_iou_rotated(det, gt)
    tdet, tgt = torch.from_numpy(det).to(device), torch.from_numpy(gt).to(device)
    dense = I.box_iou_rotated(tdet, tgt)
    assert dense.shape == (250, 250) and dense.device.type == device
    np.testing.assert_allclose(dense.cpu().numpy(), dense_np, atol=1e-12, rtol=0)
    np.testing.assert_allclose(I.box_iou_rotated(tdet.float(), tgt.float()).cpu().numpy(), dense_np, atol=1e-4)
    idx1, idx2, iou = I.box_iou_rotated_sparse(tdet, tgt, min_iou=0.1)
    n1, n2, niou = I.box_iou_rotated_sparse(det, gt, min_iou=0.1)
    assert idx1.device.type == device and idx1.dtype == torch.int64
    np.testing.assert_array_equal(idx1.cpu().numpy(), n1)
    np.testing.assert_array_equal(idx2.cpu().numpy(), n2)
    np.testing.assert_allclose(iou.cpu().numpy(), niou, atol=1e-12, rtol=0)
    area = I.intersection_area_rotated(t1[:50], t2[:50])
    np.testing.assert_allclose(area.cpu().numpy(), I.intersection_area_rotated(b1[:50], b2[:50]), atol=1e-9)


def test_torch_does_not_track_gradients():
    torch = pytest.importorskip("torch")
    boxes = torch.tensor([[0.0, 0.0, 4.0, 2.0, 0.3], [1.0, 0.5, 4.0, 2.0, 0.1]], requires_grad=True)
    out = I.box_iou_rotated(boxes, boxes)
    assert not out.requires_grad
    assert out[0, 0].item() == pytest.approx(1.0, abs=1e-6)
