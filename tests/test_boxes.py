"""Property tests of the box geometry module (obbdet/boxes.py): conventions, round trips, equivalences."""
from __future__ import annotations

import itertools
import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obbdet import boxes as B

PI = math.pi
HALF_PI = PI / 2
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------------------------
# Strategies
# ------------------------------------------------------------------------------------------------

coords = st.floats(-6000.0, 6000.0, allow_nan=False)
sides = st.floats(0.5, 400.0, allow_nan=False)
any_angle = st.floats(-4 * PI, 4 * PI, allow_nan=False)
le90_angle = st.floats(-HALF_PI, HALF_PI, allow_nan=False, exclude_max=True)
# angles at and around the le90 boundary, where wrapping is most fragile
boundary_angle = st.sampled_from([
    -HALF_PI, HALF_PI, np.nextafter(-HALF_PI, 0.0), np.nextafter(-HALF_PI, -PI), np.nextafter(HALF_PI, 0.0),
    np.nextafter(HALF_PI, PI), -HALF_PI + 1e-12, HALF_PI - 1e-12, -3 * HALF_PI, 3 * HALF_PI, 0.0, -0.0, PI, -PI,
])


@st.composite
def boxes_any(draw, angle=any_angle):
    """A box with positive sides in any order and any angle (not normalized)."""
    return np.array([draw(coords), draw(coords), draw(sides), draw(sides), draw(angle)])


@st.composite
def boxes_le90(draw, min_aspect=1.0, max_aspect=None, angle=le90_angle):
    """A normalized box with ``w / h`` in ``[min_aspect, max_aspect]``."""
    h = draw(sides)
    aspect = draw(st.floats(min_aspect, max_aspect if max_aspect is not None else max(min_aspect, 8.0)))
    return np.array([draw(coords), draw(coords), h * aspect, h, draw(angle)])


def box_batch(strategy, max_size=16):
    return st.lists(strategy, min_size=1, max_size=max_size).map(np.stack)


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------

def tol_for(boxes) -> float:
    """Absolute tolerance for corner coordinates: float64 rounding at the boxes' magnitude."""
    return 1e-9 * (1.0 + float(np.abs(np.asarray(boxes)[..., :4]).max()))


def same_cyclic(poly_a, poly_b, atol) -> np.ndarray:
    """Per row: polygons ``[N, 4, 2]`` are the same corners in the same cyclic order (any start corner)."""
    poly_a, poly_b = np.asarray(poly_a), np.asarray(poly_b)
    matches = [np.abs(np.roll(poly_a, shift, axis=-2) - poly_b).max(axis=(-1, -2)) <= atol for shift in range(4)]
    return np.any(matches, axis=0)


def angle_diff_mod(a, b, period):
    """Smallest difference of two angles taken modulo ``period``."""
    return np.abs(np.remainder(np.asarray(a) - np.asarray(b) + period / 2, period) - period / 2)


def angle_diff_mod_pi(a, b):
    """Smallest difference of two box angles, which are equivalent modulo pi."""
    return angle_diff_mod(a, b, PI)


def assert_le90(boxes):
    boxes = np.asarray(boxes)
    assert np.all(boxes[..., 2] >= boxes[..., 3]), boxes
    assert np.all(boxes[..., 4] >= -HALF_PI) and np.all(boxes[..., 4] < HALF_PI), boxes[..., 4]


def assert_same_box(got, want, atol):
    """Same rectangle: equal centre and sides, angles equal modulo pi (for boxes that are not near-square)."""
    np.testing.assert_allclose(got[..., :4], want[..., :4], atol=atol, rtol=0)
    assert np.all(angle_diff_mod_pi(got[..., 4], want[..., 4]) <= 1e-9), (got, want)


# ------------------------------------------------------------------------------------------------
# Normalization and corners
# ------------------------------------------------------------------------------------------------

@PROPERTY
@given(box_batch(boxes_any()))
def test_normalize_gives_le90_and_keeps_the_rectangle(boxes):
    normalized = B.normalize_xywha(boxes)
    assert_le90(normalized)
    assert same_cyclic(B.xywha_to_poly(normalized), B.xywha_to_poly(boxes), tol_for(boxes)).all()


@PROPERTY
@given(box_batch(boxes_any(angle=boundary_angle)))
def test_angles_at_plus_minus_90_degrees(boxes):
    normalized = B.normalize_xywha(boxes)
    assert_le90(normalized)
    assert same_cyclic(B.xywha_to_poly(normalized), B.xywha_to_poly(boxes), tol_for(boxes)).all()
    assert_same_box(B.normalize_xywha(normalized), normalized, tol_for(boxes))


@PROPERTY
@given(box_batch(boxes_any()))
def test_equivalent_representations_give_the_same_polygon(boxes):
    poly = B.xywha_to_poly(boxes)
    atol = tol_for(boxes)
    cx, cy, w, h, a = boxes.T
    swapped = np.stack([cx, cy, h, w, a + HALF_PI], axis=-1)
    swapped_back = np.stack([cx, cy, h, w, a - HALF_PI], axis=-1)
    for twin in (swapped, swapped_back, np.stack([cx, cy, w, h, a + PI], -1), np.stack([cx, cy, w, h, a - PI], -1)):
        assert same_cyclic(B.xywha_to_poly(twin), poly, atol).all()
    # a half turn is a cyclic shift by two corners exactly (clockwise order is kept)
    np.testing.assert_allclose(B.xywha_to_poly(np.stack([cx, cy, w, h, a + PI], -1)), np.roll(poly, 2, axis=-2),
                               atol=atol, rtol=0)


@PROPERTY
@given(box_batch(boxes_le90()))
def test_poly_corner_order_and_geometry(boxes):
    poly = B.xywha_to_poly(boxes)
    cx, cy, w, h, a = boxes.T
    # first corner at (-w/2, -h/2) in the box frame, then along +u (the long side)
    u = np.stack([np.cos(a), np.sin(a)], -1)
    v = np.stack([-np.sin(a), np.cos(a)], -1)
    centre = np.stack([cx, cy], -1)
    expected_first = centre - u * (w / 2)[:, None] - v * (h / 2)[:, None]
    np.testing.assert_allclose(poly[:, 0], expected_first, atol=tol_for(boxes), rtol=0)
    np.testing.assert_allclose(poly[:, 1] - poly[:, 0], u * w[:, None], atol=tol_for(boxes), rtol=0)
    # clockwise on screen (y down) == positive shoelace area in (x, y)
    x, y = poly[..., 0] - cx[:, None], poly[..., 1] - cy[:, None]
    signed = 0.5 * (x * np.roll(y, -1, -1) - np.roll(x, -1, -1) * y).sum(-1)
    np.testing.assert_allclose(signed, w * h, rtol=1e-9, atol=1e-9)


@PROPERTY
@given(box_batch(boxes_any()))
def test_aabb_is_the_bounds_of_the_corners(boxes):
    poly = B.xywha_to_poly(boxes)
    expected = np.concatenate([poly.min(-2), poly.max(-2)], -1)
    np.testing.assert_allclose(B.xywha_to_aabb(boxes), expected, atol=tol_for(boxes), rtol=0)


@PROPERTY
@given(box_batch(st.tuples(coords, coords, sides, sides).map(np.array)))
def test_aabb_to_xywha_round_trip(parts):
    aabb = np.concatenate([parts[:, :2], parts[:, :2] + parts[:, 2:]], -1)
    boxes = B.aabb_to_xywha(aabb)
    assert_le90(boxes)
    np.testing.assert_allclose(B.xywha_to_aabb(boxes), aabb, atol=tol_for(aabb), rtol=0)


# ------------------------------------------------------------------------------------------------
# poly_to_xywha
# ------------------------------------------------------------------------------------------------

@PROPERTY
@given(box_batch(boxes_le90(min_aspect=1.001)))
def test_xywha_poly_xywha_round_trip(boxes):
    fitted = B.poly_to_xywha(B.xywha_to_poly(boxes))
    assert_le90(fitted)
    assert_same_box(fitted, boxes, tol_for(boxes))


@PROPERTY
@given(box_batch(boxes_le90(min_aspect=1.0, max_aspect=1.0 + 1e-6)))
def test_near_square_boxes_round_trip_as_polygons(boxes):
    poly = B.xywha_to_poly(boxes)
    fitted = B.poly_to_xywha(poly)
    assert_le90(fitted)
    # the angle is ambiguous modulo 90 degrees; the rectangle is not
    assert same_cyclic(B.xywha_to_poly(fitted), poly, tol_for(boxes)).all()
    np.testing.assert_allclose(fitted[:, 2] * fitted[:, 3], boxes[:, 2] * boxes[:, 3], rtol=1e-9)


@PROPERTY
@given(box_batch(boxes_le90(), max_size=4), st.permutations(range(4)))
def test_poly_to_xywha_accepts_any_vertex_order(boxes, order):
    poly = B.xywha_to_poly(boxes)
    fitted = B.poly_to_xywha(poly[:, list(order)])  # includes self-intersecting (bow-tie) orders
    assert_le90(fitted)
    assert same_cyclic(B.xywha_to_poly(fitted), poly, tol_for(boxes)).all()


def test_poly_to_xywha_every_vertex_order_and_orientation():
    box = np.array([[1000.0, -250.0, 60.0, 25.0, 0.3]])
    poly = B.xywha_to_poly(box)[0]
    for order in itertools.permutations(range(4)):
        fitted = B.poly_to_xywha(poly[list(order)][None])
        assert_same_box(fitted, box, 1e-9)


@pytest.mark.filterwarnings("ignore:.*encountered in oriented_envelope:RuntimeWarning")  # shapely, degenerate sets
@PROPERTY
@given(st.lists(st.tuples(coords, coords), min_size=4, max_size=4).map(np.array))
def test_poly_to_xywha_is_the_minimum_area_rectangle(points):
    fitted = B.poly_to_xywha(points[None], warn=False)[0]
    assert_le90(fitted[None])
    # every point lies inside the fitted rectangle
    a = fitted[4]
    rel = points - fitted[:2]
    u = rel @ np.array([math.cos(a), math.sin(a)])
    v = rel @ np.array([-math.sin(a), math.cos(a)])
    slack = 1e-7 * (1.0 + np.abs(points).max())
    assert np.all(np.abs(u) <= fitted[2] / 2 + slack) and np.all(np.abs(v) <= fitted[3] / 2 + slack)
    # and its area is the minimum (shapely's rotating-calipers envelope, float64, as the reference)
    envelope = shapely.oriented_envelope(shapely.multipoints(points))
    scale = 1.0 + np.abs(points - points.mean(0)).max()
    assert fitted[2] * fitted[3] == pytest.approx(shapely.area(envelope), rel=1e-9, abs=1e-9 * scale ** 2)


def test_poly_to_xywha_many_points():
    rng = np.random.default_rng(3)
    box = np.array([200.0, 300.0, 80.0, 30.0, -1.1])
    # 8 points: the 4 corners plus 4 interior points, shuffled
    inner = B.xywha_to_poly(np.array([200.0, 300.0, 40.0, 10.0, -1.1]))
    points = rng.permutation(np.concatenate([B.xywha_to_poly(box), inner]))
    assert_same_box(B.poly_to_xywha(points), box, 1e-9)


@pytest.mark.parametrize("polygon, expected_w", [
    ([[5.0, 5.0]] * 4, 0.0),  # all corners coincide
    ([[0.0, 0.0], [10.0, 0.0], [10.0, 0.0], [0.0, 0.0]], 10.0),  # a doubled segment
    ([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0], [9.0, 12.0]], 15.0),  # collinear, slanted
    ([[7.0, 1.0], [7.0, 9.0], [7.0, 4.0], [7.0, 2.0]], 8.0),  # collinear, vertical, unordered
])
def test_degenerate_polygons_give_zero_size_boxes_with_a_warning(polygon, expected_w, caplog):
    poly = np.array([polygon])
    with caplog.at_level(logging.WARNING, logger="obbdet.boxes"):
        fitted = B.poly_to_xywha(poly)
    assert np.all(np.isfinite(fitted))
    assert fitted[0, 3] == pytest.approx(0.0, abs=1e-9)
    assert fitted[0, 2] == pytest.approx(expected_w, abs=1e-9)
    np.testing.assert_allclose(fitted[0, :2], np.array(polygon).min(0) / 2 + np.array(polygon).max(0) / 2,
                               atol=1e-9)
    assert_le90(fitted)
    assert "degenerate" in caplog.text
    assert B.degenerate_polys(poly).all()


def test_poly_to_xywha_mixed_batch_and_empty():
    good = B.xywha_to_poly(np.array([[10.0, 20.0, 30.0, 10.0, 0.5]]))
    batch = np.concatenate([good, np.zeros((1, 4, 2)), good])
    fitted = B.poly_to_xywha(batch, warn=False)
    assert fitted.shape == (3, 5)
    assert_same_box(fitted[[0, 2]], np.array([[10.0, 20.0, 30.0, 10.0, 0.5]] * 2), 1e-9)
    np.testing.assert_array_equal(B.degenerate_polys(batch), [False, True, False])
    assert B.poly_to_xywha(np.zeros((0, 4, 2))).shape == (0, 5)
    assert B.poly_to_xywha(np.zeros((2, 3, 4, 2)), warn=False).shape == (2, 3, 5)
    with pytest.raises(ValueError, match="poly_to_xywha"):
        B.poly_to_xywha(np.zeros((4, 3)))


def test_dtype_is_kept():
    boxes32 = np.array([[10.0, 20.0, 30.0, 10.0, 0.5]], dtype=np.float32)
    assert B.normalize_xywha(boxes32).dtype == np.float32
    assert B.xywha_to_poly(boxes32).dtype == np.float32
    assert B.poly_to_xywha(B.xywha_to_poly(boxes32)).dtype == np.float32
    assert B.normalize_xywha(np.array([[10, 20, 30, 10, 0]])).dtype == np.float64
    with pytest.raises(ValueError, match="normalize_xywha"):
        B.normalize_xywha(np.zeros((3, 4)))


# ------------------------------------------------------------------------------------------------
# Conventions at dataset and tool boundaries
# ------------------------------------------------------------------------------------------------

@PROPERTY
@given(box_batch(boxes_le90(min_aspect=1.001, angle=st.one_of(le90_angle, boundary_angle))))
def test_oc_round_trip_and_range(boxes):
    boxes = B.normalize_xywha(boxes)
    oc = B.xywha_to_oc(boxes)
    assert np.all(oc[:, 4] > 0) and np.all(oc[:, 4] <= HALF_PI), oc[:, 4]
    assert same_cyclic(B.xywha_to_poly(oc), B.xywha_to_poly(boxes), tol_for(boxes)).all()
    assert_same_box(B.oc_to_xywha(oc), boxes, tol_for(boxes))


@PROPERTY
@given(box_batch(boxes_le90(min_aspect=1.001, angle=st.one_of(le90_angle, boundary_angle))))
def test_le135_round_trip_and_range(boxes):
    boxes = B.normalize_xywha(boxes)
    le135 = B.xywha_to_le135(boxes)
    assert np.all(le135[:, 2] >= le135[:, 3])
    assert np.all(le135[:, 4] >= -PI / 4) and np.all(le135[:, 4] < 3 * PI / 4), le135[:, 4]
    assert same_cyclic(B.xywha_to_poly(le135), B.xywha_to_poly(boxes), tol_for(boxes)).all()
    assert_same_box(B.le135_to_xywha(le135), boxes, tol_for(boxes))
    assert_same_box(B.le90_to_xywha(boxes), boxes, tol_for(boxes))


@PROPERTY
@given(box_batch(boxes_le90(min_aspect=1.001, angle=st.one_of(le90_angle, boundary_angle))))
def test_xywhr_round_trip_and_range(boxes):
    boxes = B.normalize_xywha(boxes)
    xywhr = B.xywha_to_xywhr(boxes)
    assert np.all(xywhr[:, 2] >= xywhr[:, 3])
    assert np.all(xywhr[:, 4] >= 0) and np.all(xywhr[:, 4] < PI), xywhr[:, 4]
    assert same_cyclic(B.xywha_to_poly(xywhr), B.xywha_to_poly(boxes), tol_for(boxes)).all()
    assert_same_box(B.xywhr_to_xywha(xywhr), boxes, tol_for(boxes))


@PROPERTY
@given(box_batch(boxes_le90(min_aspect=1.001)), st.floats(-PI, PI, exclude_max=True))
def test_rolabelimg_keeps_heading_separately(boxes, heading):
    # UAV-ROD: the w edge points along the heading, which may exceed the le90 range
    rows = boxes.copy()
    rows[:, 4] = heading
    le90, got_heading = B.rolabelimg_to_xywha(rows)
    assert_le90(le90)
    assert np.all((got_heading >= -PI) & (got_heading < PI))
    assert np.all(angle_diff_mod(got_heading, heading, 2 * PI) <= 1e-12)
    assert same_cyclic(B.xywha_to_poly(le90), B.xywha_to_poly(rows), tol_for(rows)).all()
    # a heading beyond 2 pi wraps into [-pi, pi)
    _, wrapped = B.rolabelimg_to_xywha(rows + np.array([0, 0, 0, 0, 4 * PI]))
    assert np.all((wrapped >= -PI) & (wrapped < PI))
    assert np.all(angle_diff_mod(wrapped, heading, 2 * PI) <= 1e-9)
    # the box angle is the heading's direction modulo pi
    assert np.all(angle_diff_mod_pi(B.heading_to_xywha_angle(got_heading), le90[:, 4]) <= 1e-9)


@PROPERTY
@given(box_batch(boxes_le90(min_aspect=1.001)))
def test_dlr3k_half_extents_in_degrees(boxes):
    rows = np.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] / 2, boxes[:, 3] / 2, np.degrees(-boxes[:, 4])], -1)
    assert_same_box(B.dlr3k_to_xywha(rows), boxes, tol_for(boxes))
    flipped = rows.copy()
    flipped[:, 4] *= -1
    assert_same_box(B.dlr3k_to_xywha(flipped, angle_sign=1.0), boxes, tol_for(boxes))


@PROPERTY
@given(box_batch(boxes_any()))
def test_degree_radian_round_trip(boxes):
    degrees = B.xywha_rad_to_deg(boxes)
    np.testing.assert_allclose(degrees[:, 4], np.degrees(boxes[:, 4]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(B.xywha_deg_to_rad(degrees), boxes, rtol=1e-12, atol=1e-12)


@PROPERTY
@given(st.one_of(st.floats(-100.0, 100.0), boundary_angle),
       st.sampled_from([-HALF_PI, -PI / 4, 0.0, -PI]),  # the ranges the conventions use
       st.sampled_from([PI, 2 * PI]))
def test_wrap_angle_range(angle, low, period):
    wrapped = float(B.wrap_angle(np.float64(angle), low=low, period=period))
    assert low <= wrapped < low + period
    turns = (angle - wrapped) / period
    assert abs(turns - round(turns)) <= 1e-9 * (1 + abs(turns))


# ------------------------------------------------------------------------------------------------
# numpy and torch agree
# ------------------------------------------------------------------------------------------------

TORCH_CASES = [
    ("normalize_xywha", lambda m, b: m.normalize_xywha(b)),
    ("xywha_to_poly", lambda m, b: m.xywha_to_poly(b)),
    ("xywha_to_aabb", lambda m, b: m.xywha_to_aabb(b)),
    ("poly_to_xywha", lambda m, b: m.poly_to_xywha(m.xywha_to_poly(b))),
    ("aabb_to_xywha", lambda m, b: m.aabb_to_xywha(m.xywha_to_aabb(b))),
    ("xywha_to_oc", lambda m, b: m.xywha_to_oc(b)),
    ("xywha_to_le135", lambda m, b: m.xywha_to_le135(b)),
    ("xywha_to_xywhr", lambda m, b: m.xywha_to_xywhr(b)),
    ("rolabelimg_to_xywha", lambda m, b: m.rolabelimg_to_xywha(b)[0]),
    ("dlr3k_to_xywha", lambda m, b: m.dlr3k_to_xywha(b)),
    ("xywha_rad_to_deg", lambda m, b: m.xywha_rad_to_deg(b)),
    ("wrap_angle", lambda m, b: m.wrap_angle(b[..., 4])),
]


@pytest.mark.parametrize("name, fn", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_numpy_and_torch_agree(name, fn):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    boxes = np.stack([rng.uniform(-5000, 5000, 64), rng.uniform(-5000, 5000, 64), rng.uniform(1, 300, 64),
                      rng.uniform(1, 300, 64), rng.uniform(-7, 7, 64)], -1)
    boxes[:4, 4] = [-HALF_PI, HALF_PI, PI, 0.0]
    expected = fn(B, boxes)
    got = fn(B, torch.from_numpy(boxes))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-9)
    got32 = fn(B, torch.from_numpy(boxes).float())
    assert got32.dtype == torch.float32


def test_numpy_input_never_imports_torch():
    code = ("import sys, numpy as np; from obbdet import boxes as B; b = np.array([[1., 2., 3., 1., 0.4]]); "
            "B.poly_to_xywha(B.xywha_to_poly(B.normalize_xywha(b))); B.xywha_to_oc(b); B.xywha_to_aabb(b); "
            "B.rolabelimg_to_xywha(b); B.dlr3k_to_xywha(b); assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(Path(__file__).resolve().parents[1]))


def test_clip_polys_to_rect_handles_zero_area_polygons():
    from obbdet.boxes import clip_polys_to_rect

    polys = np.array([[[1, 187], [1, 187], [1, 219], [1, 219]],  # DOTA patch-edge label: a segment
                      [[-5, -5], [5, -5], [5, 5], [-5, 5]]], dtype=np.float64)
    clipped, area_clipped, area = clip_polys_to_rect(polys, 0, 0, 100, 100)
    np.testing.assert_allclose(area, [0, 100])
    np.testing.assert_allclose(area_clipped, [0, 25])
    assert np.isfinite(clipped).all()
