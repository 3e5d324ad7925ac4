"""Sparse search for pairs of overlapping axis-aligned boxes (AABBs), without an ``N x M`` matrix.

One search serves every caller that needs candidate pairs before an exact rotated intersection: the sparse
IoU (:func:`obbdet.iou.box_iou_rotated_sparse`), rotated NMS (pairs within one class, in rank order) and the
evaluation (ground truth against detections of the same image and class, touching bounds included). Bounds
are numpy ``[x_min, y_min, x_max, y_max]`` rows; only index bookkeeping happens here.

Algorithm: a uniform grid whose cell is about the boxes' largest extent (twice their 90% quantile at most). A
*small* box (extent at most one cell) is filed once, under the cell of its minimum corner (its home), in one
sorted array of integer keys ``(group, row, column)``. A small box overlapping a query box has its home at most
one cell before the query's minimum corner, so a query looks up each grid row it reaches as one contiguous run
of keys (two binary searches per row), and every filed box is found at most once per query. Groups (classes,
images) are the outermost part of the key, so pairs across groups are never formed and no coordinate offsets
are needed; where the boxes of a group are sparse, rows are several cells high, so that a query searches one
or two rows (a sweep along x) instead of one per cell. Pairs involving *big* boxes (extent above the cell)
come from the big boxes querying the small ones, and pairs of two big boxes from the same search run on the
big boxes alone, with a cell of their own. Within one set, a small box only looks at homes after its own
(row-major, then by position in the sorted keys), so each pair is found exactly once, with no deduplication.
"""
from __future__ import annotations

import numpy as np

__all__ = ["aabb_overlap_pairs"]

# The grid cell is CELL_GROWTH times this quantile of the boxes' extents, or the largest extent if smaller: every
# box is small when the sizes are alike (one search, no second level), few are big otherwise.
GRID_CELL_QUANTILE = 0.9
CELL_GROWTH = 2.0
# Sets with at most this many possible pairs are tested directly.
BRUTE_FORCE_PAIRS = 4096
# A query box reaching more grid rows than this (a box far larger than its neighbours) is tested directly
# against the filed boxes, which keeps the row expansion bounded whatever the sizes.
MAX_QUERY_ROWS = 1024
# Rows per block of a direct test (bounds the boolean temporaries).
DIRECT_BLOCK_ROWS = 256
# Grid cells per axis at most, also bounded so that (group, row, column) keys fit in int64.
MAX_CELLS_PER_AXIS = 1 << 24
# Group ids at or above this (or negative) are renumbered densely first.
MAX_GROUP_ID = 1 << 31
# Rows are about sqrt(ROW_BALANCE / density) cells high (density: filed boxes per cell and group), which balances
# the binary searches per row against the candidates a taller row brings.
ROW_BALANCE = 4.0

_EMPTY = np.zeros(0, dtype=np.int64)


def _expand_ranges(starts: np.ndarray, counts: np.ndarray):
    """Flatten ranges ``[starts[k], starts[k] + counts[k])``: (owner ``k`` ``[T]``, value ``[T]``)."""
    owner = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts
    return owner, np.arange(len(owner)) + np.repeat(starts - first, counts)


def _overlapping(b1: np.ndarray, b2: np.ndarray, i: np.ndarray, j: np.ndarray, touching: bool) -> np.ndarray:
    """Mask ``[K]``: bounds ``b1[:, i]`` and ``b2[:, j]`` (``[4, N]`` layout) overlap (or touch, when ``touching``)."""
    x0_1, y0_1, x1_1, y1_1 = b1
    x0_2, y0_2, x1_2, y1_2 = b2
    if touching:
        keep = x0_1[i] <= x1_2[j]
        keep &= x0_2[j] <= x1_1[i]
        keep &= y0_1[i] <= y1_2[j]
        keep &= y0_2[j] <= y1_1[i]
    else:
        keep = x0_1[i] < x1_2[j]
        keep &= x0_2[j] < x1_1[i]
        keep &= y0_1[i] < y1_2[j]
        keep &= y0_2[j] < y1_1[i]
    return keep


def _exact(b1, b2, g1, g2, i, j, touching):
    """The pairs ``(i, j)`` whose bounds overlap and whose groups agree."""
    keep = _overlapping(b1, b2, i, j, touching)
    if g1 is not None:
        keep &= g1[i] == g2[j]
    return i[keep], j[keep]


def _direct(b1, b2, g1, g2, sel1, sel2, touching):
    """Pairs between boxes ``sel1`` of set 1 and ``sel2`` of set 2, every combination tested (blocks of rows)."""
    found1, found2 = [], []
    for start in range(0, len(sel1), DIRECT_BLOCK_ROWS):
        rows = sel1[start:start + DIRECT_BLOCK_ROWS]
        i = np.repeat(rows, len(sel2))
        j = np.tile(sel2, len(rows))
        i, j = _exact(b1, b2, g1, g2, i, j, touching)
        found1.append(i)
        found2.append(j)
    if not found1:
        return _EMPTY, _EMPTY
    return np.concatenate(found1), np.concatenate(found2)


class _Grid:
    """Integer cells over the bounds of one level's boxes (both sets): columns one cell wide, rows a whole
    number of cells high (:meth:`file`), and the filed boxes' sorted keys."""

    def __init__(self, bounds: list[np.ndarray], cell: float, n_groups: int):
        x0 = min(float(b[0].min()) for b in bounds)
        y0 = min(float(b[1].min()) for b in bounds)
        # Half spans: finite for any finite bounds, where a full span (1e308 - -1e308) would overflow to inf
        # and turn every cell index into NaN. Halving is exact, so for ordinary boxes every index below is the
        # one the full-span arithmetic gives.
        half_x = max(float(b[2].max()) for b in bounds) * 0.5 - x0 * 0.5
        half_y = max(float(b[3].max()) for b in bounds) * 0.5 - y0 * 0.5
        max_cells = min(MAX_CELLS_PER_AXIS, int((2.0 ** 62 / max(n_groups, 1)) ** 0.5) - 2)
        self.origin_x, self.origin_y = x0, y0
        self.cell = max(cell, max(half_x, half_y) / max_cells * 2.0, np.finfo(np.float64).tiny)
        self.half_cell = self.cell * 0.5
        self.ncols = self._index(half_x, self.half_cell, max_cells) + 1
        self.nrows = self._index(half_y, self.half_cell, max_cells) + 1  # in cells
        # (group, row, column) keys: rows are at least a cell high, so there are at most this many per group
        self.group_stride = self.ncols * self.nrows
        # area per group in cells, for the filed boxes' density
        self.group_cells = n_groups * max(half_x / self.half_cell, 1.0) * max(half_y / self.half_cell, 1.0)
        self.row = self.cell

    @staticmethod
    def _index(half_offset, half_step, top: int):
        """``floor(offset / step)`` from halved operands, clipped to ``[0, top]`` before the int64 cast: a
        float beyond int64 (or NaN) never becomes a garbage key."""
        index = np.floor(np.asarray(half_offset, dtype=np.float64) / half_step)
        index = np.clip(np.nan_to_num(index, nan=0.0, posinf=top, neginf=0.0), 0, top).astype(np.int64)
        return int(index) if index.ndim == 0 else index

    def file(self, b: np.ndarray, g: np.ndarray | None):
        """Sort the boxes ``b [4, K]`` by home key. Returns (order ``[K]``, sorted keys ``[K]``).

        Rows are made taller where the filed boxes are sparse (per group): a query then looks up fewer rows
        (two binary searches each) for about as many candidates; with few boxes per group the search becomes a
        sweep along x.
        """
        density = b.shape[1] / self.group_cells  # filed boxes per cell and group
        cells_per_row = int(np.sqrt(ROW_BALANCE / max(density, 1e-12)))
        # the row height holds until the next filing: search() reads the boxes filed last
        self.row = self.cell * min(max(cells_per_row, 1), self.group_stride // self.ncols)
        home = self._rows(b[1]) * self.ncols + self._cols(b[0])
        if g is not None:
            home += g * self.group_stride
        order = np.argsort(home, kind="stable")
        return order, home[order]

    def _cols(self, x: np.ndarray) -> np.ndarray:
        return self._index(x * 0.5 - self.origin_x * 0.5, self.half_cell, self.ncols - 1)

    def _rows(self, y: np.ndarray) -> np.ndarray:
        return self._index(y * 0.5 - self.origin_y * 0.5, self.row * 0.5, self.group_stride // self.ncols - 1)

    def search(self, q: np.ndarray, gq: np.ndarray | None, order: np.ndarray, keys: np.ndarray,
               own: np.ndarray | None = None):
        """Candidate pairs (query ``[T]``, filed box ``[T]``) of query boxes ``q [4, Q]`` with the boxes filed
        last (``order``/``keys`` from :meth:`file`), and the query boxes that reach too many rows (direct).

        ``own`` ``[Q]``: for query boxes that are filed themselves, their position in ``keys`` (else -1). They
        look only at homes after their own: from their own row on, and in their home cell only at later
        positions, so two filed boxes meet once and no box meets itself.
        """
        reach = self.cell * (1.0 + 1e-9)  # a relative margin keeps rounding from moving a home out of reach
        ix1 = self._cols(q[2])
        iy1 = self._rows(q[3])
        qx0 = np.maximum(self._cols(q[0] - reach), 0)
        qy0 = np.maximum(self._rows(q[1] - reach), 0)
        if own is not None:
            filed = own >= 0
            qy0 = np.where(filed, self._rows(q[1]), qy0)
        rows = iy1 - qy0 + 1
        huge = rows > MAX_QUERY_ROWS
        if huge.any():
            rows = np.where(huge, 0, rows)
        # queries in key order: binary searches for nearby needles are several times faster than for random ones
        start = qy0 * self.ncols + qx0
        if gq is not None:
            start += gq * self.group_stride
        by_key = np.argsort(start)
        query, row = _expand_ranges(qy0[by_key], rows[by_key])
        query = by_key[query]
        base = row * self.ncols
        if gq is not None:
            base += gq[query] * self.group_stride
        lo = np.searchsorted(keys, base + qx0[query], side="left")
        if own is not None:
            lo = np.where(filed[query] & (row == qy0[query]), own[query] + 1, lo)
        hi = np.searchsorted(keys, base + ix1[query], side="right")
        entry, pos = _expand_ranges(lo, hi - lo)
        return query[entry], order[pos], np.flatnonzero(huge)


def _extent(b: np.ndarray) -> np.ndarray:
    return np.maximum(b[2] - b[0], b[3] - b[1])


def _quantile_cell(extents: np.ndarray) -> float:
    rank = int(GRID_CELL_QUANTILE * (len(extents) - 1))
    return min(float(extents.max()), CELL_GROWTH * float(np.partition(extents, rank)[rank]))


def _take(g, idx):
    return None if g is None else g[idx]


def _pairs_within(b, g, n_groups, touching, cell):
    """Pairs ``(i, j)``, ``i < j``, of boxes ``b [4, N]`` (same group when ``g``), as local indices."""
    n = b.shape[1]
    if n * (n - 1) // 2 <= BRUTE_FORCE_PAIRS:
        i, j = np.triu_indices(n, k=1)
        return _exact(b, b, g, g, i.astype(np.int64), j.astype(np.int64), touching)
    extent = _extent(b)
    grid = _Grid([b], _quantile_cell(extent) if cell is None else cell, n_groups)
    big = extent > grid.cell
    small = np.flatnonzero(~big)
    order, keys = grid.file(b[:, small], _take(g, small))
    own = np.full(n, -1, dtype=np.int64)
    own[small[order]] = np.arange(len(small))
    a, c, huge = grid.search(b, g, order, keys, own)
    a, c = _exact(b, b, g, g, a, small[c], touching)
    parts_i, parts_j = [np.minimum(a, c)], [np.maximum(a, c)]
    if len(huge):  # (huge, small) pairs, tested directly
        a, c = _direct(b, b, g, g, huge, small, touching)
        parts_i.append(np.minimum(a, c))
        parts_j.append(np.maximum(a, c))
    bigs = np.flatnonzero(big)
    if len(bigs) > 1:
        bi, bj = _pairs_within(b[:, bigs], _take(g, bigs), n_groups, touching, None)
        parts_i.append(bigs[bi])
        parts_j.append(bigs[bj])
    return np.concatenate(parts_i), np.concatenate(parts_j)


def _pairs_between(b1, g1, b2, g2, n_groups, touching, cell):
    """Pairs ``(i, j)`` of boxes ``b1 [4, N]`` and ``b2 [4, M]`` (same group when grouped), as local indices."""
    n1, n2 = b1.shape[1], b2.shape[1]
    if n1 == 0 or n2 == 0:
        return _EMPTY, _EMPTY
    if n1 * n2 <= BRUTE_FORCE_PAIRS:
        return _direct(b1, b2, g1, g2, np.arange(n1), np.arange(n2), touching)
    extent1, extent2 = _extent(b1), _extent(b2)
    if cell is None:
        cell = _quantile_cell(np.concatenate([extent1, extent2]))
    grid = _Grid([b1, b2], cell, n_groups)
    big1, big2 = extent1 > grid.cell, extent2 > grid.cell
    small1, small2 = np.flatnonzero(~big1), np.flatnonzero(~big2)
    bigs1, bigs2 = np.flatnonzero(big1), np.flatnonzero(big2)
    # every box of set 1 against the small boxes of set 2
    order, keys = grid.file(b2[:, small2], _take(g2, small2))
    i, j, huge = grid.search(b1, g1, order, keys)
    i, j = _exact(b1, b2, g1, g2, i, small2[j], touching)
    parts1, parts2 = [i], [j]
    if len(huge):
        i, j = _direct(b1, b2, g1, g2, huge, small2, touching)
        parts1.append(i)
        parts2.append(j)
    # the big boxes of set 2 against the small boxes of set 1
    if len(bigs2) and len(small1):
        order, keys = grid.file(b1[:, small1], _take(g1, small1))
        j, i, huge = grid.search(b2[:, bigs2], _take(g2, bigs2), order, keys)
        i, j = _exact(b1, b2, g1, g2, small1[i], bigs2[j], touching)
        parts1.append(i)
        parts2.append(j)
        if len(huge):
            j, i = _direct(b2, b1, g2, g1, bigs2[huge], small1, touching)
            parts1.append(i)
            parts2.append(j)
    # big against big, with a cell of their own
    if len(bigs1) and len(bigs2):
        i, j = _pairs_between(b1[:, bigs1], _take(g1, bigs1), b2[:, bigs2], _take(g2, bigs2), n_groups, touching,
                              None)
        parts1.append(bigs1[i])
        parts2.append(bigs2[j])
    return np.concatenate(parts1), np.concatenate(parts2)


def _bounds(aabb, touching: bool):
    """``[4, N]`` float64 bounds and the indices of the rows that can overlap anything (None: all of them)."""
    b = np.ascontiguousarray(np.asarray(aabb, dtype=np.float64).reshape(-1, 4).T)  # 1-D gathers beat row gathers
    wide = (b[2] >= b[0]) & (b[3] >= b[1]) if touching else (b[2] > b[0]) & (b[3] > b[1])
    valid = np.isfinite(b).all(0) & wide
    if valid.all():
        return b, None
    index = np.flatnonzero(valid)
    return np.ascontiguousarray(b[:, index]), index


def _select_groups(groups, index, n):
    g = np.asarray(groups).reshape(-1)
    if g.shape != (n,):
        raise ValueError(f"aabb_overlap_pairs: groups must have shape [{n}] to match the boxes, got {g.shape}")
    return g if index is None else g[index]


def aabb_overlap_pairs(aabb1, aabb2=None, groups1=None, groups2=None, *, touching: bool = False,
                       cell_size: float | None = None):
    """All index pairs of overlapping axis-aligned boxes, found through a uniform grid (module notes).

    Args:
        aabb1: ``[N, 4]`` ``[x_min, y_min, x_max, y_max]`` (numpy-compatible).
        aabb2: ``[M, 4]``, same layout; None: pairs within ``aabb1``.
        groups1, groups2: optional integer groups ``[N]``, ``[M]`` (classes, image and class, ...): only pairs
            of one group. Both or neither when ``aabb2`` is given; ``groups2`` unused without ``aabb2``.
        touching: False: bounds overlap with positive area (strict inequalities; boxes of zero width or height
            never match). True: closed bounds intersect (touching boxes and zero-size boxes match).
        cell_size: grid cell in pixels for the first level; default: the largest extent of the boxes, or twice
            their 90% quantile if smaller.

    Returns:
        ``(idx1 [K], idx2 [K])`` int64, in no particular order; with ``aabb2`` None, ``idx1 < idx2`` (each pair
        once). Boxes with non-finite bounds never match.
    """
    if cell_size is not None and not cell_size > 0:
        raise ValueError(f"aabb_overlap_pairs: cell_size must be positive, got {cell_size}")
    b1, index1 = _bounds(aabb1, touching)
    g1 = None if groups1 is None else _select_groups(groups1, index1, len(np.asarray(aabb1).reshape(-1, 4)))
    if aabb2 is None:
        b2, index2, g2 = b1, index1, g1
    else:
        if (groups1 is None) != (groups2 is None):
            raise ValueError("aabb_overlap_pairs: give groups for both box sets or for neither")
        b2, index2 = _bounds(aabb2, touching)
        g2 = None if groups2 is None else _select_groups(groups2, index2, len(np.asarray(aabb2).reshape(-1, 4)))
    n_groups = 1
    if g1 is not None:
        low = min(int(g1.min(initial=0)), int(g2.min(initial=0)))
        high = max(int(g1.max(initial=0)), int(g2.max(initial=0)))
        if low < 0 or high >= MAX_GROUP_ID:  # dense ids keep the (group, row, column) keys in int64
            ids, inverse = np.unique(np.concatenate([g1, g2]), return_inverse=True)
            g1, g2, n_groups = inverse[:len(g1)], inverse[len(g1):], len(ids)
        else:
            n_groups = high + 1
        g1, g2 = g1.astype(np.int64, copy=False), g2.astype(np.int64, copy=False)
    if aabb2 is None:
        i, j = _pairs_within(b1, g1, n_groups, touching, cell_size) if b1.shape[1] else (_EMPTY, _EMPTY)
    else:
        i, j = _pairs_between(b1, g1, b2, g2, n_groups, touching, cell_size)
    if index1 is not None:  # increasing: i < j is kept
        i = index1[i]
    if index2 is not None:
        j = index2[j]
    return i.astype(np.int64, copy=False), j.astype(np.int64, copy=False)
