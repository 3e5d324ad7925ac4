"""Drawing oriented boxes: labels, evaluation outcomes (TP / FP / missed), crops and contact sheets.

Images are ``[H, W, 3]`` uint8 **RGB** arrays (OpenCV is used for drawing only; files are read and written
through :func:`read_image_rgb` / :func:`write_image_rgb`, which convert from/to OpenCV's BGR). Boxes are
``xywha`` le90 rows ``[cx, cy, w, h, a]`` (pixels, radians; see ``obbdet.boxes``). Every drawing function
returns a new image and leaves its input untouched.

Colours of evaluation outcomes (RGB, also shown in the legend of ``tools/draw_obb.py``'s gallery):

- true-positive detection: green ``(0, 230, 0)``
- false-positive detection: red ``(255, 30, 30)``
- missed ground truth (false negative): yellow ``(255, 220, 0)``
- matched ground truth: cyan ``(0, 200, 255)``, drawn thin under its detection
- difficult ground truth and detections matched to it (neither TP nor FP): grey ``(160, 160, 160)``

When only one set of labels is drawn, each class gets its own colour from :func:`class_color`.
"""
from __future__ import annotations

import colorsys
import hashlib
import logging
import math
from typing import Callable, Sequence

import cv2
import numpy as np

from obbdet.boxes import BOX_DIM, xywha_to_aabb, xywha_to_poly
from obbdet.structures import ImageLabels

logger = logging.getLogger(__name__)

RGB = tuple[int, int, int]

OUTCOME_COLORS: dict[str, RGB] = {
    "tp": (0, 230, 0),
    "fp": (255, 30, 30),
    "missed": (255, 220, 0),
    "matched_gt": (0, 200, 255),
    "ignored": (160, 160, 160),
}
OUTCOME_DESCRIPTIONS = {
    "tp": "true-positive detection",
    "fp": "false-positive detection",
    "missed": "missed ground truth",
    "matched_gt": "matched ground truth",
    "ignored": "difficult ground truth / detection matched to it",
}

_SUBPIXEL_SHIFT = 4  # OpenCV fixed-point bits: polygons are drawn at 1/16 px precision
_FONT = cv2.FONT_HERSHEY_SIMPLEX


# ---------------------------------------------------------------------------------------------------
# Colours
# ---------------------------------------------------------------------------------------------------

def class_color(name: str) -> RGB:
    """A stable, saturated colour for a class name (the same in every run and process)."""
    digest = hashlib.md5(name.encode("utf-8")).digest()
    hue = digest[0] / 256.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def _text_color(background: RGB) -> RGB:
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def _cv_color(color: RGB) -> tuple[int, int, int]:
    """An OpenCV colour argument; our arrays are RGB and OpenCV writes channels in order, so RGB as given."""
    return tuple(int(c) for c in color)


# ---------------------------------------------------------------------------------------------------
# Primitives
# ---------------------------------------------------------------------------------------------------

def default_thickness(image_shape) -> int:
    """A line thickness that stays visible on large images: 1 px per ~800 px of the longer side, at least 1."""
    return max(1, int(round(max(image_shape[:2]) / 800)))


def draw_obbs(image_rgb: np.ndarray, boxes: np.ndarray, colors, *, thickness: int | None = None,
              captions: Sequence[str | None] | None = None, headings: np.ndarray | None = None,
              font_scale: float | None = None) -> np.ndarray:
    """Draw oriented boxes on a copy of ``image_rgb``.

    boxes: ``[N, 5]`` xywha (pixels, radians). colors: one RGB tuple for all boxes or N tuples.
    captions: N strings (or None entries) drawn on a filled tag at each box's top corner.
    headings: ``[N]`` radians in ``[-pi, pi)`` (NaN where unknown): an arrow from the centre towards the front.
    """
    out = np.ascontiguousarray(image_rgb.copy())
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, BOX_DIM)
    if not len(boxes):
        return out
    colors = _per_box_colors(colors, len(boxes))
    thickness = default_thickness(out.shape) if thickness is None else thickness
    polys = xywha_to_poly(boxes)
    for i, poly in enumerate(polys):
        fixed = np.round(poly * (1 << _SUBPIXEL_SHIFT)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [fixed], True, _cv_color(colors[i]), thickness, cv2.LINE_8, _SUBPIXEL_SHIFT)
    if headings is not None:
        _draw_heading_arrows(out, boxes, np.asarray(headings, dtype=np.float64), colors, thickness)
    if captions is not None:
        scale = font_scale if font_scale is not None else 0.3 + 0.1 * thickness
        for i, caption in enumerate(captions):
            if caption:
                _draw_tag(out, polys[i], caption, colors[i], scale)
    return out


def _per_box_colors(colors, n: int) -> list[RGB]:
    if isinstance(colors, tuple) and len(colors) == 3 and all(isinstance(c, (int, np.integer)) for c in colors):
        return [colors] * n
    colors = list(colors)
    if len(colors) != n:
        raise ValueError(f"draw_obbs: got {len(colors)} colours for {n} boxes")
    return colors


def _draw_heading_arrows(out, boxes, headings, colors, thickness: int) -> None:
    for i, box in enumerate(boxes):
        if i >= len(headings) or not math.isfinite(headings[i]):
            continue
        cx, cy, w = box[0], box[1], box[2]
        reach = max(w * 0.75, 6.0)  # past the front edge, so the tip is visible outside the box
        tip = (cx + reach * math.cos(headings[i]), cy + reach * math.sin(headings[i]))
        start = (int(round(cx)), int(round(cy)))
        end = (int(round(tip[0])), int(round(tip[1])))
        cv2.arrowedLine(out, start, end, _cv_color(colors[i]), thickness, cv2.LINE_AA, 0, 0.3)


def _draw_tag(out, poly: np.ndarray, text: str, color: RGB, scale: float) -> None:
    """A filled tag with ``text`` just above the top-most corner of ``poly`` (kept inside the image)."""
    (tw, th), baseline = cv2.getTextSize(text, _FONT, scale, 1)
    top = poly[np.argmin(poly[:, 1])]
    x = int(np.clip(round(top[0]) - tw // 2, 0, max(out.shape[1] - tw - 2, 0)))
    y_bottom = int(round(top[1])) - 3
    if y_bottom - th - baseline < 0:  # no room above: put the tag below the box
        y_bottom = int(round(poly[:, 1].max())) + th + baseline + 3
    y_bottom = int(np.clip(y_bottom, th + baseline, out.shape[0] - 1))
    cv2.rectangle(out, (x, y_bottom - th - baseline), (x + tw + 2, y_bottom), _cv_color(color), -1)
    cv2.putText(out, text, (x + 1, y_bottom - baseline), _FONT, scale, _cv_color(_text_color(color)), 1,
                cv2.LINE_AA)


# ---------------------------------------------------------------------------------------------------
# Labels and evaluation outcomes
# ---------------------------------------------------------------------------------------------------

def label_captions(labels: ImageLabels, *, show_class: bool = True, show_score: bool = True,
                   extra: Sequence[str] | None = None) -> list[str]:
    """Per-object captions such as ``"car 0.93"`` (class, score when present, and an optional suffix)."""
    captions = []
    for i in range(len(labels)):
        parts = [labels.classes[i]] if show_class else []
        if show_score and labels.scores is not None:
            parts.append(f"{labels.scores[i]:.2f}")
        if extra is not None and extra[i]:
            parts.append(extra[i])
        captions.append(" ".join(parts))
    return captions


def draw_labels(image_rgb: np.ndarray, labels: ImageLabels, color: RGB | Sequence[RGB] | Callable | None = None,
                *, show_class: bool = True, show_score: bool = True, score_threshold: float | None = None,
                thickness: int | None = None, arrows: bool = True) -> np.ndarray:
    """Draw one image's labels or detections on a copy of ``image_rgb`` (``[H, W, 3]`` uint8 RGB).

    color: one RGB tuple, N tuples, a function ``class_name -> RGB``, or None for :func:`class_color`.
    score_threshold: detections scoring below it are not drawn (labels without scores are all drawn).
    arrows: draw heading arrows where ``labels.heading`` is known.
    """
    keep = np.ones(len(labels), bool)
    if score_threshold is not None and labels.scores is not None:
        keep = labels.scores >= score_threshold
    index = np.flatnonzero(keep)
    if color is None or callable(color):
        pick = color or class_color
        colors = [pick(labels.classes[i]) for i in index]
    elif isinstance(color, tuple) and len(color) == 3 and not isinstance(color[0], (tuple, list)):
        colors = color
    else:
        colors = [tuple(color[i]) for i in index]
    captions = label_captions(labels, show_class=show_class, show_score=show_score)
    headings = labels.heading[index] if arrows and labels.heading is not None else None
    return draw_obbs(image_rgb, labels.boxes[index], colors, thickness=thickness,
                     captions=[captions[i] for i in index] if (show_class or show_score) else None,
                     headings=headings)


CAPTION_MODES = ("all", "errors", "none")


def draw_outcomes(image_rgb: np.ndarray, gt: ImageLabels | None, det: ImageLabels | None, *,
                  det_status: Sequence[str] | None = None, gt_status: Sequence[str] | None = None,
                  det_iou: np.ndarray | None = None, thickness: int | None = None, arrows: bool = True,
                  captions: str = "all", show_matched_gt: bool = True) -> np.ndarray:
    """Draw ground truth and detections coloured by evaluation outcome (see the module's colour table).

    det_status: per detection ``"tp"``, ``"fp"`` or ``"ignored"``; gt_status: per GT object ``"matched"``,
    ``"missed"`` or ``"ignored"`` (difficult). det_iou: optional ``[N]`` best IoU, shown on FP captions.
    captions: ``"all"`` (class and score on every drawn object but matched GT), ``"errors"`` (false
    positives and missed GT only, for crowded scenes) or ``"none"``.
    Drawing order: matched GT (thin), ignored, missed GT, TP, FP, so errors stay on top.
    """
    if captions not in CAPTION_MODES:
        raise ValueError(f"captions must be one of {CAPTION_MODES}, got {captions!r}")
    thickness = default_thickness(image_rgb.shape) if thickness is None else thickness
    text_for = {"all": {"ignored", "missed", "tp", "fp"}, "errors": {"missed", "fp"}, "none": set()}[captions]
    out = image_rgb
    if gt is not None and len(gt):
        gt_status = list(gt_status) if gt_status is not None else ["missed"] * len(gt)
        if show_matched_gt:
            out = _draw_subset(out, gt, gt_status, "matched", OUTCOME_COLORS["matched_gt"], max(1, thickness // 2),
                               None, arrows, captions=False)
        for status in ("ignored", "missed"):
            out = _draw_subset(out, gt, gt_status, status, OUTCOME_COLORS[status], thickness, None, arrows,
                               captions=status in text_for)
    if det is not None and len(det):
        det_status = list(det_status) if det_status is not None else ["fp"] * len(det)
        extra = None
        if det_iou is not None:
            extra = [f"IoU {v:.2f}" if s == "fp" and v > 0 else "" for s, v in zip(det_status, det_iou)]
        for status in ("ignored", "tp", "fp"):
            out = _draw_subset(out, det, det_status, status, OUTCOME_COLORS[status], thickness, extra, arrows,
                               captions=status in text_for)
    return out if out is not image_rgb else image_rgb.copy()


def crowded(boxes: np.ndarray, min_spacing: float = 60.0) -> bool:
    """Whether captions would cover each other: the median distance from a box centre to its nearest
    neighbour (``boxes [N, 5]`` xywha, pixels) is below ``min_spacing`` (about one caption's width)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, BOX_DIM)
    if len(boxes) < 2:
        return False
    from scipy.spatial import cKDTree

    distances, _ = cKDTree(boxes[:, :2]).query(boxes[:, :2], k=2)
    return bool(np.median(distances[:, 1]) < min_spacing)


def _draw_subset(image_rgb, labels: ImageLabels, status: Sequence[str], wanted: str, color: RGB, thickness: int,
                 extra, arrows: bool, captions: bool = True) -> np.ndarray:
    index = [i for i, s in enumerate(status) if s == wanted]
    if not index:
        return image_rgb
    texts = label_captions(labels, extra=extra) if captions else None
    headings = labels.heading[index] if arrows and labels.heading is not None else None
    return draw_obbs(image_rgb, labels.boxes[index], color, thickness=thickness,
                     captions=[texts[i] for i in index] if texts else None, headings=headings)


# ---------------------------------------------------------------------------------------------------
# Crops and contact sheets
# ---------------------------------------------------------------------------------------------------

def crop_with_context(image_rgb: np.ndarray, box: np.ndarray, *, context: float = 1.0, min_size: int = 48,
                      tile_size: int = 160, color: RGB = OUTCOME_COLORS["fp"],
                      extra_boxes: Sequence[tuple[np.ndarray, RGB]] = ()) -> np.ndarray:
    """A ``tile_size`` x ``tile_size`` RGB tile centred on ``box`` (``[5]`` xywha) with surrounding context.

    The square window is the box's axis-aligned extent enlarged by ``context`` times its longer extent on
    each side (at least ``min_size`` px); parts outside the image are padded grey. The box (and any
    ``extra_boxes``, e.g. the nearest ground truth) is drawn after scaling, so lines stay crisp.
    """
    box = np.asarray(box, dtype=np.float64).reshape(BOX_DIM)
    x0, y0, x1, y1 = xywha_to_aabb(box)
    side = max(max(x1 - x0, y1 - y0) * (1 + 2 * context), float(min_size))
    left, top = int(math.floor(box[0] - side / 2)), int(math.floor(box[1] - side / 2))
    side_px = int(math.ceil(side))
    window = _padded_window(image_rgb, left, top, side_px)
    scale = tile_size / side_px
    tile = cv2.resize(window, (tile_size, tile_size), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    for other, other_color in extra_boxes:
        tile = draw_obbs(tile, _to_tile(other, left, top, scale), other_color, thickness=1)
    return draw_obbs(tile, _to_tile(box, left, top, scale), color, thickness=2)


def _to_tile(box: np.ndarray, left: int, top: int, scale: float) -> np.ndarray:
    box = np.asarray(box, dtype=np.float64).reshape(BOX_DIM).copy()
    box[0] = (box[0] - left) * scale
    box[1] = (box[1] - top) * scale
    box[2:4] *= scale
    return box[None]


def _padded_window(image_rgb: np.ndarray, left: int, top: int, side: int) -> np.ndarray:
    height, width = image_rgb.shape[:2]
    window = np.full((side, side, 3), 114, np.uint8)
    src_x0, src_y0 = max(left, 0), max(top, 0)
    src_x1, src_y1 = min(left + side, width), min(top + side, height)
    if src_x1 > src_x0 and src_y1 > src_y0:
        window[src_y0 - top:src_y1 - top, src_x0 - left:src_x1 - left] = image_rgb[src_y0:src_y1, src_x0:src_x1]
    return window


def contact_sheet(tiles: Sequence[np.ndarray], captions: Sequence[str] | None = None, *, columns: int = 8,
                  caption_height: int = 16, gap: int = 4, title: str | None = None,
                  background: RGB = (32, 32, 32)) -> np.ndarray:
    """Lay equal-sized RGB tiles out in a grid with a caption under each (and an optional title line).

    Returns one ``[H, W, 3]`` uint8 RGB image; an empty tile list gives a small sheet showing the title only.
    """
    tile_h, tile_w = (tiles[0].shape[:2] if tiles else (64, 64))
    columns = max(1, min(columns, len(tiles) or 1))
    rows = max(1, math.ceil(len(tiles) / columns))
    title_h = 24 if title else 0
    cell_h = tile_h + caption_height + gap
    sheet_w = columns * (tile_w + gap) + gap
    sheet = np.empty((title_h + rows * cell_h + gap, sheet_w, 3), np.uint8)
    sheet[:] = background
    if title:
        cv2.putText(sheet, title, (gap, 17), _FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    for k, tile in enumerate(tiles):
        if tile.shape[:2] != (tile_h, tile_w):
            tile = cv2.resize(tile, (tile_w, tile_h), interpolation=cv2.INTER_AREA)
        r, c = divmod(k, columns)
        x, y = gap + c * (tile_w + gap), title_h + gap + r * cell_h
        sheet[y:y + tile_h, x:x + tile_w] = tile
        if captions is not None and captions[k]:
            _put_fitting_text(sheet, captions[k], x, y + tile_h + caption_height - 4, tile_w)
    return sheet


def _put_fitting_text(image, text: str, x: int, y: int, max_width: int) -> None:
    scale = 0.35
    (tw, _), _ = cv2.getTextSize(text, _FONT, scale, 1)
    while tw > max_width and len(text) > 4:
        text = text[:-4] + "..."
        (tw, _), _ = cv2.getTextSize(text, _FONT, scale, 1)
    cv2.putText(image, text, (x, y), _FONT, scale, (230, 230, 230), 1, cv2.LINE_AA)


def thumbnail(image_rgb: np.ndarray, max_side: int = 320) -> np.ndarray:
    """A copy scaled so its longer side is at most ``max_side`` px (smaller images are returned as copies)."""
    height, width = image_rgb.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return image_rgb.copy()
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    return cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)
