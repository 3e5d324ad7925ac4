"""Running a trained detector over folders of (huge) aerial images.

Pipeline per image (boxes are ``xywha`` le90 rows ``[cx, cy, w, h, a]``, pixels, radians; see ``obbdet.boxes``):

1. read once as ``[H, W, 3]`` uint8 RGB (:func:`read_image_rgb_checked`, one clear reason per failure);
2. rescale by ``train_vehicle_width / vehicle_width`` so vehicles have the size the network was trained on
   (:func:`rescale_factor`, :func:`resize_image`);
3. cut into overlapping tiles whose offsets lie on the network's stride grid (:func:`plan_tiles`, so a tile sees
   what a whole-image pass sees there) or keep whole (``whole=True``); tiles are cut lazily into a
   ``[B, Hp, Wp, 3]`` uint8 staging buffer of ``batch`` tiles (``Hp, Wp`` padded to the network stride), so memory
   grows with the batch, not with the image; consecutive tiles of several small images share a batch;
4. ``Detector.predict`` per batch; tile detections are shifted to the rescaled image;
5. merged (:func:`merge_tile_detections`): a detection touching an *inner* tile edge (a vehicle cut by the tile)
   is dropped when a detection from another tile, where the vehicle lies further from any inner edge, covers it;
   then class-aware rotated NMS removes duplicates from the overlaps, keeping the view from the tile where the
   vehicle is most interior (most context, closest to a whole-image pass);
6. capped at ``max_det`` per image (with a warning naming the image), mapped back to original pixels,
   width/length calibration factors applied (:func:`apply_box_scales`), written as obb_json.

Numpy does the bookkeeping; torch is only used for the forward pass and the rotated NMS.
"""
from __future__ import annotations

import logging
import math
import os
import stat
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from obbdet.boxes import BOX_DIM, normalize_xywha, poly_to_xywha, xywha_to_aabb, xywha_to_poly
from obbdet.formats import IMAGE_EXTENSIONS, OVERLAY_DIR
from obbdet.structures import ImageLabels

logger = logging.getLogger(__name__)

DEFAULT_STRIDE = 128  # EfficientDet levels 3-7: inputs must be multiples of 2**7
NO_RESCALE = -1.0  # vehicle_width value meaning "run at the image's own resolution"
BORDER_MARGIN_PX = 2.0  # a box within this many (network-scale) pixels of an inner tile edge counts as cut
CUT_COVER_FRACTION = 0.5  # intersection / smaller area above which two boxes are taken as the same vehicle

# Exit codes of infer.py (documented in its --help).
EXIT_OK = 0
EXIT_IMAGE_FAILURES = 1
EXIT_SETUP_ERROR = 2


class InferenceSetupError(RuntimeError):
    """Something that stops a run before any image is processed (one-line message)."""


class ImageReadError(RuntimeError):
    """An image file that cannot be used; ``str()`` is ``"<path>: <reason>"``."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


# ---------------------------------------------------------------------------------------------------
# Options and results
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InferenceOptions:
    """How images are cut, predicted and merged.

    tile, overlap: tile side (rounded up to a multiple of the network stride) and minimum overlap in
    network-scale (rescaled) pixels; ignored when ``whole``. Tile offsets are multiples of the stride.
    batch: tiles per forward pass (the memory bound). score_threshold, nms_iou: passed to the detector and
    used for the cross-tile NMS. max_det: cap on detections per tile and per image (warned when reached).
    width_scale, length_scale: factors applied to the short / long side of every final box.
    half: float16 autocast on CUDA.
    """

    tile: int = 768
    overlap: int = 128
    whole: bool = False
    batch: int = 4
    score_threshold: float = 0.05
    nms_iou: float = 0.4  # the training default (TrainConfig.nms_iou); infer.py uses the checkpoint's
    max_det: int = 1000
    width_scale: float = 1.0
    length_scale: float = 1.0
    half: bool = False
    border_margin: float = BORDER_MARGIN_PX

    def __post_init__(self):
        if not self.whole:
            if self.tile < 32:
                raise ValueError(f"tile must be at least 32 px, got {self.tile}")
            if not 0 <= self.overlap < self.tile:
                raise ValueError(f"overlap must be in [0, tile), got {self.overlap} with tile {self.tile}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        if self.max_det < 1:
            raise ValueError(f"max_det must be >= 1, got {self.max_det}")
        if not (self.width_scale > 0 and self.length_scale > 0):
            raise ValueError(f"width/length scales must be > 0, got {self.width_scale}, {self.length_scale}")


@dataclass
class ImageFailure:
    """An image that could not be processed, and why (one line)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class InferenceSummary:
    """Totals of one run. ``seconds`` is wall time over all images (reading, predicting, writing)."""

    images: int = 0
    detections: int = 0
    megapixels: float = 0.0
    seconds: float = 0.0
    failures: list[ImageFailure] = field(default_factory=list)
    capped: list[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def seconds_per_megapixel(self) -> float:
        return self.seconds / self.megapixels if self.megapixels > 0 else 0.0

    def format(self) -> str:
        lines = [f"images: {self.images} processed, {len(self.failures)} failed",
                 f"detections: {self.detections}"
                 + (f" ({len(self.capped)} image(s) reached the detection cap)" if self.capped else ""),
                 f"speed: {self.images_per_second:.2f} images/s, {1000 * self.seconds_per_megapixel:.0f} ms per "
                 f"megapixel ({self.megapixels:.1f} MP in {self.seconds:.1f} s)"]
        if self.failures:
            lines.append("failures:")
            lines.extend(f"  {failure}" for failure in self.failures)
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Discovering and reading images
# ---------------------------------------------------------------------------------------------------

def discover_images(folder, exclude: Sequence = ()) -> list[Path]:
    """Image files (jpg/jpeg/png/tif/tiff/bmp, any case) under ``folder``, recursively, sorted by relative path.

    Symlinked folders are followed once (cycles are cut); folders in ``exclude`` (e.g. an output folder inside
    the input) are skipped. Entries that are not regular files (broken links, FIFOs) are listed too, so they are
    reported as failures rather than silently ignored.
    """
    folder = Path(folder)
    excluded = {os.path.realpath(p) for p in exclude}
    seen_dirs: set[str] = set()
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs or real in excluded:
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if os.path.realpath(os.path.join(dirpath, d)) not in excluded)
        for name in filenames:
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def read_image_rgb_checked(path) -> np.ndarray:
    """Read an image as ``[H, W, 3]`` uint8 RGB (grey, alpha and 16-bit images are converted).

    Raises :class:`ImageReadError` with the reason: missing or unreadable file, not a regular file, empty file,
    or data that does not decode (corrupt, truncated or not an image).
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found (broken symbolic link?)") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageReadError(path, "not a regular file")
    if info.st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    try:
        data = np.fromfile(path, dtype=np.uint8)  # fromfile + imdecode also handles non-ASCII paths
    except OSError as exc:
        raise ImageReadError(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. more pixels than OPENCV_IO_MAX_IMAGE_PIXELS allows
        raise ImageReadError(path, f"cannot decode: {str(exc).strip().splitlines()[-1][:200]}") from None
    except MemoryError:
        raise ImageReadError(path, f"not enough memory to decode this {info.st_size}-byte image") from None
    if image is None:
        raise ImageReadError(path, f"cannot decode {info.st_size}-byte file: corrupt, truncated or not an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)  # in place: one image-sized buffer, not two


# ---------------------------------------------------------------------------------------------------
# Rescaling
# ---------------------------------------------------------------------------------------------------

def rescale_factor(train_vehicle_width: float | None, vehicle_width: float) -> float:
    """Factor taking image pixels to network pixels: ``train_vehicle_width / vehicle_width``.

    ``vehicle_width == -1`` (NO_RESCALE) means 1. ``train_vehicle_width`` is the median short side of the
    main class in training pixels, stored in the checkpoint.
    """
    if vehicle_width == NO_RESCALE:
        return 1.0
    if not vehicle_width > 0:
        raise ValueError(f"vehicle_width must be > 0 (or -1 for no rescaling), got {vehicle_width}")
    if train_vehicle_width is None or not train_vehicle_width > 0:
        raise ValueError("the checkpoint stores no training vehicle width; pass vehicle_width -1 to run "
                         "without rescaling")
    return float(train_vehicle_width) / float(vehicle_width)


def resize_image(image: np.ndarray, scale: float) -> tuple[np.ndarray, tuple[float, float]]:
    """Resize ``[H, W, 3]`` by ``scale`` (sizes rounded, at least 1 px).

    Returns the resized image and the exact per-axis factors ``(sx, sy) = (new_w / W, new_h / H)`` that map
    image coordinates to resized coordinates (pixel-corner convention: ``x_new = x * sx``, as cv2.resize
    and albumentations use). INTER_AREA when shrinking (no aliasing), INTER_LINEAR when enlarging.
    """
    height, width = image.shape[:2]
    if scale == 1.0:
        return image, (1.0, 1.0)
    new_w, new_h = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    return resized, (new_w / width, new_h / height)


def scale_xywha(boxes: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Map boxes ``[N, 5]`` through ``x -> x * sx, y -> y * sy``.

    Equal factors scale centre and sides; unequal ones (rounding of the resized size, < 1 px over the image)
    map the corners and refit the minimum-area rectangle, so the result stays exact.
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


def apply_box_scales(boxes: np.ndarray, width_scale: float = 1.0, length_scale: float = 1.0) -> np.ndarray:
    """Scale every box's short side ``h`` by ``width_scale`` and long side ``w`` by ``length_scale`` about its
    centre (calibration of loosely labelled training data). Returns new le90 boxes ``[N, 5]``."""
    out = np.asarray(boxes, dtype=np.float64).reshape(-1, BOX_DIM).copy()
    out[:, 2] *= length_scale
    out[:, 3] *= width_scale
    return normalize_xywha(out) if len(out) else out


# ---------------------------------------------------------------------------------------------------
# Tiles
# ---------------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------------
# Merging tile detections
# ---------------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------------
# Batched prediction over tiles of many images
# ---------------------------------------------------------------------------------------------------

@dataclass(eq=False)  # identity semantics: jobs are dict keys
class _ImageJob:
    """One image on its way through the pipeline (``image`` is the rescaled RGB array)."""

    key: object
    image: np.ndarray
    original_size: tuple[int, int]  # (width, height)
    factors: tuple[float, float]  # (sx, sy) original -> rescaled
    tiles: list[Tile]
    input_shape: tuple[int, int]  # (Hp, Wp) padded tile shape fed to the network
    original: np.ndarray | None = None  # kept for drawing only
    results: list = field(default_factory=list)
    tile_capped: int = 0
    failed: bool = False

    @property
    def done(self) -> bool:
        return len(self.results) == len(self.tiles)


def _make_job(key, image: np.ndarray, scale: float, options: InferenceOptions, stride: int,
              keep_original: bool = False) -> _ImageJob:
    height, width = image.shape[:2]
    rescaled, factors = resize_image(image, scale)
    rh, rw = rescaled.shape[:2]
    if options.whole:
        tiles = plan_tiles(rw, rh, None)
        input_shape = padded_shape(rh, rw, stride)
    else:
        tile = network_tile(options.tile, stride)
        tiles = plan_tiles(rw, rh, tile, options.overlap, align=stride)
        input_shape = padded_shape(min(tile, rh), min(tile, rw), stride)
    return _ImageJob(key, rescaled, (width, height), factors, tiles, input_shape,
                     original=image if keep_original else None)


def _batches(jobs: Iterable, batch: int) -> Iterator[tuple[list, list]]:
    """Group the tiles of consecutive jobs into batches of at most ``batch`` tiles of one input shape.

    ``jobs`` yields ``_ImageJob`` or anything else (failures), which is passed through. Yields
    ``(tile_items, passthrough)``: ``tile_items`` a list of ``(job, tile_index)`` (possibly empty) and the
    non-job items met before the batch was closed, in order.
    """
    pending: list = []
    passthrough: list = []
    for job in jobs:
        if not isinstance(job, _ImageJob):
            passthrough.append(job)
            if not pending:
                yield [], passthrough
                passthrough = []
            continue
        for k in range(len(job.tiles)):
            if pending and (len(pending) == batch or pending[0][0].input_shape != job.input_shape):
                yield pending, passthrough
                pending, passthrough = [], []
            pending.append((job, k))
    if pending or passthrough:
        yield pending, passthrough


def detector_stride(detector) -> int:
    """The multiple the detector needs its input sides to be (``detector.stride``, default 128)."""
    return int(getattr(detector, "stride", DEFAULT_STRIDE))


def detector_device(detector):
    """The torch device holding the detector's parameters (CPU when it has none)."""
    import torch

    device = getattr(detector, "device", None)
    if device is not None:
        return torch.device(device)
    parameters = getattr(detector, "parameters", None)
    if parameters is not None:
        for parameter in parameters():
            return parameter.device
    return torch.device("cpu")


def _predict_batch(detector, items: list, options: InferenceOptions, device) -> None:
    """Cut the batch's tiles into one padded uint8 buffer, predict, and store each tile's detections (shifted
    to rescaled-image coordinates) on its job."""
    import torch

    hp, wp = items[0][0].input_shape
    staging = np.zeros((len(items), hp, wp, 3), np.uint8)  # [B, Hp, Wp, 3]; zero padding right/bottom
    for b, (job, k) in enumerate(items):
        t = job.tiles[k]
        staging[b, :t.height, :t.width] = job.image[t.y0:t.y1, t.x0:t.x1]
    # uint8 goes to the device (4x less traffic than float); [B, 3, Hp, Wp] float32 in [0, 1] there
    x = torch.from_numpy(staging).to(device).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
    autocast = torch.autocast(device_type=device.type, dtype=torch.float16, enabled=options.half)
    with torch.inference_mode(), autocast:
        outputs = detector.predict(x, score_threshold=options.score_threshold, max_det_per_image=options.max_det,
                                   nms_iou=options.nms_iou)
    for (job, k), out in zip(items, outputs):
        t = job.tiles[k]
        boxes = out["boxes"].detach().float().cpu().numpy().astype(np.float64).reshape(-1, BOX_DIM)
        boxes[:, 0] += t.x0
        boxes[:, 1] += t.y0
        if len(boxes) >= options.max_det:
            job.tile_capped += 1
        heading = out.get("heading")
        job.results.append(RawDetections(
            boxes, out["scores"].detach().float().cpu().numpy().astype(np.float64),
            out["labels"].detach().cpu().numpy().astype(np.int64), np.full(len(boxes), k, np.int64),
            None if heading is None else heading.detach().float().cpu().numpy().astype(np.float64)))


def _finish_job(job: _ImageJob, options: InferenceOptions, device, name: str) -> tuple[RawDetections, bool]:
    """Merge a finished job's tile detections, cap them, map them to original pixels and apply the box scales.
    Returns the final detections (original-image xywha) and whether a cap was reached."""
    merged = merge_tile_detections(RawDetections.concat(job.results), job.tiles, nms_iou=options.nms_iou,
                                   margin=options.border_margin, device=device)
    capped = job.tile_capped > 0
    if job.tile_capped:
        logger.warning("%s: %d tile(s) reached the cap of %d detections per tile; raise max_det to see them all",
                       name, job.tile_capped, options.max_det)
    if len(merged) > options.max_det:
        logger.warning("%s: %d detections after merging, capped at max_det=%d (lowest scores dropped)",
                       name, len(merged), options.max_det)
        merged = merged.select(np.arange(options.max_det))
        capped = True
    sx, sy = job.factors
    boxes = scale_xywha(merged.boxes, 1.0 / sx, 1.0 / sy)
    boxes = apply_box_scales(boxes, options.width_scale, options.length_scale)
    heading = scale_heading(merged.heading, 1.0 / sx, 1.0 / sy)
    return RawDetections(boxes, merged.scores, merged.labels, merged.tile, heading), capped


def to_image_labels(dets: RawDetections, class_names: Sequence[str], *, image: str | None = None,
                    size: tuple[int, int] | None = None, mode: str = "obb") -> ImageLabels:
    """Detections as :class:`ImageLabels` (class names from indices; scores set).

    ``mode="aabb"``: each box becomes its axis-aligned hull, written as an OBB with angle 0 (or -90 deg when
    taller than wide: the long side is always ``length``), with ``aabb`` filled and the hull also kept as an
    extra ``bbox: [x_min, y_min, x_max, y_max]`` key, so obb_json readers and AABB tools both understand it.
    """
    if mode not in ("obb", "aabb"):
        raise ValueError(f"mode must be 'obb' or 'aabb', got {mode!r}")
    classes = [class_names[int(c)] if 0 <= int(c) < len(class_names) else str(int(c)) for c in dets.labels]
    width, height = size if size is not None else (None, None)
    labels = ImageLabels(image=image, width=width, height=height, boxes=dets.boxes.copy(), classes=classes,
                         scores=dets.scores.copy(), difficult=np.zeros(len(dets), bool),
                         ignore=np.zeros(len(dets), bool),
                         heading=dets.heading.copy() if np.isfinite(dets.heading).any() else None)
    if mode == "aabb" and len(dets):
        from obbdet.boxes import aabb_to_xywha

        aabb = xywha_to_aabb(dets.boxes)
        labels.boxes = aabb_to_xywha(aabb)
        labels.aabb = aabb
        labels.extras = [{"bbox": [round(float(v), 3) for v in row]} for row in aabb]
    return labels


def detect_image(detector, image_rgb: np.ndarray, *, options: InferenceOptions = InferenceOptions(),
                 scale: float = 1.0, class_names: Sequence[str] | None = None, name: str = "<image>",
                 mode: str = "obb") -> ImageLabels:
    """Detect on one in-memory ``[H, W, 3]`` uint8 RGB image; boxes in the image's own pixels.

    ``scale`` is the network/image pixel ratio (:func:`rescale_factor`). Same tiling, batching and merging as
    :func:`run_inference`.
    """
    device = detector_device(detector)
    job = _make_job(name, image_rgb, scale, options, detector_stride(detector))
    for items, _ in _batches([job], options.batch):
        _predict_batch(detector, items, options, device)
    dets, _ = _finish_job(job, options, device, name)
    if class_names is None:
        class_names = [str(i) for i in range(int(dets.labels.max(initial=-1)) + 1)]
    names = list(class_names)
    return to_image_labels(dets, names, image=name, size=job.original_size, mode=mode)


# ---------------------------------------------------------------------------------------------------
# Folder runs
# ---------------------------------------------------------------------------------------------------

def output_paths(images: Sequence[Path], root: Path, out_dir: Path) -> tuple[dict, list[ImageFailure]]:
    """``{image: out_dir / relative_parent / (stem + '.json')}`` for every image, and a failure for each image
    whose output name is already taken by an earlier one (``a.jpg`` and ``a.png`` in one folder)."""
    taken: dict[Path, Path] = {}
    mapping, failures = {}, []
    for path in images:
        target = out_dir / path.relative_to(root).with_suffix(".json")
        if target in taken:
            failures.append(ImageFailure(str(path), f"output {target} already used by {taken[target]}"))
            continue
        taken[target] = path
        mapping[path] = target
    return mapping, failures


def check_output_dir(out_dir) -> Path:
    """Create ``out_dir`` and prove it writable; raises :class:`InferenceSetupError` (one line) otherwise."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise InferenceSetupError(f"output folder {out_dir} is not writable: {exc.strerror or exc}") from None
    return out_dir


def _load_jobs(paths: Sequence[Path], scale: float, options: InferenceOptions, stride: int, keep_original: bool
               ) -> Iterator:
    """Yield an ``_ImageJob`` per readable image (or an ``ImageFailure``), decoding the next image in a
    background thread while the current one is predicted (OpenCV releases the GIL while decoding)."""

    def load(path):
        try:
            image = read_image_rgb_checked(path)
        except ImageReadError as exc:
            return ImageFailure(str(path), exc.reason)
        try:
            return _make_job(path, image, scale, options, stride, keep_original)
        except (MemoryError, cv2.error) as exc:  # rescaling a huge image
            return ImageFailure(str(path), f"cannot rescale by {scale:.4g}: {type(exc).__name__} {exc}"[:300])

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="obbdet-read") as pool:
        future = pool.submit(load, paths[0]) if paths else None
        for i in range(len(paths)):
            result = future.result()
            future = pool.submit(load, paths[i + 1]) if i + 1 < len(paths) else None
            yield result


def overlay_path(target: Path, out_dir: Path) -> Path:
    """Where ``--draw`` puts the overlay of the detections written to ``target``: ``<out>/overlays/<same
    relative path>.jpg``, apart from the JSON files so that the output folder stays a clean label folder."""
    return Path(out_dir) / OVERLAY_DIR / Path(target).relative_to(out_dir).with_suffix(".jpg")


def _write_outputs(job: _ImageJob, dets: RawDetections, target: Path, class_names, mode: str,
                   overlay: Path | None) -> None:
    from obbdet.formats import write_obb_json

    path: Path = job.key
    labels = to_image_labels(dets, class_names, image=path.name, size=job.original_size, mode=mode)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_obb_json(target, labels)
    if overlay is not None:
        from obbdet.visualize import draw_labels, write_image_rgb

        overlay.parent.mkdir(parents=True, exist_ok=True)
        write_image_rgb(overlay, draw_labels(job.original, labels))


def run_inference(detector, images: Sequence[Path], root, out_dir, *, class_names: Sequence[str],
                  scale: float = 1.0, options: InferenceOptions = InferenceOptions(), mode: str = "obb",
                  draw: bool = False, progress: bool = True) -> InferenceSummary:
    """Detect on every image of ``images`` (paths under ``root``) and write one obb_json each under ``out_dir``
    (same relative folder, same stem). ``scale`` is the network/image pixel ratio (:func:`rescale_factor`).

    Images that cannot be read, decoded or written are listed in the summary's ``failures`` with the reason;
    the run goes on with the others. ``draw=True`` also writes an overlay per image (:func:`overlay_path`).
    """
    from tqdm import tqdm

    root, out_dir = Path(root), Path(out_dir)
    device = detector_device(detector)
    targets, failures = output_paths(images, root, out_dir)
    summary = InferenceSummary(failures=failures)
    todo = [p for p in images if p in targets]
    start = time.perf_counter()
    bar = tqdm(total=len(images), unit="img", desc="infer", disable=not progress, dynamic_ncols=True)
    bar.update(len(failures))
    jobs = _load_jobs(todo, scale, options, detector_stride(detector), keep_original=draw)
    for items, passthrough in _batches(jobs, options.batch):
        for failure in passthrough:
            summary.failures.append(failure)
            logger.warning("skipped %s", failure)
            bar.update(1)
        items = [item for item in items if not item[0].failed]
        if not items:
            continue
        batch_jobs = list(dict.fromkeys(job for job, _ in items))  # unique, in order
        try:
            _predict_batch(detector, items, options, device)
        except torch_out_of_memory() as exc:
            _fail_jobs(batch_jobs, f"out of memory in the forward pass ({str(exc).splitlines()[0][:120]}); "
                                   "use a smaller --batch or --tile, or tiles instead of --whole", summary, bar)
            continue
        for job in batch_jobs:
            if job.done:
                target = targets[job.key]
                _finish_and_write(job, target, summary, options, device, class_names, mode,
                                  overlay_path(target, out_dir) if draw else None)
                bar.update(1)
        last = batch_jobs[-1]  # progress inside a large image shows as its tile count
        bar.set_postfix(det=summary.detections, failed=len(summary.failures),
                        tiles=f"{len(last.results)}/{len(last.tiles)}", refresh=False)
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


def torch_out_of_memory() -> type[BaseException]:
    """The exception torch raises when a device runs out of memory."""
    import torch

    return getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def _fail_jobs(jobs: Sequence[_ImageJob], reason: str, summary: InferenceSummary, bar) -> None:
    """Mark jobs failed (their remaining tiles are skipped) and record one failure each."""
    import torch

    for job in jobs:
        job.failed = True
        job.results.clear()
        summary.failures.append(ImageFailure(str(job.key), reason))
        logger.warning("%s: %s", job.key, reason)
        bar.update(1)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _finish_and_write(job: _ImageJob, target: Path, summary: InferenceSummary, options, device, class_names,
                      mode: str, overlay: Path | None) -> None:
    name = str(job.key)
    dets, capped = _finish_job(job, options, device, name)
    try:
        _write_outputs(job, dets, target, class_names, mode, overlay)
    except (OSError, ValueError) as exc:
        summary.failures.append(ImageFailure(name, f"cannot write output: {exc}"))
        logger.warning("%s: cannot write output: %s", name, exc)
        return
    summary.images += 1
    summary.detections += len(dets)
    summary.megapixels += job.original_size[0] * job.original_size[1] / 1e6
    if capped:
        summary.capped.append(name)


# ---------------------------------------------------------------------------------------------------
# Setting up a run from a checkpoint (everything that can fail before any image is touched)
# ---------------------------------------------------------------------------------------------------

@dataclass
class PreparedRun:
    """A validated run: the detector, the images, where outputs go and how images are processed."""

    detector: object
    folder: Path
    images: list[Path]
    out_dir: Path
    class_names: list[str]
    scale: float
    train_vehicle_width: float | None
    vehicle_width: float
    options: InferenceOptions
    device: str
    scale_sources: dict = field(default_factory=dict)

    def describe(self) -> str:
        o = self.options
        stride = detector_stride(self.detector)
        how = "whole images" if o.whole else (f"tiles {network_tile(o.tile, stride)} px on the {stride}-px grid, "
                                              f"overlap >= {o.overlap} px, batch {o.batch}")
        if self.vehicle_width == NO_RESCALE:
            rescale = "no rescaling (vehicle_width -1)"
        else:
            rescale = (f"rescale x{self.scale:.4g} (training vehicle width {self.train_vehicle_width:.3g} px / "
                       f"{self.vehicle_width:g} px)")
        return (f"{len(self.images)} image(s) under {self.folder} -> {self.out_dir}\n"
                f"{rescale}; {how}; device {self.device}{' (float16)' if o.half else ''}\n"
                f"score >= {o.score_threshold:g}, NMS IoU {o.nms_iou:g}, max {o.max_det} detections/image, "
                f"width scale {o.width_scale:g} ({self.scale_sources.get('width', 'default')}), "
                f"length scale {o.length_scale:g} ({self.scale_sources.get('length', 'default')})")


@dataclass(frozen=True)
class CheckpointInfo:
    """What inference needs from a checkpoint besides the weights."""

    class_names: list[str]
    train_vehicle_width: float | None
    width_scale: float | None
    length_scale: float | None
    nms_iou: float | None


def checkpoint_info(ckpt: dict) -> CheckpointInfo:
    """Class names, training vehicle width, calibration factors and the training NMS IoU of a loaded checkpoint."""
    from obbdet.checkpoint import checkpoint_inference_meta

    meta = checkpoint_inference_meta(ckpt)
    return CheckpointInfo(list(meta["class_names"]), meta.get("vehicle_width"), meta.get("width_scale"),
                          meta.get("length_scale"), meta.get("nms_iou"))


def resolve_device(device: str | None, half: bool) -> str:
    """The torch device string to run on (``None``: CUDA when available); raises InferenceSetupError."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise InferenceSetupError(f"unknown device {device!r} (use cpu, cuda or cuda:N)") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise InferenceSetupError(f"device {device!r} requested but CUDA is not available")
    if parsed.type not in ("cpu", "cuda"):
        raise InferenceSetupError(f"unsupported device {device!r} (use cpu, cuda or cuda:N)")
    if half and parsed.type != "cuda":
        raise InferenceSetupError("--half needs a CUDA device")
    return device


def load_detector(checkpoint, device: str, use_ema: bool = True):
    """``(detector, CheckpointInfo)`` from a checkpoint file; raises InferenceSetupError (one line)."""
    from obbdet.checkpoint import CheckpointError, build_detector_from_checkpoint, load_checkpoint

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise InferenceSetupError(f"checkpoint {checkpoint} not found")
    try:
        ckpt = load_checkpoint(checkpoint, map_location="cpu")
        info = checkpoint_info(ckpt)
        detector = build_detector_from_checkpoint(ckpt, device=device, use_ema=use_ema)
    except CheckpointError as exc:
        raise InferenceSetupError(str(exc).splitlines()[0]) from None
    if hasattr(detector, "eval"):
        detector.eval()
    return detector, info


def prepare_run(folder, vehicle_width: float, checkpoint, *, out_dir=None, device: str | None = None,
                tile: int = 768, overlap: int = 128, whole: bool = False, batch: int = 4,
                score_threshold: float = 0.05, nms_iou: float | None = None, max_det: int = 1000,
                width_scale: float | None = None, length_scale: float | None = None, half: bool = False,
                use_ema: bool = True, detector_loader=load_detector) -> PreparedRun:
    """Validate everything before any image is processed; raises :class:`InferenceSetupError` (one line).

    Checks, in order: the input folder and its images, the options, the device, the checkpoint (an obbdet
    checkpoint with a training vehicle width unless ``vehicle_width == -1``), and that the output folder
    (default ``<folder>_det``) can be created and written.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InferenceSetupError(f"input folder {folder} not found or not a folder")
    resolved = folder.resolve()
    out_dir = Path(out_dir) if out_dir is not None else resolved.parent / f"{resolved.name}_det"
    images = discover_images(folder, exclude=[out_dir])
    if not images:
        raise InferenceSetupError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {folder}")
    try:  # option ranges first: cheap, and nothing has been loaded yet
        options = InferenceOptions(tile=tile, overlap=overlap, whole=whole, batch=batch,
                                   score_threshold=score_threshold, nms_iou=nms_iou if nms_iou is not None else 0.4,
                                   max_det=max_det, width_scale=_first_set(width_scale, 1.0),
                                   length_scale=_first_set(length_scale, 1.0), half=half)
    except ValueError as exc:
        raise InferenceSetupError(str(exc)) from None
    device = resolve_device(device, half)
    detector, info = detector_loader(checkpoint, device, use_ema)
    try:
        scale = rescale_factor(info.train_vehicle_width, vehicle_width)
    except ValueError as exc:
        raise InferenceSetupError(f"{checkpoint}: {exc}") from None
    sources = {"width": "--width-scale" if width_scale is not None else
               "checkpoint calibration" if info.width_scale is not None else "default",
               "length": "--length-scale" if length_scale is not None else
               "checkpoint calibration" if info.length_scale is not None else "default"}
    options = replace(options, nms_iou=nms_iou if nms_iou is not None else (info.nms_iou or 0.4),
                      width_scale=_first_set(width_scale, info.width_scale, 1.0),
                      length_scale=_first_set(length_scale, info.length_scale, 1.0))
    check_output_dir(out_dir)
    return PreparedRun(detector, folder, images, out_dir, info.class_names, scale, info.train_vehicle_width,
                       vehicle_width, options, device, sources)


def _first_set(*values):
    return next(v for v in values if v is not None)
