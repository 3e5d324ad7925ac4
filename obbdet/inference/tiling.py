"""Cutting a (rescaled) image into overlapping tiles on the network's stride grid.

Tiles are windows ``[x0, x1) x [y0, y1)`` in network-scale (rescaled) pixels; offsets are multiples of the
network stride so that a tile computes what a whole-image pass computes there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_STRIDE = 128  # EfficientDet levels 3-7: inputs must be multiples of 2**7


@dataclass(frozen=True)
class Tile:
    """A window ``[x0, x1) x [y0, y1)`` of the rescaled image and which of its edges are inside the image
    (``inner``: left, top, right, bottom). Detections touching an inner edge may be cut vehicles."""

    x0: int
    y0: int
    x1: int
    y1: int
    inner: tuple[bool, bool, bool, bool]

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def tile_origins(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``[0, length)``, neighbours sharing at least ``overlap`` px.

    Offsets are multiples of ``align`` (pass the network stride): a window shifted by a multiple of the stride
    sees the same anchor grid and the same stride-2 subsampling phase as a whole-image pass, so inside the tile
    the network computes what it would on the whole image (a shift by anything else changes every prediction
    slightly). The step is the largest multiple of ``align`` not above ``tile - overlap``; the last tile starts
    at the first aligned offset that reaches the end, so it may run up to ``align - 1`` px past it (that part
    is zero padding, as in a whole-image pass). If ``tile - overlap < align``, offsets are not aligned.
    """
    if length <= tile:
        return [0]
    if tile - overlap < align:
        align = 1
    step = (tile - overlap) // align * align
    last = math.ceil((length - tile) / align) * align
    return list(range(0, last, step)) + [last]


def plan_tiles(width: int, height: int, tile: int | None, overlap: int = 0, align: int = 1) -> list[Tile]:
    """Tiles covering a ``width x height`` image (``tile=None``: one tile, the whole image); see
    :func:`tile_origins`. A tile's ``x1, y1`` are clipped to the image."""
    if tile is None:
        return [Tile(0, 0, width, height, (False, False, False, False))]
    tiles = []
    for y0 in tile_origins(height, tile, overlap, align):
        for x0 in tile_origins(width, tile, overlap, align):
            x1, y1 = min(x0 + tile, width), min(y0 + tile, height)
            tiles.append(Tile(x0, y0, x1, y1, (x0 > 0, y0 > 0, x1 < width, y1 < height)))
    return tiles


def network_tile(tile: int, stride: int) -> int:
    """The tile side actually used: ``tile`` rounded up to a multiple of the network stride (the input is padded
    to that size anyway, so the padding may as well hold image)."""
    return math.ceil(tile / stride) * stride


def padded_shape(height: int, width: int, stride: int) -> tuple[int, int]:
    """``(Hp, Wp)``: the input size rounded up to a multiple of the network stride."""
    return math.ceil(height / stride) * stride, math.ceil(width / stride) * stride
