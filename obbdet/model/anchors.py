"""Axis-aligned anchors for any input size, and their labeling against rotated ground truth.

Anchors follow effdet's layout (RetinaNet style): on each pyramid level ``l`` (stride ``2**l``) every feature
cell carries ``num_scales * len(aspect_ratios)`` anchors of side ``anchor_scale * stride * 2**(octave /
num_scales)`` stretched by the aspect ratio. The flat order is level, then row, then column, then anchor
(octave outer, aspect inner), which is the order of the heads' outputs after
``permute(0, 2, 3, 1).reshape(B, -1, K)``.

Matching choice (documented because rotated detectors differ here): an anchor is compared with the
**axis-aligned bounding box (AABB) of each rotated ground-truth box** (exact axis-aligned IoU), as mmrotate's
rotated RetinaNet does with ``assign_by_circumhbbox``. Against the rotated box itself an axis-aligned anchor
rarely reaches IoU 0.5 for a thin diagonal vehicle (a 40x16 car at 45 deg tops out near 0.35), so most objects
would only get forced low-quality matches; against the AABB, the anchor set covers every orientation evenly.
The rotated geometry enters through the regression targets (``obbdet.model.coder``), and the labeling is
the same for objects of unknown angle (``angle_known`` False), whose labels are AABBs in the first place.

Two assigners share that similarity:

- ``label_anchors`` (``loss.assigner=iou``): RetinaNet/effdet thresholds (positive at IoU >= 0.5, negative
  below 0.4, ignored between, plus each GT's best anchor);
- ``label_anchors_atss`` (``loss.assigner=atss``, the default): ATSS (Zhang et al., CVPR 2020). Per GT and
  pyramid level the ``topk`` anchors nearest to its centre are candidates; those whose IoU reaches the
  mean + standard deviation of the candidates' IoUs, and whose centre lies **inside the rotated box**, are
  positive. The adaptive threshold gives elongated vehicles (buses, trucks: 4-5:1) as many positives as
  cars, where a fixed 0.5 would give them only a forced one, and the inside test is what makes the
  assignment rotation-aware.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.ops import box_iou

from obbdet.boxes import xywha_to_aabb

# Anchor labels
NEGATIVE = -1  # background
IGNORED = -2  # neither positive nor negative (between the IoU thresholds, or overlapping an ignored GT)

# Ground truth is matched in chunks so that memory stays bounded for dense scenes (1000+ boxes).
_MAX_PAIRS_PER_CHUNK = 8_000_000


def _aspect_pair(aspect) -> tuple[float, float]:
    """effdet aspect ratios come as ``(x, y)`` pairs or as a ratio ``w/h``."""
    if isinstance(aspect, (tuple, list)):
        return float(aspect[0]), float(aspect[1])
    return math.sqrt(float(aspect)), 1.0 / math.sqrt(float(aspect))


@dataclass(frozen=True)
class LevelLayout:
    """Where one pyramid level's anchors sit in the flat anchor list.

    Anchor ``offset + (row * width + col) * len(half_sizes) + k`` is centred on ``((col + 0.5) * stride_x,
    (row + 0.5) * stride_y)`` with half extents ``half_sizes[k]`` = ``(half_x, half_y)`` pixels.
    """

    offset: int
    height: int
    width: int
    stride_x: float
    stride_y: float
    half_sizes: tuple[tuple[float, float], ...]


@dataclass
class AnchorSet:
    """Anchors of one input size: ``boxes [A, 4]`` float32 xyxy (pixels) and their per-level layout."""

    boxes: torch.Tensor
    levels: tuple[LevelLayout, ...]
    _level_ids: torch.Tensor | None = None

    @property
    def level_ids(self) -> torch.Tensor:
        """``[A]`` int64 pyramid level (0 = finest) of every anchor."""
        if self._level_ids is None:
            counts = torch.tensor([lv.height * lv.width * len(lv.half_sizes) for lv in self.levels],
                                  device=self.boxes.device)
            self._level_ids = torch.repeat_interleave(torch.arange(len(self.levels), device=self.boxes.device),
                                                      counts)
        return self._level_ids

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def __getitem__(self, index) -> torch.Tensor:
        return self.boxes[index]

    @property
    def device(self) -> torch.device:
        return self.boxes.device


class AnchorGenerator:
    """Anchors (an :class:`AnchorSet`) for an input of any ``H x W`` that is a multiple of ``2 ** max_level``;
    cached per (size, device)."""

    def __init__(self, min_level: int, max_level: int, num_scales: int, aspect_ratios, anchor_scale: float):
        self.min_level = int(min_level)
        self.max_level = int(max_level)
        self.num_scales = int(num_scales)
        self.aspect_ratios = [_aspect_pair(a) for a in aspect_ratios]
        self.anchor_scale = float(anchor_scale)
        self._cache: dict[tuple, AnchorSet] = {}

    @property
    def num_anchors(self) -> int:
        """Anchors per feature cell."""
        return self.num_scales * len(self.aspect_ratios)

    @property
    def stride(self) -> int:
        """Input sides must be multiples of this (the coarsest level's stride)."""
        return 2 ** self.max_level

    def feature_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """``(h, w)`` of each level's feature map (ceil halving, as the network computes them)."""
        sizes, h, w = [], int(height), int(width)
        for level in range(1, self.max_level + 1):
            h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
            if level >= self.min_level:
                sizes.append((h, w))
        return sizes

    def check_size(self, height: int, width: int) -> None:
        """Raise ValueError unless both sides are positive multiples of the stride."""
        if height <= 0 or width <= 0 or height % self.stride or width % self.stride:
            raise ValueError(f"input size {height}x{width} is not a multiple of the network stride {self.stride} "
                             f"(levels {self.min_level}-{self.max_level}); pad or resize the image")

    def anchors(self, height: int, width: int, device=None) -> AnchorSet:
        """The :class:`AnchorSet` of an ``height x width`` input (cached)."""
        key = (int(height), int(width), str(device or "cpu"))
        if key not in self._cache:
            self.check_size(height, width)
            levels = self._layout(int(height), int(width))
            self._cache[key] = AnchorSet(_layout_boxes(levels).to(device or "cpu"), levels)
        return self._cache[key]

    def anchors_xyxy(self, height: int, width: int, device=None) -> torch.Tensor:
        """Anchors ``[A, 4]`` float32 xyxy for an ``height x width`` input (cached)."""
        return self.anchors(height, width, device).boxes

    def traced_anchors_xyxy(self, height, width) -> torch.Tensor:
        """Anchors ``[A, 4]`` float32 xyxy of an ``height x width`` input, built from torch operations only, so
        that an exported graph (``torch.onnx.export`` tracing, where ``height`` and ``width`` are traced sizes)
        generates them for every input size. Same anchors as :meth:`anchors_xyxy` for sides that are multiples
        of the stride (the only sizes the network accepts): level ``l``'s grid is then exactly ``side / 2**l``."""
        boxes = []
        for level in range(self.min_level, self.max_level + 1):
            step = 2 ** level
            boxes.append(_grid_boxes(height // step, width // step, step, step, self._half_sizes(step, step),
                                     torch.float32))
        return torch.cat(boxes)

    def _half_sizes(self, stride_x: float, stride_y: float) -> tuple[tuple[float, float], ...]:
        """``(half_x, half_y)`` of each anchor shape of a cell (octave outer, aspect inner)."""
        half_sizes = []
        for octave in range(self.num_scales):
            base = self.anchor_scale * 2 ** (octave / self.num_scales)
            for ax, ay in self.aspect_ratios:
                half_sizes.append((base * stride_x * ax / 2, base * stride_y * ay / 2))
        return tuple(half_sizes)

    def _layout(self, height: int, width: int) -> tuple[LevelLayout, ...]:
        levels, offset = [], 0
        for (fh, fw) in self.feature_sizes(height, width):
            stride_x, stride_y = width / fw, height / fh
            half_sizes = self._half_sizes(stride_x, stride_y)
            levels.append(LevelLayout(offset, fh, fw, stride_x, stride_y, half_sizes))
            offset += fh * fw * len(half_sizes)
        return tuple(levels)


def _grid_boxes(height, width, stride_x: float, stride_y: float, half_sizes, dtype) -> torch.Tensor:
    """Anchors ``[height * width * k, 4]`` xyxy of one level: cells in row-major order, ``k`` shapes per cell."""
    ys = (torch.arange(height, dtype=dtype) + 0.5) * stride_y
    xs = (torch.arange(width, dtype=dtype) + 0.5) * stride_x
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")  # (fh, fw)
    half = torch.tensor(half_sizes, dtype=dtype)  # (k, 2)
    centres = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2)  # (fh*fw, 1, 2)
    return torch.cat([centres - half, centres + half], dim=-1).reshape(-1, 4)  # (fh*fw*k, 4)


def _layout_boxes(levels: tuple[LevelLayout, ...]) -> torch.Tensor:
    return torch.cat([_grid_boxes(lv.height, lv.width, lv.stride_x, lv.stride_y, lv.half_sizes, torch.float64)
                      for lv in levels]).float()


def _ranges(low: torch.Tensor, high: torch.Tensor, stride: float, half: float, size: int):
    """Cells ``[first, last]`` whose centres ``(i + 0.5) * stride`` lie strictly inside ``(low - half, high + half)``."""
    first = torch.floor((low - half) / stride - 0.5).long() + 1
    last = torch.ceil((high + half) / stride - 0.5).long() - 1
    return first.clamp(min=0), last.clamp(max=size - 1)


def overlapping_pairs(anchors: AnchorSet, aabb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (GT, anchor) pair whose boxes overlap, without an ``A x N`` matrix.

    aabb: ``[N, 4]`` xyxy. Returns (gt index ``[P]``, anchor index ``[P]``) int64, computed per level and anchor
    shape from the grid arithmetic (so dense scenes cost O(pairs), not O(anchors x objects)).
    """
    device = aabb.device
    gt_parts, anchor_parts = [], []
    x0, y0, x1, y1 = aabb.unbind(-1)
    gt_ids = torch.arange(len(aabb), device=device)
    for lv in anchors.levels:
        k_total = len(lv.half_sizes)
        for k, (hx, hy) in enumerate(lv.half_sizes):
            c0, c1 = _ranges(x0, x1, lv.stride_x, hx, lv.width)
            r0, r1 = _ranges(y0, y1, lv.stride_y, hy, lv.height)
            nx, ny = (c1 - c0 + 1).clamp(min=0), (r1 - r0 + 1).clamp(min=0)
            counts = nx * ny
            total = int(counts.sum())
            if total == 0:
                continue
            gt = torch.repeat_interleave(gt_ids, counts)
            start = torch.cumsum(counts, 0) - counts
            local = torch.arange(total, device=device) - torch.repeat_interleave(start, counts)
            row = r0[gt] + torch.div(local, nx[gt], rounding_mode="floor")
            col = c0[gt] + local % nx[gt]
            gt_parts.append(gt)
            anchor_parts.append(lv.offset + (row * lv.width + col) * k_total + k)
    if not gt_parts:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return empty, empty
    return torch.cat(gt_parts), torch.cat(anchor_parts)


def aligned_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU ``[P]`` of row-aligned axis-aligned boxes ``[P, 4]`` xyxy."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area_a = (a[:, 2:] - a[:, :2]).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(dim=1)
    return inter / (area_a + area_b - inter).clamp(min=1e-9)


@dataclass
class AnchorTargets:
    """Labels of one image's anchors.

    labels: ``[A]`` int64, the class index of positives, ``NEGATIVE`` (-1) or ``IGNORED`` (-2).
    matched: ``[A]`` int64 index of the matched ground-truth box (meaningful where ``labels >= 0``).
    """

    labels: torch.Tensor
    matched: torch.Tensor

    @property
    def positive(self) -> torch.Tensor:
        return self.labels >= 0


def label_anchors(anchors, gt_boxes: torch.Tensor, gt_labels: torch.Tensor,
                  match_iou: float = 0.5, unmatch_iou: float = 0.4,
                  gt_ignore: torch.Tensor | None = None) -> AnchorTargets:
    """Assign anchors to rotated ground truth (IoU of the anchor with the GT's AABB; see module docstring).

    anchors: an :class:`AnchorSet` (or a plain ``[A, 4]`` xyxy tensor, matched densely in chunks).
    gt_boxes: ``[N, 5]`` float xywha (le90, pixels). gt_labels: ``[N]`` int64. gt_ignore: ``[N]`` bool, GT that
    must neither produce positives nor be learned as background.

    An anchor whose best IoU is ``>= match_iou`` is positive, ``< unmatch_iou`` negative, otherwise ignored.
    Every GT also claims its single best anchor (when their IoU is > 0), so small or oddly shaped objects are
    never left without a positive. There is no cap on the number of GT boxes: only overlapping (GT, anchor)
    pairs are evaluated. Zero-size GT (degenerate polygons) are treated as ignored.
    """
    anchors_xyxy = anchors.boxes if isinstance(anchors, AnchorSet) else anchors
    num_anchors = anchors_xyxy.shape[0]
    device = anchors_xyxy.device
    labels = torch.full((num_anchors,), NEGATIVE, dtype=torch.int64, device=device)
    num_gt = gt_boxes.shape[0]
    if num_gt == 0:
        return AnchorTargets(labels, torch.zeros(num_anchors, dtype=torch.int64, device=device))
    gt_boxes = gt_boxes.to(device=device, dtype=torch.float32)
    gt_labels = gt_labels.to(device)
    ignore = torch.zeros(num_gt, dtype=torch.bool, device=device) if gt_ignore is None else gt_ignore.to(device)
    ignore = ignore | (gt_boxes[:, 2] <= 1e-3) | (gt_boxes[:, 3] <= 1e-3)
    gt_aabb = xywha_to_aabb(gt_boxes)
    if isinstance(anchors, AnchorSet):
        best_iou, best_gt, gt_best_iou, gt_best_anchor = _best_matches_sparse(anchors, gt_aabb)
    else:
        best_iou, best_gt, gt_best_iou, gt_best_anchor = _best_matches_dense(anchors_xyxy, gt_aabb)

    labels = torch.where(best_iou >= match_iou, gt_labels[best_gt], labels)
    labels = torch.where((best_iou >= unmatch_iou) & (best_iou < match_iou), IGNORED, labels)
    matched = best_gt.clone()
    # low-quality matches: each GT keeps its best anchor
    forced = (gt_best_iou > 0).nonzero().squeeze(1)
    matched[gt_best_anchor[forced]] = forced
    labels[gt_best_anchor[forced]] = gt_labels[forced]
    # anchors whose match is an ignored GT are ignored
    labels = torch.where((labels >= 0) & ignore[matched], IGNORED, labels)
    return AnchorTargets(labels, matched)


def _best_matches_sparse(anchors: AnchorSet, gt_aabb: torch.Tensor):
    """(best IoU [A], its GT [A], each GT's best IoU [N], its anchor [N]) over overlapping pairs only."""
    num_anchors, num_gt, device = len(anchors), len(gt_aabb), gt_aabb.device
    gt_idx, anchor_idx = overlapping_pairs(anchors, gt_aabb)
    iou = aligned_box_iou(anchors.boxes[anchor_idx], gt_aabb[gt_idx])
    best_iou = torch.zeros(num_anchors, device=device).scatter_reduce(0, anchor_idx, iou, "amax")
    # ties: the lowest GT index wins (deterministic)
    at_best = iou >= best_iou[anchor_idx]
    best_gt = torch.full((num_anchors,), num_gt, dtype=torch.int64, device=device)
    best_gt = best_gt.scatter_reduce(0, anchor_idx[at_best], gt_idx[at_best], "amin")
    best_gt = torch.where(best_gt == num_gt, 0, best_gt)
    gt_best_iou = torch.zeros(num_gt, device=device).scatter_reduce(0, gt_idx, iou, "amax")
    at_gt_best = iou >= gt_best_iou[gt_idx]
    gt_best_anchor = torch.full((num_gt,), num_anchors, dtype=torch.int64, device=device)
    gt_best_anchor = gt_best_anchor.scatter_reduce(0, gt_idx[at_gt_best], anchor_idx[at_gt_best], "amin")
    gt_best_anchor = torch.where(gt_best_anchor == num_anchors, 0, gt_best_anchor)
    return best_iou, best_gt, gt_best_iou, gt_best_anchor


def _best_matches_dense(anchors_xyxy: torch.Tensor, gt_aabb: torch.Tensor):
    """As :func:`_best_matches_sparse`, from the full IoU matrix in chunks of GT (for plain anchor tensors)."""
    num_anchors, num_gt, device = anchors_xyxy.shape[0], len(gt_aabb), gt_aabb.device
    best_iou = torch.zeros(num_anchors, device=device)
    best_gt = torch.zeros(num_anchors, dtype=torch.int64, device=device)
    gt_best_anchor = torch.zeros(num_gt, dtype=torch.int64, device=device)
    gt_best_iou = torch.zeros(num_gt, device=device)
    chunk = max(1, _MAX_PAIRS_PER_CHUNK // max(num_anchors, 1))
    for start in range(0, num_gt, chunk):
        iou = box_iou(anchors_xyxy, gt_aabb[start:start + chunk])  # (A, n)
        chunk_iou, chunk_gt = iou.max(dim=1)
        better = chunk_iou > best_iou
        best_iou = torch.where(better, chunk_iou, best_iou)
        best_gt = torch.where(better, chunk_gt + start, best_gt)
        gt_best_iou[start:start + chunk], gt_best_anchor[start:start + chunk] = iou.max(dim=0)
    return best_iou, best_gt, gt_best_iou, gt_best_anchor


def _centres_inside_xywha(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``[P]`` bool: each point ``[P, 2]`` lies inside its rotated box ``[P, 5]`` xywha (boundary included)."""
    dx, dy = points[:, 0] - boxes[:, 0], points[:, 1] - boxes[:, 1]
    cos_a, sin_a = torch.cos(boxes[:, 4]), torch.sin(boxes[:, 4])
    u = dx * cos_a + dy * sin_a
    v = -dx * sin_a + dy * cos_a
    return (u.abs() <= boxes[:, 2] / 2) & (v.abs() <= boxes[:, 3] / 2)


def atss_candidates(anchors: AnchorSet, centres: torch.Tensor, block: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(GT index ``[P]``, anchor index ``[P]``): on every level, all anchors of the ``block x block`` cells
    around the cell holding each GT centre ``[N, 2]`` (cells outside the grid are skipped). From the grid
    arithmetic: no distance sort over all anchors."""
    device = centres.device
    offsets = torch.arange(block, device=device) - block // 2
    gt_parts, anchor_parts = [], []
    for lv in anchors.levels:
        k_total = len(lv.half_sizes)
        col = torch.floor(centres[:, 0] / lv.stride_x).long()[:, None, None] + offsets[None, None, :]
        row = torch.floor(centres[:, 1] / lv.stride_y).long()[:, None, None] + offsets[None, :, None]
        valid = (col >= 0) & (col < lv.width) & (row >= 0) & (row < lv.height)  # (N, block, block)
        cell = (row * lv.width + col)[..., None] * k_total + torch.arange(k_total, device=device)
        gt = torch.arange(len(centres), device=device)[:, None, None, None].expand_as(cell)
        keep = valid[..., None].expand_as(cell)
        gt_parts.append(gt[keep])
        anchor_parts.append(lv.offset + cell[keep])
    return torch.cat(gt_parts), torch.cat(anchor_parts)


def _rescue_lost(owner: torch.Tensor, c_gt: torch.Tensor, c_anchor: torch.Tensor, c_iou: torch.Tensor,
                 num_gt: int) -> torch.Tensor:
    """GT that lost every positive to neighbours with higher IoU get their best still-free candidate."""
    has_anchor = torch.zeros(num_gt + 1, dtype=torch.bool, device=owner.device)
    has_anchor[owner] = True
    free = ~has_anchor[c_gt] & (owner[c_anchor] == num_gt) & (c_iou > 0)
    if not free.any():
        return owner
    f_gt, f_anchor, f_iou = c_gt[free], c_anchor[free], c_iou[free]
    best = torch.zeros(num_gt, device=owner.device).scatter_reduce(0, f_gt, f_iou, "amax")
    top = f_iou >= best[f_gt]
    choice = torch.full((num_gt,), len(owner), dtype=torch.int64, device=owner.device)
    choice = choice.scatter_reduce(0, f_gt[top], f_anchor[top], "amin")
    rescued = (choice < len(owner)).nonzero().squeeze(1)
    owner = owner.clone()
    owner[choice[rescued]] = rescued  # two lost GT wanting one anchor: one of them keeps it
    return owner


def label_anchors_atss(anchors: AnchorSet, gt_boxes: torch.Tensor, gt_labels: torch.Tensor, topk: int = 9,
                       gt_ignore: torch.Tensor | None = None) -> AnchorTargets:
    """ATSS assignment of anchors to rotated ground truth (see the module docstring).

    Candidates of a GT: on every pyramid level, all anchor shapes at the ``sqrt(topk) x sqrt(topk)`` cells
    nearest its centre (9 -> 3x3; with several anchors per cell, ATSS's "top-k anchors by distance" would
    otherwise pick one cell's anchors only). anchors: an :class:`AnchorSet`. gt_boxes ``[N, 5]`` float xywha
    (le90, pixels), gt_labels ``[N]`` int64, gt_ignore ``[N]`` bool (their positives become IGNORED). An anchor claimed by several GT goes to the one
    with the highest IoU; a GT left without any positive (tiny, or thinner than the anchor grid) gets its best
    candidate, so no object goes unlearned. No ignore band: every other anchor is negative. No cap on N.
    """
    num_anchors, device = len(anchors), anchors.device
    labels = torch.full((num_anchors,), NEGATIVE, dtype=torch.int64, device=device)
    matched = torch.zeros(num_anchors, dtype=torch.int64, device=device)
    num_gt = gt_boxes.shape[0]
    if num_gt == 0:
        return AnchorTargets(labels, matched)
    gt_boxes = gt_boxes.to(device=device, dtype=torch.float32)
    gt_labels = gt_labels.to(device)
    ignore = torch.zeros(num_gt, dtype=torch.bool, device=device) if gt_ignore is None else gt_ignore.to(device)
    ignore = ignore | (gt_boxes[:, 2] <= 1e-3) | (gt_boxes[:, 3] <= 1e-3)
    gt_aabb = xywha_to_aabb(gt_boxes)
    block = max(1, 2 * int(math.sqrt(topk) / 2) + 1)
    c_gt, c_anchor = atss_candidates(anchors, gt_boxes[:, :2], block)
    if len(c_gt) == 0:
        return AnchorTargets(labels, matched)
    boxes = anchors.boxes[c_anchor]
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    c_iou = aligned_box_iou(boxes, gt_aabb[c_gt])
    count = torch.bincount(c_gt, minlength=num_gt).clamp(min=1).float()
    mean = torch.bincount(c_gt, weights=c_iou, minlength=num_gt) / count
    var = torch.bincount(c_gt, weights=(c_iou - mean[c_gt]) ** 2, minlength=num_gt) / (count - 1).clamp(min=1)
    threshold = mean + var.sqrt()
    inside = _centres_inside_xywha(centres, gt_boxes[c_gt])
    positive = (c_iou >= threshold[c_gt]) & inside & (c_iou > 0)
    # GT without a positive: their best candidate
    has_positive = torch.zeros(num_gt, dtype=torch.bool, device=device)
    has_positive[c_gt[positive]] = True
    best_iou = torch.zeros(num_gt, device=device).scatter_reduce(0, c_gt, c_iou, "amax")
    rescue = ~has_positive[c_gt] & (c_iou >= best_iou[c_gt]) & (c_iou > 0)
    positive = positive | rescue
    p_gt, p_anchor, p_iou = c_gt[positive], c_anchor[positive], c_iou[positive]
    # an anchor claimed twice goes to the higher IoU (then the lower GT index)
    anchor_best = torch.zeros(num_anchors, device=device).scatter_reduce(0, p_anchor, p_iou, "amax")
    wins = p_iou >= anchor_best[p_anchor]
    owner = torch.full((num_anchors,), num_gt, dtype=torch.int64, device=device)
    owner = owner.scatter_reduce(0, p_anchor[wins], p_gt[wins], "amin")
    owner = _rescue_lost(owner, c_gt, c_anchor, c_iou, num_gt)
    assigned = owner < num_gt
    matched = torch.where(assigned, owner, matched)
    labels = torch.where(assigned, gt_labels[matched], labels)
    labels = torch.where(assigned & ignore[matched], IGNORED, labels)
    return AnchorTargets(labels, matched)
