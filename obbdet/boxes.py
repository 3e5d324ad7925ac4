"""Box geometry: the one module that owns oriented-box conventions and conversions.

The in-memory convention (see the architecture notes) is ``xywha``: a row ``[cx, cy, w, h, a]`` in pixels,
``w`` the long side, ``h`` the short side (``w >= h``), ``a`` the direction of the long side in radians from
+x towards +y (clockwise on screen, since image y points down), normalized to ``[-pi/2, pi/2)`` ("le90").

Every function accepts numpy arrays or torch tensors and returns the same type. Torch is never imported
here, so ``eval`` (numpy only) can use this module without paying for torch's import.

Other conventions appear only at dataset and tool boundaries, each with a named converter:
``oc`` (OpenCV minAreaRect / mmrotate ``oc``), ``le135`` (mmrotate), ``le90`` (mmrotate, same as ours),
``xywhr`` (ultralytics), roLabelImg radians (UAV-ROD), DLR-3K half-extents in degrees.
"""
from __future__ import annotations

import logging
import math

import numpy as np

logger = logging.getLogger(__name__)

BOX_DIM = 5  # cx, cy, w, h, a
CORNERS = 4  # corners of a rectangle / quadrilateral label
POINT_DIM = 2  # x, y
HALF_PI = math.pi / 2


def is_torch(x) -> bool:
    """True for a torch tensor, decided without importing torch."""
    return type(x).__module__.startswith("torch")


def _xp(x):
    """The array namespace of ``x``: numpy or torch (whose functions accept numpy-style ``axis``)."""
    if is_torch(x):
        import torch

        return torch
    return np


def _as_float_array(x):
    """Numpy input becomes a float array (float32 stays float32, ints become float64); torch passes through."""
    if is_torch(x):
        return x if x.is_floating_point() else x.double()
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def _check_last_dim(x, size: int, name: str):
    if x.ndim < 1 or x.shape[-1] != size:
        raise ValueError(f"{name}: expected shape [..., {size}], got {tuple(x.shape)}")


def wrap_angle(a, low: float = -HALF_PI, period: float = math.pi):
    """Wrap angles (radians) into ``[low, low + period)``."""
    xp = _xp(a)
    wrapped = xp.remainder(a - low, period) + low
    # remainder can return exactly `period` for tiny negative inputs in floating point
    return xp.where(wrapped >= low + period, wrapped - period, wrapped)


def normalize_xywha(boxes):
    """Normalize boxes ``[..., 5]`` to the le90 convention: ``w >= h`` and ``a`` in ``[-pi/2, pi/2)``.

    A box with ``w < h`` is the same rectangle as ``(h, w, a + pi/2)``; angles are taken modulo pi.
    Returns a new array/tensor of the same type and dtype.
    """
    boxes = _as_float_array(boxes)
    _check_last_dim(boxes, BOX_DIM, "normalize_xywha")
    xp = _xp(boxes)
    cx, cy, w, h, a = (boxes[..., i] for i in range(BOX_DIM))
    swap = w < h
    long_side = xp.where(swap, h, w)
    short_side = xp.where(swap, w, h)
    angle = wrap_angle(xp.where(swap, a + HALF_PI, a))
    return xp.stack([cx, cy, long_side, short_side, angle], axis=-1)


def scale_xywha_sides(boxes, width_scale: float = 1.0, length_scale: float = 1.0):
    """Boxes ``[N, 5]`` le90 xywha with the short side ``h`` times ``width_scale`` and the long side ``w`` times
    ``length_scale``, about each centre (calibration of loosely or tightly labelled boxes).

    Returns a new array (the input itself when both factors are 1); re-normalized to le90 when a widened short
    side overtakes the long side. Raises ValueError for a factor that is not > 0.
    """
    if not (width_scale > 0 and length_scale > 0):
        raise ValueError(f"scale factors must be > 0, got width {width_scale}, length {length_scale}")
    if width_scale == 1.0 and length_scale == 1.0:
        return boxes
    scaled = np.array(boxes, dtype=np.float64).reshape(-1, BOX_DIM)
    scaled[:, 2] *= length_scale
    scaled[:, 3] *= width_scale
    if len(scaled) and np.any(scaled[:, 3] > scaled[:, 2]):
        scaled = normalize_xywha(scaled)
    return scaled


def scale_xywha(boxes: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Map boxes ``[N, 5]`` through ``x -> x * sx, y -> y * sy`` (a resized image: inference and training alike).

    Equal factors scale centre and sides; unequal ones (rounding of the resized size, < 1 px over the image)
    map the corners and refit the minimum-area rectangle, so the result stays exact. Returns float64 numpy.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, BOX_DIM)
    if abs(sx - sy) <= 1e-12 * max(sx, sy):
        out = boxes.copy()
        out[:, :4] *= sx
        return out
    polys = xywha_to_poly(boxes) * np.array([sx, sy])
    return poly_to_xywha(polys, warn=False)


def scale_heading(heading: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Headings ``[N]`` (radians, ``[-pi, pi)``, NaN unknown) after ``x -> x * sx, y -> y * sy``."""
    heading = np.asarray(heading, dtype=np.float64)
    if abs(sx - sy) <= 1e-12 * max(sx, sy):
        return heading.copy()
    turned = np.arctan2(np.sin(heading) * sy, np.cos(heading) * sx)
    return np.where(turned >= math.pi, turned - 2 * math.pi, turned)


def xywha_to_poly(boxes):
    """Corners ``[..., 4, 2]`` of boxes ``[..., 5]`` (any angle convention where ``a`` is the ``w`` direction).

    Corners are ordered clockwise on screen, starting from the corner at ``(-w/2, -h/2)`` in the box frame
    (the frame whose +x axis is the ``w`` side at angle ``a``).
    """
    boxes = _as_float_array(boxes)
    _check_last_dim(boxes, BOX_DIM, "xywha_to_poly")
    xp = _xp(boxes)
    cx, cy, w, h, a = (boxes[..., i] for i in range(BOX_DIM))
    cos_a, sin_a = xp.cos(a), xp.sin(a)
    half_w_x, half_w_y = cos_a * w / 2, sin_a * w / 2  # half long side, along the box's u axis
    half_h_x, half_h_y = -sin_a * h / 2, cos_a * h / 2  # half short side, along v = u turned +90 deg
    xs = [cx - half_w_x - half_h_x, cx + half_w_x - half_h_x, cx + half_w_x + half_h_x, cx - half_w_x + half_h_x]
    ys = [cy - half_w_y - half_h_y, cy + half_w_y - half_h_y, cy + half_w_y + half_h_y, cy - half_w_y + half_h_y]
    return xp.stack([xp.stack(xs, axis=-1), xp.stack(ys, axis=-1)], axis=-1)


def xywha_to_aabb(boxes):
    """Axis-aligned bounds ``[..., 4]`` as ``[x_min, y_min, x_max, y_max]`` of boxes ``[..., 5]``."""
    boxes = _as_float_array(boxes)
    _check_last_dim(boxes, BOX_DIM, "xywha_to_aabb")
    xp = _xp(boxes)
    cx, cy, w, h, a = (boxes[..., i] for i in range(BOX_DIM))
    cos_a, sin_a = xp.abs(xp.cos(a)), xp.abs(xp.sin(a))
    half_x = (w * cos_a + h * sin_a) / 2
    half_y = (w * sin_a + h * cos_a) / 2
    return xp.stack([cx - half_x, cy - half_y, cx + half_x, cy + half_y], axis=-1)


def aabb_to_xywha(aabb):
    """Boxes ``[..., 5]`` (le90) from axis-aligned ``[x_min, y_min, x_max, y_max]`` ``[..., 4]``."""
    aabb = _as_float_array(aabb)
    _check_last_dim(aabb, CORNERS, "aabb_to_xywha")
    xp = _xp(aabb)
    x0, y0, x1, y1 = (aabb[..., i] for i in range(CORNERS))
    zeros = xp.zeros_like(x0)
    return normalize_xywha(xp.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, zeros], axis=-1))


def xywha_area(boxes):
    """Areas ``[...]`` of boxes ``[..., 5]``."""
    return boxes[..., 2] * boxes[..., 3]


def _poly_to_xywha_numpy(polys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-area rectangles of point sets ``[N, P, 2]`` (float64). Returns (boxes ``[N, 5]``, degenerate ``[N]``).

    The minimum-area enclosing rectangle has a side collinear with an edge of the convex hull, and every
    hull edge joins two of the points, so trying the direction of every point pair is exact for any
    vertex order (and for non-convex or self-intersecting quadrilaterals).
    """
    n_points = polys.shape[1]
    first, second = np.triu_indices(n_points, k=1)
    directions = polys[:, second] - polys[:, first]  # [N, pairs, 2]
    lengths = np.hypot(directions[..., 0], directions[..., 1])
    angles = np.arctan2(directions[..., 1], directions[..., 0])  # [N, pairs]
    cos_a, sin_a = np.cos(angles), np.sin(angles)
    centre = polys.mean(axis=1, keepdims=True)
    rel = polys - centre  # [N, P, 2]; relative coordinates keep precision at large offsets
    # coordinates of every point in every candidate frame: [N, pairs, P]
    u = rel[:, None, :, 0] * cos_a[..., None] + rel[:, None, :, 1] * sin_a[..., None]
    v = -rel[:, None, :, 0] * sin_a[..., None] + rel[:, None, :, 1] * cos_a[..., None]
    u_min, u_max, v_min, v_max = u.min(-1), u.max(-1), v.min(-1), v.max(-1)
    areas = (u_max - u_min) * (v_max - v_min)
    areas = np.where(lengths > 0, areas, np.inf)
    best = np.argmin(areas, axis=1)  # first minimum: deterministic
    rows = np.arange(len(polys))
    cos_b, sin_b = cos_a[rows, best], sin_a[rows, best]
    mid_u = (u_min[rows, best] + u_max[rows, best]) / 2
    mid_v = (v_min[rows, best] + v_max[rows, best]) / 2
    cx = centre[:, 0, 0] + mid_u * cos_b - mid_v * sin_b
    cy = centre[:, 0, 1] + mid_u * sin_b + mid_v * cos_b
    w = u_max[rows, best] - u_min[rows, best]
    h = v_max[rows, best] - v_min[rows, best]
    a = angles[rows, best]
    all_coincident = ~np.isfinite(areas[rows, best])
    w = np.where(all_coincident, 0.0, w)
    h = np.where(all_coincident, 0.0, h)
    a = np.where(all_coincident, 0.0, a)
    boxes = normalize_xywha(np.stack([cx, cy, w, h, a], axis=-1))
    degenerate = all_coincident | (boxes[:, 3] <= 1e-12 * np.maximum(boxes[:, 2], 1.0))
    boxes[degenerate, 3] = 0.0  # collinear points leave rounding noise, not a real width
    return boxes, degenerate


def poly_to_xywha(polys, warn: bool = True):
    """Fit le90 boxes ``[..., 5]`` to polygons ``[..., P, 2]`` (usually ``P = 4`` corners, any order).

    The fit is the minimum-area enclosing rectangle. Degenerate polygons (all points equal, or collinear)
    give a zero-size box (``h = 0``, and ``w = 0`` too when all points coincide) and a logged warning,
    never an exception. Torch input is fitted in float64 numpy and returned on its device and dtype.
    """
    if is_torch(polys):
        import torch

        fitted = poly_to_xywha(polys.detach().cpu().double().numpy(), warn=warn)
        dtype = polys.dtype if polys.is_floating_point() else torch.float64
        return torch.as_tensor(fitted, device=polys.device, dtype=dtype)
    polys = np.asarray(polys)
    if polys.ndim < 2 or polys.shape[-1] != POINT_DIM or polys.shape[-2] < 2:
        raise ValueError(f"poly_to_xywha: expected shape [..., P, 2] with P >= 2, got {polys.shape}")
    out_dtype = polys.dtype if polys.dtype in (np.float32, np.float64) else np.float64
    lead_shape = polys.shape[:-2]
    flat = polys.reshape(-1, polys.shape[-2], POINT_DIM).astype(np.float64)
    if len(flat) == 0:
        return np.zeros(lead_shape + (BOX_DIM,), dtype=out_dtype)
    boxes, degenerate = _poly_to_xywha_numpy(flat)
    if warn and degenerate.any():
        logger.warning("poly_to_xywha: %d degenerate polygon(s) (zero area) fitted as zero-size boxes",
                       int(degenerate.sum()))
    return boxes.reshape(lead_shape + (BOX_DIM,)).astype(out_dtype)


def degenerate_polys(polys, rel_tol: float = 1e-12) -> np.ndarray:
    """Mask ``[...]`` of polygons ``[..., P, 2]`` whose minimum-area rectangle has zero area."""
    boxes = poly_to_xywha(np.asarray(polys, dtype=np.float64), warn=False)
    return boxes[..., 3] <= rel_tol * np.maximum(boxes[..., 2], 1.0)


# ---------------------------------------------------------------------------------------------------
# Angle units
# ---------------------------------------------------------------------------------------------------

def xywha_deg_to_rad(boxes):
    """``[..., 5]`` boxes with the angle in degrees -> the same boxes with the angle in radians."""
    return _replace_angle(boxes, boxes[..., 4] * (math.pi / 180.0))


def xywha_rad_to_deg(boxes):
    """``[..., 5]`` boxes with the angle in radians -> the same boxes with the angle in degrees."""
    return _replace_angle(boxes, boxes[..., 4] * (180.0 / math.pi))


def _replace_angle(boxes, angle):
    boxes = _as_float_array(boxes)
    _check_last_dim(boxes, BOX_DIM, "angle conversion")
    xp = _xp(boxes)
    return xp.concatenate([boxes[..., :4], angle[..., None]], axis=-1)


# ---------------------------------------------------------------------------------------------------
# Other conventions (dataset and peer-tool boundaries)
# ---------------------------------------------------------------------------------------------------

def oc_to_xywha(boxes):
    """OpenCV ``minAreaRect`` / mmrotate ``oc`` boxes (radians, ``a`` in ``(0, pi/2]``, sides unordered) -> le90."""
    return normalize_xywha(boxes)


def xywha_to_oc(boxes):
    """le90 boxes -> mmrotate ``oc``: ``a`` in ``(0, pi/2]`` (radians), ``w`` the side along ``a``."""
    boxes = normalize_xywha(boxes)
    xp = _xp(boxes)
    cx, cy, w, h, a = (boxes[..., i] for i in range(BOX_DIM))
    # a in (-pi/2, 0]: turn the frame by +90 deg, which swaps the roles of the sides;
    # a == -pi/2 is the same direction as +pi/2, so it keeps its sides
    turn = (a > -HALF_PI) & (a <= 0)
    angle = xp.where(turn, a + HALF_PI, xp.where(a <= -HALF_PI, a + math.pi, a))
    side_w = xp.where(turn, h, w)
    side_h = xp.where(turn, w, h)
    return xp.stack([cx, cy, side_w, side_h, angle], axis=-1)


def le135_to_xywha(boxes):
    """mmrotate ``le135`` boxes (``w >= h``, ``a`` in ``[-pi/4, 3pi/4)``) -> le90."""
    return normalize_xywha(boxes)


def xywha_to_le135(boxes):
    """le90 boxes -> mmrotate ``le135``: ``w >= h``, ``a`` in ``[-pi/4, 3pi/4)`` (radians)."""
    boxes = normalize_xywha(boxes)
    return _replace_angle(boxes, wrap_angle(boxes[..., 4], low=-math.pi / 4))


def le90_to_xywha(boxes):
    """mmrotate ``le90`` boxes are our convention; this only normalizes."""
    return normalize_xywha(boxes)


def xywhr_to_xywha(boxes):
    """Ultralytics ``xywhr`` (radians, ``a`` in ``[0, pi)`` after its regularization) -> le90."""
    return normalize_xywha(boxes)


def xywha_to_xywhr(boxes):
    """le90 boxes -> ultralytics ``xywhr``: ``w >= h``, ``a`` in ``[0, pi)`` radians."""
    boxes = normalize_xywha(boxes)
    return _replace_angle(boxes, wrap_angle(boxes[..., 4], low=0.0))


def snap_heading_to_axis(heading, angle, max_deviation: float | None = None):
    """Headings ``[...]`` (radians; NaN unknown) moved onto their box's long axis: ``a`` or ``a + pi``, whichever
    is nearer on the circle, wrapped to ``[-pi, pi)``. ``angle``: the le90 box angles ``[...]``.

    A heading is a vehicle's front, so it lies along the box's long side; a labelled or predicted heading off
    that axis is noise, except when it runs across the box (an annotator's w/h swap): with ``max_deviation``,
    headings further than that from the axis become NaN (unknown) instead of being flipped onto it arbitrarily.
    """
    xp = _xp(heading) if is_torch(heading) else np
    heading = heading if is_torch(heading) else np.asarray(heading, dtype=np.float64)
    angle = angle if is_torch(angle) else np.asarray(angle, dtype=np.float64)
    offset = wrap_angle(heading - angle, low=-math.pi / 2, period=math.pi)  # signed deviation from the axis
    snapped = wrap_angle(heading - offset, low=-math.pi, period=2 * math.pi)
    if max_deviation is not None:
        snapped = xp.where(xp.abs(offset) <= max_deviation, snapped, xp.full_like(snapped, float("nan")))
    return snapped


def rolabelimg_to_xywha(boxes):
    """roLabelImg / UAV-ROD ``robndbox`` rows ``[cx, cy, w, h, angle_rad]`` -> (le90 boxes, heading).

    roLabelImg stores the clockwise rotation (radians, y-down) of the ``w`` edge from +x; UAV-ROD uses it as
    the vehicle heading, possibly beyond pi. The heading is returned separately, snapped to the le90 box's
    axis (:func:`snap_heading_to_axis`) and wrapped to ``[-pi, pi)``, so ``a`` never leaves the le90 range; a
    box drawn with ``w < h`` (its stored angle runs across the vehicle) gets heading NaN.
    """
    boxes = _as_float_array(boxes)
    _check_last_dim(boxes, BOX_DIM, "rolabelimg_to_xywha")
    le90 = normalize_xywha(boxes)
    # after a w/h swap the stored angle runs across the vehicle: no front can be read from it (NaN)
    return le90, snap_heading_to_axis(boxes[..., 4], le90[..., 4], max_deviation=math.pi / 4)


def dlr3k_to_xywha(rows, angle_sign: float = -1.0):
    """DLR-3K ``.samp`` geometry ``[..., 5]`` = ``[cx, cy, half_w, half_h, angle_deg]`` -> le90 boxes.

    ``size.width/size.height`` in DLR-3K are half-extents. The sign of its angle in y-down pixels is not
    documented; ``angle_sign=-1`` (the default) rotates by ``-angle``, as common loaders do.
    """
    rows = _as_float_array(rows)
    _check_last_dim(rows, BOX_DIM, "dlr3k_to_xywha")
    xp = _xp(rows)
    full = xp.stack([rows[..., 0], rows[..., 1], 2 * rows[..., 2], 2 * rows[..., 3],
                     angle_sign * rows[..., 4] * (math.pi / 180.0)], axis=-1)
    return normalize_xywha(full)


def heading_to_xywha_angle(heading):
    """The le90 box angle of a long side pointing along ``heading`` (radians, ``[-pi, pi)``)."""
    return wrap_angle(heading)


def clip_polys_to_rect(polys, x_min: float, y_min: float, x_max: float, y_max: float):
    """Clip convex polygons ``[N, P, 2]`` to the rectangle ``[x_min, x_max] x [y_min, y_max]``.

    Returns ``(clipped [N, Q, 2] float64, area_clipped [N], area [N])``: each clipped polygon's vertices,
    padded to a common ``Q`` by repeating its last vertex (so :func:`poly_to_xywha` fits it unchanged); a
    polygon entirely outside gives ``Q`` copies of its clamped centre and area 0. Numpy only (shapely's
    vectorized ``clip_by_rect``, imported here so that importing this module stays light).
    """
    import shapely

    polys = np.asarray(polys, dtype=np.float64)
    if polys.ndim != 3 or polys.shape[-1] != POINT_DIM:
        raise ValueError(f"clip_polys_to_rect: expected shape [N, P, 2], got {polys.shape}")
    n = len(polys)
    if n == 0:
        return np.zeros((0, polys.shape[1], POINT_DIM)), np.zeros(0), np.zeros(0)
    x, y = polys[..., 0], polys[..., 1]
    area = np.abs(np.sum(x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y, axis=1)) / 2
    # zero-area polygons (e.g. DOTA's patch-edge labels) make GEOS reject the ring: they clip to area 0
    solid = np.flatnonzero(area > 0)
    closed = np.concatenate([polys[solid], polys[solid, :1]], axis=1)
    clipped = shapely.clip_by_rect(shapely.polygons(closed), x_min, y_min, x_max, y_max)
    area_clipped = np.zeros(n)
    area_clipped[solid] = shapely.area(clipped)
    # exterior rings only: a convex polygon clipped by a rectangle is one convex polygon (or empty)
    rings = shapely.get_exterior_ring(clipped)
    coords, solid_index = shapely.get_coordinates(rings, return_index=True)
    index = solid[solid_index]
    counts = np.bincount(index, minlength=n)
    q = max(int(counts.max()) - 1, polys.shape[1]) if len(coords) else polys.shape[1]
    out = np.empty((n, q, POINT_DIM))
    centre = polys.mean(axis=1)
    out[:] = np.clip(centre, [x_min, y_min], [x_max, y_max])[:, None, :]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for i in np.flatnonzero(counts > 1):
        ring = coords[starts[i]:starts[i] + counts[i] - 1]  # drop the closing vertex
        out[i, :len(ring)] = ring
        out[i, len(ring):] = ring[-1]
    return out, area_clipped, area
