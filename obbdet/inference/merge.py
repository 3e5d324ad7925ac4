"""Merging the detections of overlapping tiles into one set per vehicle (cut views, then rotated NMS).

Boxes are le90 xywha rows ``[cx, cy, w, h, a]`` in the rescaled image's pixels (see ``obbdet.boxes``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from obbdet.boxes import BOX_DIM, xywha_to_aabb
from obbdet.inference.tiling import Tile

BORDER_MARGIN_PX = 2.0  # a box within this many (network-scale) pixels of an inner tile edge counts as cut
CUT_COVER_FRACTION = 0.5  # intersection / smaller area above which two boxes are taken as the same vehicle


@dataclass
class RawDetections:
    """Detections in one coordinate frame: boxes ``[N, 5]`` float64 xywha, scores ``[N]`` float64,
    labels ``[N]`` int64 class indices, tile ``[N]`` int64 index of the tile each came from, heading ``[N]``
    float64 radians in ``[-pi, pi)`` (NaN where the model has no heading head)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    tile: np.ndarray
    heading: np.ndarray | None = None

    def __post_init__(self):
        if self.heading is None:
            self.heading = np.full(len(self.boxes), np.nan)

    @classmethod
    def empty(cls) -> "RawDetections":
        return cls(np.zeros((0, BOX_DIM)), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))

    @classmethod
    def concat(cls, parts: Sequence["RawDetections"]) -> "RawDetections":
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, name) for p in parts])
                     for name in ("boxes", "scores", "labels", "tile", "heading")))

    def select(self, index) -> "RawDetections":
        return RawDetections(self.boxes[index], self.scores[index], self.labels[index], self.tile[index],
                             self.heading[index])

    def __len__(self) -> int:
        return len(self.boxes)


def border_interior(boxes: np.ndarray, tiles: Sequence[Tile], tile_index: np.ndarray, margin: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """For boxes ``[N, 5]`` in image coordinates detected in ``tiles[tile_index]``:

    Returns ``cut [N] bool`` (the box's axis-aligned extent reaches within ``margin`` px of an inner edge of
    its tile: the vehicle may continue outside the tile) and ``interior [N] float64`` (distance from the box
    centre to the nearest inner edge of its tile; ``inf`` for a tile with no inner edge). A larger interior
    means the tile saw more context around the vehicle.
    """
    n = len(boxes)
    if n == 0:
        return np.zeros(0, bool), np.zeros(0)
    bounds = np.array([[t.x0, t.y0, t.x1, t.y1] for t in tiles], dtype=np.float64)[tile_index]  # [N, 4]
    inner = np.array([t.inner for t in tiles], dtype=bool)[tile_index]  # [N, 4] left, top, right, bottom
    aabb = xywha_to_aabb(boxes)
    reach = np.stack([aabb[:, 0] - bounds[:, 0], aabb[:, 1] - bounds[:, 1],
                      bounds[:, 2] - aabb[:, 2], bounds[:, 3] - aabb[:, 3]], axis=1)  # gap to each edge
    cut = ((reach < margin) & inner).any(axis=1)
    centre_gap = np.stack([boxes[:, 0] - bounds[:, 0], boxes[:, 1] - bounds[:, 1],
                           bounds[:, 2] - boxes[:, 0], bounds[:, 3] - boxes[:, 1]], axis=1)
    interior = np.where(inner, centre_gap, np.inf).min(axis=1)
    return cut, interior


def _seen_whole_elsewhere(dets: RawDetections, tiles: Sequence[Tile], index: np.ndarray, interior: np.ndarray,
                         margin: float, chunk: int = 2048) -> np.ndarray:
    """``[len(index)]`` bool: detection ``index[k]`` lies wholly inside another tile (clear of its inner edges by
    ``margin``), further from that tile's inner edges than from its own tile's."""
    bounds = np.array([[t.x0, t.y0, t.x1, t.y1] for t in tiles], dtype=np.float64)  # [T, 4]
    aabb = xywha_to_aabb(dets.boxes[index])
    out = np.zeros(len(index), bool)
    for start in range(0, len(index), chunk):
        part = slice(start, start + chunk)
        box = aabb[part, None, :]  # [C, 1, 4] vs [T, 4]: tiles that contain the whole box
        inside = ((box[..., 0] >= bounds[:, 0]) & (box[..., 1] >= bounds[:, 1]) & (box[..., 2] <= bounds[:, 2])
                  & (box[..., 3] <= bounds[:, 3]))
        inside &= np.arange(len(tiles))[None, :] != dets.tile[index[part], None]
        k, t = np.nonzero(inside)
        if len(k) == 0:
            continue
        cut_there, interior_there = border_interior(dets.boxes[index[part][k]], tiles, t, margin)
        better = ~cut_there & (interior_there > interior[index[part][k]])
        out[start + k[better]] = True
    return out


def drop_cut_duplicates(dets: RawDetections, tiles: Sequence[Tile], *, margin: float = BORDER_MARGIN_PX,
                        cover: float = CUT_COVER_FRACTION) -> np.ndarray:
    """Keep-mask ``[N]`` removing views of vehicles cut by a tile edge where another tile saw them better.

    A detection touching an inner edge of its tile (a vehicle that may continue outside it) is dropped when

    - a detection from a *different* tile covers it (intersection >= ``cover`` x the smaller box's area, any
      class: a half vehicle is often misclassified) and lies further inside its own tile (larger
      :func:`border_interior`): the whole view replaces the cut one. Plain NMS cannot do this: a half box and
      the whole box have IoU around 0.5 or less and both survive; or
    - the box lies wholly inside another tile, further from that tile's inner edges: that tile saw the region
      with more context, and what it found there (kept by the first rule, or nothing above the score
      threshold) is the answer. Without this, a long vehicle the network misses as a whole comes out as a
      car-sized fragment from the tile that cuts it.

    Detections not touching an inner edge are never dropped here (overlapping duplicates are NMS's job).
    """
    from obbdet.iou import aabb_overlap_pairs, intersection_area_rotated

    keep = np.ones(len(dets), bool)
    cut, interior = border_interior(dets.boxes, tiles, dets.tile, margin)
    cut_index = np.flatnonzero(cut)
    if len(cut_index) == 0:
        return keep
    keep[cut_index[_seen_whole_elsewhere(dets, tiles, cut_index, interior, margin)]] = False
    aabb = xywha_to_aabb(dets.boxes)
    i_local, j = aabb_overlap_pairs(aabb[cut_index], aabb)
    i = cut_index[i_local]
    candidate = (dets.tile[i] != dets.tile[j]) & (interior[j] > interior[i])
    i, j = i[candidate], j[candidate]
    if len(i) == 0:
        return keep
    inter = intersection_area_rotated(dets.boxes[i], dets.boxes[j])
    areas = dets.boxes[:, 2] * dets.boxes[:, 3]
    smaller = np.minimum(areas[i], areas[j])
    covered = inter >= cover * np.maximum(smaller, 1e-12)
    keep[np.unique(i[covered])] = False
    return keep


def rotated_nms_keep(boxes: np.ndarray, priority: np.ndarray, labels: np.ndarray, iou_threshold: float,
                     device="cpu") -> np.ndarray:
    """Indices kept by class-aware rotated NMS (``obbdet.nms.batched_nms_rotated``), visiting boxes by
    descending ``priority`` [N] (a score, or any other preference). Float64 on the CPU (exact), float32 on GPU."""
    import torch

    from obbdet.nms import batched_nms_rotated

    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    dtype = torch.float64 if torch.device(device).type == "cpu" else torch.float32
    keep = batched_nms_rotated(torch.as_tensor(boxes, dtype=dtype, device=device),
                               torch.as_tensor(priority, dtype=dtype, device=device),
                               torch.as_tensor(labels, dtype=torch.int64, device=device), float(iou_threshold))
    return keep.cpu().numpy().astype(np.int64)


def merge_tile_detections(dets: RawDetections, tiles: Sequence[Tile], *, nms_iou: float,
                          margin: float = BORDER_MARGIN_PX, device="cpu", prefer: str = "interior"
                          ) -> RawDetections:
    """Merge detections ``dets`` (image coordinates) from overlapping ``tiles`` into one set per vehicle.

    Step 1 drops vehicles cut by an inner tile edge that another tile saw better (:func:`drop_cut_duplicates`).
    Step 2 is class-aware rotated NMS at ``nms_iou`` over what is left, removing the duplicates of vehicles seen
    whole by two overlapping tiles. ``prefer="interior"`` visits detections by distance from their tile's inner
    edges, so of two duplicates the one predicted with the most context around it survives (closest to what a
    whole-image pass gives; each tile's detections were already NMS'd, so only cross-tile pairs are affected);
    ``prefer="score"`` is plain score-ordered NMS. With a single tile nothing is merged.
    Returns the kept detections sorted by descending score.
    """
    if prefer not in ("interior", "score"):
        raise ValueError(f"prefer must be 'interior' or 'score', got {prefer!r}")
    if len(dets) == 0:
        return dets
    if len(tiles) > 1:
        dets = dets.select(np.flatnonzero(drop_cut_duplicates(dets, tiles, margin=margin)))
        priority = dets.scores
        if prefer == "interior":
            _, interior = border_interior(dets.boxes, tiles, dets.tile, margin)
            priority = interior + 1e-3 * dets.scores  # scores only break ties
        dets = dets.select(rotated_nms_keep(dets.boxes, priority, dets.labels, nms_iou, device=device))
    return dets.select(np.argsort(-dets.scores, kind="stable"))
