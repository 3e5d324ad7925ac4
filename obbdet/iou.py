"""Exact intersection-over-union of rotated rectangles (``xywha`` boxes), on numpy arrays or torch tensors.

Boxes are rows ``[cx, cy, w, h, a]`` (pixels, ``a`` in radians from +x towards +y; any angle range works, the
le90 normalization is not required). Numpy input is computed in float64 and never imports torch, so ``eval``
can use it; torch input runs on the tensor's device (CPU or CUDA) in the input dtype (float16/bfloat16 are
computed in float32), or in float64 when ``dtype=torch.float64`` is asked.

Algorithm (exact, branch-free, fixed shapes, no sorting of points, no tolerances unless ``tol_rel`` asks for
them, as NMS does: :func:`intersection_area_pairs`, the one rotated intersection): put box B's corners in box
A's frame, where A is the axis-aligned rectangle ``[x_lo, x_hi] x [y_lo, y_hi]``, and map B's boundary through
the clamp ``(x, y) -> (clip(x, x_lo, x_hi), clip(y, y_lo, y_hi))``. For a point p strictly inside A, the image
curve meets the horizontal ray from p exactly where B's boundary does (clamping changes neither points at
p's height inside the x-range nor which side of p they are on), so the image winds around p as often as B
does; the image lies in A, so it does not wind around points outside A. Hence the signed area of the image
is ``area(A ∩ B)``. Each clamped edge is piecewise linear with kinks at its crossings of the four lines
``x = x_lo, x_hi, y = y_lo, y_hi``; the start point plus these four crossings (parameters clipped to the
edge and merged in order; duplicates add nothing) make the image an exact polygon of 20 points, whose
shoelace area is the intersection area. Every step is continuous in the inputs, so shared edges, touching
corners, containment, near-parallel edges and zero-size boxes need no special cases (vertex-enumeration
methods need tolerances in their inside tests). Work is done relative to B's centre clamped into A, which
keeps rounding proportional to the box sizes even around x = 5000 (the clamp is a projection, so every point
stays within B's half-diagonal of that origin); an exact separating-axis test makes disjoint and touching
pairs exactly 0 rather than rounding noise. The absolute IoU error is about ``eps * wA * wB / union``
(``eps`` of the compute dtype, ``w`` the long sides): ~1e-16 for vehicles in float64, ~1e-12 even for
slivers with aspect ratio 1e6; float32 stays within ~1e-6 for vehicle-like boxes.

Why not an existing implementation: shapely works one pair at a time at a few microseconds per pair;
torchvision and effdet have no rotated IoU; mmcv's op would bring a large compiled dependency and handles
degenerate cases with tolerances.
"""
from __future__ import annotations

import numpy as np

from obbdet.boxes import BOX_DIM, is_torch, xywha_to_aabb
from obbdet.pairs import aabb_overlap_pairs

# Pairs per vectorized chunk. Numpy is fastest when the chunk's temporaries stay in cache; GPUs want big chunks.
NUMPY_CHUNK_PAIRS = 2048
TORCH_CPU_CHUNK_PAIRS = 4096
TORCH_CUDA_CHUNK_PAIRS = 1 << 20
# Dense mode: AABB prefilter temporaries per block of rows (booleans).
PREFILTER_BLOCK_ELEMENTS = 1 << 23

__all__ = [
    "box_iou_rotated",
    "box_iou_rotated_sparse",
    "intersection_area_rotated",
    "intersection_area_pairs",
    "trig_rows",
    "aabb_overlap_pairs",
]


# ---------------------------------------------------------------------------------------------------
# Array-namespace helpers (numpy or torch)
# ---------------------------------------------------------------------------------------------------

def _xp(x):
    if is_torch(x):
        import torch

        return torch
    return np


def _roll_next(x, xp):
    """``x[k + 1]`` at position ``k`` along the first axis (cyclic), for numpy or torch."""
    return xp.concatenate([x[1:], x[:1]], axis=0)


def _clip_unit_(t, xp):
    """Clip to ``[0, 1]`` in place; NaN (from 0/0) becomes 1."""
    if xp is np:
        np.fmin(t, 1.0, out=t)
        return np.fmax(t, 0.0, out=t)
    return t.nan_to_num_(nan=1.0).clamp_(0.0, 1.0)


def _clamp_(x, low, high, xp):
    """Clamp ``x`` to ``[low, high]`` (broadcast arrays) in place."""
    if xp is np:
        np.maximum(x, low, out=x)
        return np.minimum(x, high, out=x)
    return x.clamp_(min=low, max=high)


def _check_boxes(boxes, name: str):
    if boxes.ndim != 2 or boxes.shape[-1] != BOX_DIM:
        raise ValueError(f"{name}: expected boxes of shape [N, {BOX_DIM}], got {tuple(boxes.shape)}")


def _prepare(boxes1, boxes2, dtype):
    """Validate and convert both box sets to the compute dtype. Returns (b1, b2, out_dtype, xp)."""
    if is_torch(boxes1) != is_torch(boxes2):
        raise TypeError("box_iou_rotated: boxes1 and boxes2 must both be numpy arrays or both torch tensors")
    if is_torch(boxes1):
        import torch

        if boxes1.device != boxes2.device:
            raise ValueError(f"box_iou_rotated: boxes on different devices ({boxes1.device}, {boxes2.device})")
        out_dtype = dtype if dtype is not None else torch.promote_types(boxes1.dtype, boxes2.dtype)
        if not out_dtype.is_floating_point:
            out_dtype = torch.float32
        compute = torch.float64 if out_dtype == torch.float64 else torch.float32
        b1, b2 = boxes1.detach().to(compute), boxes2.detach().to(compute)
    else:
        out_dtype = np.dtype(dtype) if dtype is not None else np.dtype(np.float64)
        b1 = np.asarray(boxes1, dtype=np.float64)
        b2 = np.asarray(boxes2, dtype=np.float64)
    _check_boxes(b1, "boxes1")
    _check_boxes(b2, "boxes2")
    return b1, b2, out_dtype, _xp(b1)


# ---------------------------------------------------------------------------------------------------
# Exact kernel
# ---------------------------------------------------------------------------------------------------

def _crossing_params(start, delta, low, high, xp):
    """Sorted edge parameters ``(t_a, t_b)``, clipped to ``[0, 1]``, where ``start + t * delta`` meets ``low``/``high``.

    ``delta == 0`` gives +-inf or NaN: the clamped coordinate is then constant along the edge, so any
    parameter is right; ``fmin``/``fmax`` and the clip turn them into values in ``[0, 1]``.
    """
    inv = 1.0 / delta  # one division for both lines
    t_high = (high - start) * inv
    t_low = (low - start) * inv
    t_a, t_b = xp.fmin(t_high, t_low), xp.fmax(t_high, t_low)
    return _clip_unit_(t_a, xp), _clip_unit_(t_b, xp)


def _clamp_polygon_to_box(x, y, x_lo, x_hi, y_lo, y_hi, xp):
    """Image of closed polygons ``(x [K, P], y [K, P])`` under the clamp into boxes ``[x_lo, x_hi] x [y_lo, y_hi]``.

    Bounds are ``[P]``. Each edge ``k -> k+1`` yields five points (its start and its four line crossings in
    edge order), so the result is ``(xs [5K, P], ys [5K, P])``; its signed area is that of the polygon
    intersected with the box (module notes).
    """
    dx = _roll_next(x, xp) - x
    dy = _roll_next(y, xp) - y
    tx_a, tx_b = _crossing_params(x, dx, x_lo, x_hi, xp)
    ty_a, ty_b = _crossing_params(y, dy, y_lo, y_hi, xp)
    # merge the two sorted pairs into four sorted parameters
    middle_a, middle_b = xp.maximum(tx_a, ty_a), xp.minimum(tx_b, ty_b)
    t = xp.stack([xp.zeros_like(dx), xp.minimum(tx_a, ty_a), xp.minimum(middle_a, middle_b),
                  xp.maximum(middle_a, middle_b), xp.maximum(tx_b, ty_b)], axis=1)  # [K, 5, P]
    xs = _clamp_(x[:, None] + t * dx[:, None], x_lo, x_hi, xp)
    ys = _clamp_(y[:, None] + t * dy[:, None], y_lo, y_hi, xp)
    shape = (5 * x.shape[0], x.shape[1])
    return xs.reshape(shape), ys.reshape(shape)


def _clamp_polygon_to_box_numpy(x, y, x_lo, x_hi, y_lo, y_hi):
    """:func:`_clamp_polygon_to_box` for numpy, with in-place operations (about twice as fast)."""
    corners, pairs = x.shape
    dx = _roll_next(x, np)
    dx -= x
    dy = _roll_next(y, np)
    dy -= y
    tx_a, tx_b = _crossing_params(x, dx, x_lo, x_hi, np)
    ty_a, ty_b = _crossing_params(y, dy, y_lo, y_hi, np)
    t = np.empty((4, corners, pairs), dtype=x.dtype)
    np.minimum(tx_a, ty_a, out=t[0])
    np.maximum(tx_b, ty_b, out=t[3])
    np.maximum(tx_a, ty_a, out=tx_a)  # the middle two, unsorted
    np.minimum(tx_b, ty_b, out=tx_b)
    np.minimum(tx_a, tx_b, out=t[1])
    np.maximum(tx_a, tx_b, out=t[2])
    xs = np.empty((corners, 5, pairs), dtype=x.dtype)
    ys = np.empty((corners, 5, pairs), dtype=x.dtype)
    xs[:, 0], ys[:, 0] = x, y
    for k in range(4):
        np.multiply(t[k], dx, out=xs[:, k + 1])
        xs[:, k + 1] += x
        np.multiply(t[k], dy, out=ys[:, k + 1])
        ys[:, k + 1] += y
    _clamp_(xs, x_lo, x_hi, np)
    _clamp_(ys, y_lo, y_hi, np)
    return xs.reshape(5 * corners, pairs), ys.reshape(5 * corners, pairs)


def _shoelace(xs, ys, xp):
    """Signed areas ``[P]`` of closed polygons ``(xs [K, P], ys [K, P])``.

    A single polygon is computed as two: numpy sums a lone contiguous column in another order than a column
    among several (row after row), and a pair's area must not depend on how many pairs are computed with it
    (NMS intersects pairs in batches of every size and must get the bits :func:`box_iou_rotated` reports).
    """
    if xp is np:
        if xs.shape[1] == 1:
            return _shoelace(np.repeat(xs, 2, axis=1), np.repeat(ys, 2, axis=1), xp)[:1]
        twice = np.einsum("kp,kp->p", xs[:-1], ys[1:]) - np.einsum("kp,kp->p", xs[1:], ys[:-1])
        twice += xs[-1] * ys[0] - xs[0] * ys[-1]
        return 0.5 * twice
    return 0.5 * (xs * _roll_next(ys, xp) - _roll_next(xs, xp) * ys).sum(0)


def _separated(u, v, cos_d, sin_d, w1, h1, w2, h2, xp):
    """Separating-axis test ``[P]``: True where the boxes are disjoint or only touch (intersection area 0).

    Box 1 is centred at the origin, axis-aligned; box 2 is centred at ``(u, v)`` and turned by ``d``.
    Makes such pairs exactly 0 instead of rounding noise.
    """
    abs_cos, abs_sin = xp.abs(cos_d), xp.abs(sin_d)
    # box 1's axes
    sep = xp.abs(u) >= (w1 + abs_cos * w2 + abs_sin * h2) / 2
    sep |= xp.abs(v) >= (h1 + abs_sin * w2 + abs_cos * h2) / 2
    # box 2's axes
    sep |= xp.abs(u * cos_d + v * sin_d) >= (w2 + abs_cos * w1 + abs_sin * h1) / 2
    sep |= xp.abs(v * cos_d - u * sin_d) >= (h2 + abs_sin * w1 + abs_cos * h1) / 2
    return sep


def _with_trig(boxes, xp):
    """``[N, 6]`` rows ``[cx, cy, |w|, |h|, cos a, sin a]`` of boxes ``[N, 5]``: trigonometry once per box."""
    a = boxes[:, 4]
    return xp.stack([boxes[:, 0], boxes[:, 1], xp.abs(boxes[:, 2]), xp.abs(boxes[:, 3]), xp.cos(a), xp.sin(a)],
                    axis=1)


def _snap_right_angles(cos_d, sin_d, tol_rel, xp):
    """A relative angle within ``tol_rel`` of a multiple of 90 degrees becomes that multiple exactly (cosine and
    sine in {-1, 0, 1}), so edges parallel at that resolution are parallel: +-90 degree twins, squares turned
    by 90 degrees and float32 angles next to +-pi/2 share their edges instead of crossing at a sliver."""
    zero = xp.zeros_like(cos_d)
    snap_sin = xp.abs(sin_d) <= tol_rel
    snap_cos = xp.abs(cos_d) <= tol_rel
    return (xp.where(snap_sin, xp.sign(cos_d), xp.where(snap_cos, zero, cos_d)),
            xp.where(snap_cos, xp.sign(sin_d), xp.where(snap_sin, zero, sin_d)))


def _intersection_area_kernel(t1, t2, xp, tol_rel: float = 0.0):
    """Exact intersection areas ``[P]`` of aligned pairs of :func:`_with_trig` rows ``t1 [P, 6]``, ``t2 [P, 6]``,
    resolved to ``tol_rel`` when it is positive (:func:`intersection_area_pairs`)."""
    cx1, cy1, w1, h1, cos1, sin1 = (t1[:, i] for i in range(6))
    cx2, cy2, w2, h2, cos2, sin2 = (t2[:, i] for i in range(6))
    rel_x, rel_y = cx2 - cx1, cy2 - cy1  # relative first: precision at large coordinates
    u = rel_x * cos1 + rel_y * sin1  # box 2's centre in box 1's frame
    v = -rel_x * sin1 + rel_y * cos1
    cos_d = cos2 * cos1 + sin2 * sin1  # box 2's angle relative to box 1
    sin_d = sin2 * cos1 - cos2 * sin1
    if tol_rel:
        cos_d, sin_d = _snap_right_angles(cos_d, sin_d, tol_rel, xp)
    # work relative to box 2's centre clamped into box 1: every point of the clipped polygon is within one
    # box-size of it, which keeps rounding proportional to the boxes, not to their distance from box 1's centre
    half_w1, half_h1 = w1 / 2, h1 / 2
    origin_x = xp.minimum(xp.maximum(u, -half_w1), half_w1)
    origin_y = xp.minimum(xp.maximum(v, -half_h1), half_h1)
    u0, v0 = u - origin_x, v - origin_y
    hw_x, hw_y = cos_d * w2 / 2, sin_d * w2 / 2
    hh_x, hh_y = -sin_d * h2 / 2, cos_d * h2 / 2
    # corners in xywha_to_poly order: counter-clockwise in the (x, y) axes, so the shoelace area is positive
    xs = xp.stack([u0 - hw_x - hh_x, u0 + hw_x - hh_x, u0 + hw_x + hh_x, u0 - hw_x + hh_x], axis=0)  # [4, P]
    ys = xp.stack([v0 - hw_y - hh_y, v0 + hw_y - hh_y, v0 + hw_y + hh_y, v0 - hw_y + hh_y], axis=0)
    bounds = (-half_w1 - origin_x, half_w1 - origin_x, -half_h1 - origin_y, half_h1 - origin_y)
    if xp is np:
        xs, ys = _clamp_polygon_to_box_numpy(xs, ys, *bounds)  # [20, P]
    else:
        xs, ys = _clamp_polygon_to_box(xs, ys, *bounds, xp)
    area = _shoelace(xs, ys, xp)
    zero = xp.zeros_like(area)
    area = xp.minimum(xp.maximum(area, zero), xp.minimum(w1 * h1, w2 * h2))  # rounding only
    if tol_rel:
        # round-off floor, relative to the pair's largest half side: boxes that touch along an edge whose
        # position is itself rounded (a row of rotated cars) intersect in exactly 0, not in noise
        half = xp.maximum(xp.maximum(w1, h1), xp.maximum(w2, h2)) / 2
        area = xp.where(area <= tol_rel * half * half, zero, area)
    return xp.where(_separated(u, v, cos_d, sin_d, w1, h1, w2, h2, xp), zero, area)


def _row_intersections(t1, t2, idx1, idx2, xp, tol_rel: float = 0.0):
    """Intersection areas ``[K]`` of the pairs ``(t1[idx1[k]], t2[idx2[k]])`` of :func:`_with_trig` rows,
    gathered and computed in chunks of bounded size (in cache for numpy, large for GPUs)."""
    chunk = (TORCH_CUDA_CHUNK_PAIRS if t1.device.type == "cuda" else TORCH_CPU_CHUNK_PAIRS) if is_torch(t1) \
        else NUMPY_CHUNK_PAIRS
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 and x/0 crossings are resolved by the clamps
        parts = [_intersection_area_kernel(t1[idx1[s:s + chunk]], t2[idx2[s:s + chunk]], xp, tol_rel)
                 for s in range(0, max(len(idx1), 1), chunk)]
    return parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=0)


def _pair_intersections(b1, b2, idx1, idx2, xp, tol_rel: float = 0.0):
    """Intersection areas ``[K]`` of pairs ``(b1[idx1[k]], b2[idx2[k]])``, computed in bounded-size chunks."""
    t1 = _with_trig(b1, xp)
    t2 = t1 if b2 is b1 else _with_trig(b2, xp)
    return _row_intersections(t1, t2, idx1, idx2, xp, tol_rel)


def _iou_from_areas(inter, area1, area2, xp):
    """IoU from intersection and box areas; pairs with zero union (zero-area boxes) get 0."""
    union = area1 + area2 - inter
    positive = union > 0
    return xp.where(positive, inter / xp.where(positive, union, xp.ones_like(union)), xp.zeros_like(union))


def _box_areas(boxes, xp):
    return xp.abs(boxes[:, 2] * boxes[:, 3])


def _to_out(values, out_dtype):
    return values.to(out_dtype) if is_torch(values) else values.astype(out_dtype, copy=False)


# ---------------------------------------------------------------------------------------------------
# Candidate pairs from axis-aligned bounds (dense mode; sparse mode: obbdet.pairs.aabb_overlap_pairs)
# ---------------------------------------------------------------------------------------------------

def _dense_overlap_pairs(aabb1, aabb2, xp):
    """Index pairs ``(i [K], j [K])``, sorted by ``(i, j)``, whose AABBs ``[N, 4]``, ``[M, 4]`` overlap.

    Rows are processed in blocks so the boolean temporaries stay below ``PREFILTER_BLOCK_ELEMENTS``.
    """
    rows = max(1, PREFILTER_BLOCK_ELEMENTS // max(1, aabb2.shape[0]))
    found1, found2 = [], []
    for start in range(0, aabb1.shape[0], rows):
        block = aabb1[start:start + rows]
        overlap = ((block[:, None, 0] < aabb2[None, :, 2]) & (aabb2[None, :, 0] < block[:, None, 2])
                   & (block[:, None, 1] < aabb2[None, :, 3]) & (aabb2[None, :, 1] < block[:, None, 3]))
        i, j = overlap.nonzero(as_tuple=True) if is_torch(overlap) else np.nonzero(overlap)
        found1.append(i + start)
        found2.append(j)
    if len(found1) <= 1:
        return (found1[0], found2[0]) if found1 else np.nonzero(np.zeros((0, 0), dtype=bool))
    return xp.concatenate(found1, axis=0), xp.concatenate(found2, axis=0)


# ---------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------

def intersection_area_rotated(boxes1, boxes2, *, dtype=None, tol_rel: float = 0.0):
    """Exact intersection areas ``[N]`` of aligned pairs of rotated boxes ``boxes1 [N, 5]``, ``boxes2 [N, 5]``.

    Boxes are ``xywha`` (pixels, radians; any angle range). Numpy in -> float64 numpy out (or ``dtype``);
    torch in -> tensor on the same device, in the input dtype unless ``dtype`` is given. No gradients.
    ``tol_rel``: see :func:`intersection_area_pairs` (0: the exact areas).
    """
    b1, b2, out_dtype, xp = _prepare(boxes1, boxes2, dtype)
    if b1.shape[0] != b2.shape[0]:
        raise ValueError(f"intersection_area_rotated: aligned mode needs equal lengths, got {b1.shape[0]} "
                         f"and {b2.shape[0]}")
    index = xp.arange(b1.shape[0], device=b1.device) if is_torch(b1) else np.arange(b1.shape[0])
    return _to_out(_pair_intersections(b1, b2, index, index, xp, _check_tol(tol_rel)), out_dtype)


def trig_rows(boxes):
    """Rows ``[N, 6]`` ``[cx, cy, |w|, |h|, cos a, sin a]`` of boxes ``[N, 5]`` (numpy: float64), the input of
    :func:`intersection_area_pairs`: the trigonometry once per box for callers that intersect boxes many times."""
    boxes = boxes.detach() if is_torch(boxes) else np.asarray(boxes, dtype=np.float64)
    _check_boxes(boxes, "trig_rows")
    return _with_trig(boxes, _xp(boxes))


def intersection_area_pairs(rows1, rows2, idx1, idx2, *, tol_rel: float = 0.0):
    """Intersection areas ``[K]`` of the pairs ``(rows1[idx1[k]], rows2[idx2[k]])`` of :func:`trig_rows` rows.

    The project's one rotated intersection: :func:`box_iou_rotated` (so the evaluation's rotated pairs) and the
    CPU NMS compute every area with it, so an NMS decision and the IoU reported for the same pair (in the same
    order) come from the same value, also at a threshold tie. ``tol_rel`` (0: exact) resolves the geometry
    relative to the pair's largest half side: relative angles within it of a multiple of 90 degrees are that
    multiple, and areas at most ``tol_rel`` times that half side squared are 0 (NMS: touching boxes never
    suppress each other).
    """
    return _row_intersections(rows1, rows2, idx1, idx2, _xp(rows1), _check_tol(tol_rel))


def _check_tol(tol_rel) -> float:
    if not 0.0 <= float(tol_rel) < 1.0:
        raise ValueError(f"tol_rel must be in [0, 1), got {tol_rel}")
    return float(tol_rel)


def box_iou_rotated(boxes1, boxes2, *, aligned: bool = False, dtype=None):
    """Exact IoU of rotated rectangles.

    Args:
        boxes1: ``[N, 5]`` ``xywha`` boxes ``[cx, cy, w, h, a]`` (pixels, radians, any angle range),
            a numpy array or a torch tensor (CPU or CUDA).
        boxes2: ``[M, 5]``, same type (and device) as ``boxes1``; ``M == N`` when ``aligned``.
        aligned: if True, return the IoU of each pair ``(boxes1[i], boxes2[i])``.
        dtype: output dtype. Numpy is always computed in float64 (output float64 by default). Torch is
            computed in the input dtype (float16/bfloat16 in float32); ``dtype=torch.float64`` computes in
            float64 (use it for evaluation).

    Returns:
        ``[N, M]`` (or ``[N]`` when ``aligned``) IoU in ``[0, 1]``. Pairs whose union is zero (both boxes of
        zero area) have IoU 0. Pairs whose axis-aligned bounds do not overlap are exactly 0 and skip the exact
        computation. Never tracks gradients.
    """
    b1, b2, out_dtype, xp = _prepare(boxes1, boxes2, dtype)
    area1, area2 = _box_areas(b1, xp), _box_areas(b2, xp)
    if aligned:
        if b1.shape[0] != b2.shape[0]:
            raise ValueError(f"box_iou_rotated: aligned mode needs equal lengths, got {b1.shape[0]} "
                             f"and {b2.shape[0]}")
        index = xp.arange(b1.shape[0], device=b1.device) if is_torch(b1) else np.arange(b1.shape[0])
        inter = _pair_intersections(b1, b2, index, index, xp)
        return _to_out(_iou_from_areas(inter, area1, area2, xp), out_dtype)
    n, m = b1.shape[0], b2.shape[0]
    out = xp.zeros((n, m), dtype=b1.dtype, device=b1.device) if is_torch(b1) else np.zeros((n, m))
    if n == 0 or m == 0:
        return _to_out(out, out_dtype)
    idx1, idx2 = _dense_overlap_pairs(xywha_to_aabb(b1), xywha_to_aabb(b2), xp)
    if len(idx1):
        inter = _pair_intersections(b1, b2, idx1, idx2, xp)
        out[idx1, idx2] = _iou_from_areas(inter, area1[idx1], area2[idx2], xp)
    return _to_out(out, out_dtype)


def box_iou_rotated_sparse(boxes1, boxes2, *, min_iou: float = 0.0, dtype=None):
    """IoU of only the pairs that can overlap, for large box sets (10^4-10^5 boxes), without an ``N x M`` matrix.

    Candidate pairs are those whose axis-aligned bounds overlap (uniform-grid search, see
    :func:`obbdet.pairs.aabb_overlap_pairs`); their IoU is computed exactly as in :func:`box_iou_rotated`.

    Args:
        boxes1: ``[N, 5]`` ``xywha`` numpy array or torch tensor.
        boxes2: ``[M, 5]`` same type.
        min_iou: keep pairs with ``iou >= min_iou``; pairs with IoU 0 are never returned.
        dtype: as in :func:`box_iou_rotated`.

    Returns:
        ``(idx1 [K] int64, idx2 [K] int64, iou [K])`` sorted by ``(idx1, idx2)``, of the input's type and
        device. Every pair not returned has IoU 0 or below ``min_iou``, so
        ``dense[idx1, idx2] == iou`` and the rest of ``dense`` is 0 when ``min_iou == 0``.
    """
    b1, b2, out_dtype, xp = _prepare(boxes1, boxes2, dtype)
    aabb1, aabb2 = xywha_to_aabb(b1), xywha_to_aabb(b2)
    if is_torch(b1):  # candidate search is index bookkeeping: numpy on the host, exact IoU on the device
        aabb1 = aabb1.cpu().double().numpy()
        aabb2 = aabb2.cpu().double().numpy()
    idx1, idx2 = aabb_overlap_pairs(aabb1, aabb2)
    order = np.lexsort((idx2, idx1))
    idx1, idx2 = idx1[order], idx2[order]
    if is_torch(b1):
        idx1 = xp.as_tensor(idx1, device=b1.device)
        idx2 = xp.as_tensor(idx2, device=b1.device)
    inter = _pair_intersections(b1, b2, idx1, idx2, xp)
    iou = _iou_from_areas(inter, _box_areas(b1, xp)[idx1], _box_areas(b2, xp)[idx2], xp)
    keep = (iou > 0) & (iou >= min_iou)
    return idx1[keep], idx2[keep], _to_out(iou[keep], out_dtype)

