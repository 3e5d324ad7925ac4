"""Rotated NMS on the GPU: Triton kernels for the suppression bitmask and the greedy reduction.

Same semantics as :mod:`obbdet.nms` (which dispatches here for CUDA tensors) and its CPU path
:mod:`obbdet.nms_cpu`: greedy by descending score (stable for ties), suppress when ``IoU > iou_threshold``,
exact rotated-rectangle intersection.

1. Boxes are ranked by score (stable sort) and, separately, put in a spatial order (Morton code of the
   centres) and cut into blocks of :data:`BLOCK` boxes. Only pairs of blocks whose axis-aligned bounds
   overlap are launched (the tile list comes from one small bounds test on the device).
2. ``_mask_kernel``: one program per active tile computes the exact intersection of its ``BLOCK x BLOCK``
   box pairs in registers (a boundary integral: each box's edges clipped Liang-Barsky in the other box's
   frame, edges shared by both boxes counted once; branch-free, fixed shapes) at the CPU path's tolerances
   (right-angle snapping, round-off floor), and sets, for each pair with ``IoU > threshold``, bit ``hi`` of
   row ``lo`` of a score-ordered bitmask ``[N, ceil(N/64)]`` int64 (``lo < hi`` the pair's ranks). This is the
   blocked bitmask scheme of torchvision's axis-aligned CUDA NMS, with spatial blocking so that a dense
   scene of 20k boxes computes a few thousand tiles instead of all ``(N/BLOCK)^2``.
3. ``_greedy_kernel``: a single program walks the ranks in chunks of 64 (one mask word): the chunk's
   survivors are resolved from its diagonal word by a fixed-point iteration of bit operations, then the
   kept rows are OR-ed into the "removed" words of all later chunks. It runs on the device from start to
   end: the host syncs only to size the tile list and to read the kept indices back.

The kernels run under ``TRITON_INTERPRET=1`` on CPU tensors too (set before this module is imported), which
is how the tests check them against the CPU path on machines without a GPU.

Computation is in float64 for float64 boxes and in float32 otherwise, with coordinates relative to the pair's
centres (no precision loss on large images), at the CPU path's tolerances (``obbdet.nms_cpu.TOL_REL_*``).
This module imports :mod:`obbdet.nms_cpu` only, never the dispatcher :mod:`obbdet.nms` (no import cycle).
"""
from __future__ import annotations

import contextlib
import logging

import torch

from obbdet.boxes import BOX_DIM, xywha_to_aabb
from obbdet.nms_cpu import nms_rotated_numpy, tolerance_for

logger = logging.getLogger(__name__)

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: obbdet.nms falls back to the CPU path
    triton = None
    tl = None

__all__ = ["nms_rotated_triton", "triton_available", "BLOCK", "MAX_MASK_BYTES"]

BLOCK = 32  # boxes per side of a mask tile (BLOCK x BLOCK pairs per program)
WORD_BITS = 64  # bits per mask word (int64)
REDUCE_COLUMN_WORDS = 64  # mask words per row read at once by the greedy reduction
# 8 warps: 4 pairs per thread keeps the float32 mask kernel at ~115 registers without spills (sm_90, ptxas -v);
# float64 spills a little at this size but is the rare path.
MASK_NUM_WARPS = 8
# The bitmask takes N^2 / 8 bytes (50 MB for 20k boxes). Beyond this the CPU path runs instead (with a warning).
MAX_MASK_BYTES = 4 << 30
MORTON_BITS = 16  # quantization of the centres per axis for the spatial order


def triton_available() -> bool:
    """True when triton imported (it ships with the CUDA builds of torch)."""
    return triton is not None


if triton is not None:

    @triton.jit
    def _edge_piece(x0, y0, x1, y1, half_w, half_h, tol, KEEP_SHARED: tl.constexpr):
        """Clip edge ``(x0, y0) -> (x1, y1)`` to the centred box ``|x| <= half_w, |y| <= half_h``.

        Returns (``cross(start, end)``, displacement x, displacement y) of the clipped piece (zeros when
        empty). An edge parallel to the box lying on its boundary line (within ``tol``) is kept when
        ``KEEP_SHARED`` and it runs the same way as the box's own edge there, so a shared boundary piece is
        counted once (by the first box's edges) and boxes touching from outside share none.
        """
        ex = x1 - x0
        ey = y1 - y0
        lo = tl.zeros_like(x0)
        hi = lo + 1.0
        # slab |x| <= half_w
        par_x = ex == 0
        step = tl.where(par_x, 1.0, ex)
        t1 = (-half_w - x0) / step
        t2 = (half_w - x0) / step
        lo = tl.where(par_x, lo, tl.maximum(lo, tl.minimum(t1, t2)))
        hi = tl.where(par_x, hi, tl.minimum(hi, tl.maximum(t1, t2)))
        in_x = tl.abs(x0) < half_w - tol
        if KEEP_SHARED:
            in_x = in_x | ((tl.abs(x0 - half_w) <= tol) & (ey > 0)) | ((tl.abs(x0 + half_w) <= tol) & (ey < 0))
        # slab |y| <= half_h
        par_y = ey == 0
        step = tl.where(par_y, 1.0, ey)
        t1 = (-half_h - y0) / step
        t2 = (half_h - y0) / step
        lo = tl.where(par_y, lo, tl.maximum(lo, tl.minimum(t1, t2)))
        hi = tl.where(par_y, hi, tl.minimum(hi, tl.maximum(t1, t2)))
        in_y = tl.abs(y0) < half_h - tol
        if KEEP_SHARED:
            in_y = in_y | ((tl.abs(y0 - half_h) <= tol) & (ex < 0)) | ((tl.abs(y0 + half_h) <= tol) & (ex > 0))
        ok = (in_x | (ex != 0)) & (in_y | (ey != 0)) & (hi > lo)
        xs = x0 + lo * ex
        ys = y0 + lo * ey
        xe = x0 + hi * ex
        ye = y0 + hi * ey
        zero = tl.zeros_like(x0)
        return tl.where(ok, xs * ye - xe * ys, zero), tl.where(ok, xe - xs, zero), tl.where(ok, ye - ys, zero)

    @triton.jit
    def _box_pieces(cx, cy, hw, hh, cos_t, sin_t, sign, clip_w, clip_h, tol, KEEP_SHARED: tl.constexpr):
        """Summed clipped edge pieces of a box with centre ``(cx, cy)``, half sizes ``hw, hh``, turned by
        ``(cos_t, sign * sin_t)`` in the frame of a centred axis-aligned box ``clip_w x clip_h`` (halves)."""
        pu_x = hw * cos_t  # half long side along the box's own axis, in the clip box's frame
        pu_y = sign * hw * sin_t
        pv_x = -sign * hh * sin_t  # half short side
        pv_y = hh * cos_t
        # corners in xywha_to_poly order: (-u-v), (+u-v), (+u+v), (-u+v)
        x0 = cx - pu_x - pv_x
        y0 = cy - pu_y - pv_y
        x1 = cx + pu_x - pv_x
        y1 = cy + pu_y - pv_y
        x2 = cx + pu_x + pv_x
        y2 = cy + pu_y + pv_y
        x3 = cx - pu_x + pv_x
        y3 = cy - pu_y + pv_y
        c0, dx0, dy0 = _edge_piece(x0, y0, x1, y1, clip_w, clip_h, tol, KEEP_SHARED)
        c1, dx1, dy1 = _edge_piece(x1, y1, x2, y2, clip_w, clip_h, tol, KEEP_SHARED)
        c2, dx2, dy2 = _edge_piece(x2, y2, x3, y3, clip_w, clip_h, tol, KEEP_SHARED)
        c3, dx3, dy3 = _edge_piece(x3, y3, x0, y0, clip_w, clip_h, tol, KEEP_SHARED)
        return c0 + c1 + c2 + c3, dx0 + dx1 + dx2 + dx3, dy0 + dy1 + dy2 + dy3

    @triton.jit
    def _mask_kernel(box_ptr, rank_ptr, label_ptr, tile_ptr, thr_ptr, mask_ptr, n, n_words, tol_rel,
                     BLOCK_SIZE: tl.constexpr, HAS_LABELS: tl.constexpr, BOX_STRIDE: tl.constexpr):
        """One active tile: set mask bits for its pairs with ``IoU > threshold`` (see the module notes).

        box_ptr: ``[N, 5]`` boxes in spatial order; rank_ptr: ``[N]`` int64 score rank of each;
        label_ptr: ``[N]`` int64 classes (when HAS_LABELS); tile_ptr: ``[T, 2]`` int32 (row block, col block);
        thr_ptr: ``[1]`` threshold; mask_ptr: ``[N, n_words]`` int64, zero-initialized, rows and bits by rank.
        """
        tile = tl.program_id(0)
        row_block = tl.load(tile_ptr + 2 * tile)
        col_block = tl.load(tile_ptr + 2 * tile + 1)
        offs = tl.arange(0, BLOCK_SIZE)
        rows = row_block * BLOCK_SIZE + offs
        cols = col_block * BLOCK_SIZE + offs
        row_ok = rows < n
        col_ok = cols < n
        rows64 = rows.to(tl.int64) * BOX_STRIDE
        cols64 = cols.to(tl.int64) * BOX_STRIDE
        # padding rows/cols load as zero-size boxes, which never suppress
        cx_r = tl.load(box_ptr + rows64, mask=row_ok, other=0.0)[:, None]
        cy_r = tl.load(box_ptr + rows64 + 1, mask=row_ok, other=0.0)[:, None]
        w_r = tl.load(box_ptr + rows64 + 2, mask=row_ok, other=0.0)[:, None]
        h_r = tl.load(box_ptr + rows64 + 3, mask=row_ok, other=0.0)[:, None]
        a_r = tl.load(box_ptr + rows64 + 4, mask=row_ok, other=0.0)[:, None]
        cx_c = tl.load(box_ptr + cols64, mask=col_ok, other=0.0)[None, :]
        cy_c = tl.load(box_ptr + cols64 + 1, mask=col_ok, other=0.0)[None, :]
        w_c = tl.load(box_ptr + cols64 + 2, mask=col_ok, other=0.0)[None, :]
        h_c = tl.load(box_ptr + cols64 + 3, mask=col_ok, other=0.0)[None, :]
        a_c = tl.load(box_ptr + cols64 + 4, mask=col_ok, other=0.0)[None, :]
        threshold = tl.load(thr_ptr)

        ca = tl.cos(a_r)
        sa = tl.sin(a_r)
        cb = tl.cos(a_c)
        sb = tl.sin(a_c)
        hwa = tl.abs(w_r) * 0.5
        hha = tl.abs(h_r) * 0.5
        hwb = tl.abs(w_c) * 0.5
        hhb = tl.abs(h_c) * 0.5
        dx = cx_c - cx_r  # [BLOCK, BLOCK]: B's centre relative to A's
        dy = cy_c - cy_r
        scale = tl.maximum(tl.maximum(hwa, hha), tl.maximum(hwb, hhb))
        tol = tol_rel * scale
        # relative rotation, snapped to a multiple of 90 degrees when within tol_rel
        cos_t = ca * cb + sa * sb
        sin_t = sa * cb - ca * sb
        snap_s = tl.abs(sin_t) <= tol_rel
        snap_c = tl.abs(cos_t) <= tol_rel
        one = tl.full(cos_t.shape, 1.0, cos_t.dtype)
        zero = tl.zeros_like(cos_t)
        cos_sign = tl.where(cos_t >= 0, one, -one)
        sin_sign = tl.where(sin_t >= 0, one, -one)
        cos_s = tl.where(snap_s, cos_sign, tl.where(snap_c, zero, cos_t))
        sin_s = tl.where(snap_c, sin_sign, tl.where(snap_s, zero, sin_t))
        # A's centre in B's frame and B's centre in A's frame
        ua = -(cb * dx + sb * dy)
        va = sb * dx - cb * dy
        ub = ca * dx + sa * dy
        vb = -sa * dx + ca * dy
        cross_a, _dxa, _dya = _box_pieces(ua, va, hwa, hha, cos_s, sin_s, 1.0, hwb, hhb, tol, True)
        cross_b, disp_x, disp_y = _box_pieces(ub, vb, hwb, hhb, cos_s, sin_s, -1.0, hwa, hha, tol, False)
        inter = 0.5 * (cross_a + cross_b - (ub * disp_y - vb * disp_x))
        inter = tl.where(inter <= tol_rel * scale * scale, zero, inter)
        area_a = w_r * h_r
        area_b = w_c * h_c
        inter = tl.minimum(inter, tl.minimum(area_a, area_b))
        union = area_a + area_b - inter
        iou = inter / tl.where(union > 0, union, one)  # union is 0 only for two zero-area boxes (inter 0)
        rank_r = tl.load(rank_ptr + rows, mask=row_ok, other=-1)[:, None]
        rank_c = tl.load(rank_ptr + cols, mask=col_ok, other=-1)[None, :]
        suppress = (iou > threshold) & (rank_r != rank_c) & (rank_r >= 0) & (rank_c >= 0)
        if HAS_LABELS:
            label_r = tl.load(label_ptr + rows, mask=row_ok, other=0)[:, None]
            label_c = tl.load(label_ptr + cols, mask=col_ok, other=0)[None, :]
            suppress = suppress & (label_r == label_c)
        lo = tl.minimum(rank_r, rank_c)
        hi = tl.maximum(rank_r, rank_c)
        bit = tl.full(lo.shape, 1, tl.int64) << (hi % 64)
        tl.atomic_or(mask_ptr + lo * n_words + hi // 64, bit, mask=suppress)

    @triton.jit
    def _greedy_kernel(mask_ptr, removed_ptr, keep_ptr, n, n_words, COLUMN_WORDS: tl.constexpr):
        """Single program: greedy NMS over the rank-ordered bitmask ``[n, n_words]`` (int64).

        removed_ptr: ``[n_words]`` int64 scratch, zero-initialized; keep_ptr: ``[n_words]`` int64 output,
        bit ``k`` of word ``c`` set when rank ``64 c + k`` is kept.
        """
        bits = tl.arange(0, 64)
        bits64 = bits.to(tl.int64)
        for c in range(0, n_words):
            row_ids = (c * 64 + bits).to(tl.int64)
            row_ok = row_ids < n
            diag = tl.load(mask_ptr + row_ids * n_words + c, mask=row_ok, other=0)
            removed = tl.load(removed_ptr + c, volatile=True)
            n_left = (n - c * 64).to(tl.int64)
            valid = tl.where(n_left >= 64, -1, (tl.full((), 1, tl.int64) << tl.minimum(n_left, 63)) - 1)
            # survivors of the chunk: fixed point of keep = ~removed & ~OR(diag[k] for kept k); the diagonal
            # word only has bits above its row, so at most 64 iterations, usually 2 or 3
            keep = ~removed & valid
            new_keep = ~removed & ~tl.reduce_or(tl.where(((keep >> bits64) & 1) != 0, diag, 0), 0) & valid
            while new_keep != keep:
                keep = new_keep
                new_keep = ~removed & ~tl.reduce_or(tl.where(((keep >> bits64) & 1) != 0, diag, 0), 0) & valid
            tl.store(keep_ptr + c, keep)
            kept_row = (((keep >> bits64) & 1) != 0) & row_ok
            for start in range(c + 1, n_words, COLUMN_WORDS):
                cols = start + tl.arange(0, COLUMN_WORDS)
                col_ok = cols < n_words
                tile = tl.load(mask_ptr + row_ids[:, None] * n_words + cols[None, :],
                               mask=kept_row[:, None] & col_ok[None, :], other=0)
                update = tl.reduce_or(tile, 0)
                old = tl.load(removed_ptr + cols, mask=col_ok, other=0, volatile=True)
                tl.store(removed_ptr + cols, old | update, mask=col_ok)
            tl.debug_barrier()  # the next chunk reads removed words written above


def _spread_bits_16(v: torch.Tensor) -> torch.Tensor:
    """Interleave zeros between the low 16 bits of ``v`` (int64) for a Morton code."""
    v = (v | (v << 8)) & 0x00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F
    v = (v | (v << 2)) & 0x33333333
    return (v | (v << 1)) & 0x55555555


def _spatial_order(boxes: torch.Tensor) -> torch.Tensor:
    """Permutation ``[N]`` putting boxes ``[N, 5]`` in Morton (Z-curve) order of their centres."""
    centres = boxes[:, :2].double()
    low = centres.amin(dim=0)
    span = (centres.amax(dim=0) - low).amax().clamp_min(1e-300)
    cells = ((centres - low) * (((1 << MORTON_BITS) - 1) / span)).long().clamp_(0, (1 << MORTON_BITS) - 1)
    code = _spread_bits_16(cells[:, 0]) | (_spread_bits_16(cells[:, 1]) << 1)
    return torch.argsort(code)


def _active_tiles(boxes: torch.Tensor, block: int) -> torch.Tensor:
    """``[T, 2]`` int32 (row block, col block), row <= col, of blocks of ``boxes`` (spatial order) whose
    axis-aligned bounds overlap. Zero-area boxes never suppress, so they do not widen their block's bounds."""
    n = boxes.shape[0]
    n_blocks = -(-n // block)
    aabb = xywha_to_aabb(boxes).double()
    positive = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    inf = float("inf")
    low = torch.full((n_blocks * block, 2), inf, dtype=aabb.dtype, device=boxes.device)
    high = torch.full((n_blocks * block, 2), -inf, dtype=aabb.dtype, device=boxes.device)
    low[:n] = torch.where(positive[:, None], aabb[:, :2], inf)
    high[:n] = torch.where(positive[:, None], aabb[:, 2:], -inf)
    low = low.view(n_blocks, block, 2).amin(dim=1)
    high = high.view(n_blocks, block, 2).amax(dim=1)
    overlap = ((low[:, None, 0] < high[None, :, 0]) & (low[None, :, 0] < high[:, None, 0])
               & (low[:, None, 1] < high[None, :, 1]) & (low[None, :, 1] < high[:, None, 1]))
    overlap = torch.triu(overlap)
    return torch.nonzero(overlap).to(torch.int32).contiguous()


def nms_rotated_triton(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, labels=None,
                       max_output: int | None = None) -> torch.Tensor:
    """Greedy rotated NMS with the Triton kernels (inputs validated by :func:`obbdet.nms.nms_rotated`).

    Args:
        boxes: ``[N, 5]`` xywha tensor (CUDA, or CPU under ``TRITON_INTERPRET=1``); float64 is computed in
            float64, anything else in float32.
        scores: ``[N]``; labels: optional ``[N]`` integer classes (different classes never suppress).
        iou_threshold: suppress when ``IoU > iou_threshold``; max_output: keep at most this many.

    Returns:
        ``[K]`` int64 indices into ``boxes``, by descending score (stable for ties), on the boxes' device.
    """
    if triton is None:
        raise RuntimeError("nms_rotated_triton: triton is not installed")
    device = boxes.device
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    n_words = -(-n // WORD_BITS)
    if n * n_words * 8 > MAX_MASK_BYTES:
        logger.warning("nms_rotated_triton: %d boxes need a %.1f GiB bitmask (> MAX_MASK_BYTES); running the CPU "
                       "path instead", n, n * n_words * 8 / 2 ** 30)
        keep = nms_rotated_numpy(boxes.detach().double().cpu().numpy(), scores.detach().double().cpu().numpy(),
                                 iou_threshold, None if labels is None else labels.detach().cpu().numpy(),
                                 max_output, tolerance_for(boxes.dtype))
        return torch.from_numpy(keep).to(device)
    compute = torch.float64 if boxes.dtype == torch.float64 else torch.float32
    tol_rel = tolerance_for(compute)
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        order = torch.sort(scores.detach(), descending=True, stable=True).indices  # rank -> input index
        ranked = boxes.detach()[order].to(compute)
        spatial = _spatial_order(ranked)  # spatial position -> rank
        spatial_boxes = ranked[spatial].contiguous()
        ranks = spatial.to(torch.int64).contiguous()
        spatial_labels = (labels.detach()[order][spatial].to(torch.int64).contiguous() if labels is not None
                          else ranks)  # unused placeholder pointer when there are no labels
        tiles = _active_tiles(spatial_boxes, BLOCK)
        mask = torch.zeros((n, n_words), dtype=torch.int64, device=device)
        threshold = torch.full((1,), iou_threshold, dtype=compute, device=device)  # a fill, not a host copy
        if tiles.shape[0]:
            # no fused multiply-adds: the CPU path's round-off, and exact zeros for axis-parallel edges
            _mask_kernel[(tiles.shape[0],)](spatial_boxes, ranks, spatial_labels, tiles, threshold, mask, n,
                                            n_words, tol_rel, BLOCK_SIZE=BLOCK, HAS_LABELS=labels is not None,
                                            BOX_STRIDE=BOX_DIM, num_warps=MASK_NUM_WARPS, enable_fp_fusion=False)
        removed = torch.zeros(n_words, dtype=torch.int64, device=device)
        keep_words = torch.empty(n_words, dtype=torch.int64, device=device)
        _greedy_kernel[(1,)](mask, removed, keep_words, n, n_words, COLUMN_WORDS=REDUCE_COLUMN_WORDS, num_warps=4,
                             enable_fp_fusion=False)
        shifts = torch.arange(WORD_BITS, dtype=torch.int64, device=device)
        kept = ((keep_words[:, None] >> shifts) & 1).flatten()[:n].bool()
        keep = order[kept]
    return keep[:max_output] if max_output is not None else keep
