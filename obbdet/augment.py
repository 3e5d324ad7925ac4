"""OBB-aware augmentation: albumentations pipelines that carry oriented boxes through as corner keypoints.

Transforms are callables ``(image, target) -> (image, target)``:

- ``image``: ``[H, W, 3]`` uint8 RGB.
- ``target`` (dict): ``boxes`` ``[N, 5]`` float32 xywha le90 (radians; ``w >= h``; see ``obbdet.boxes``),
  ``labels`` ``[N]`` int64, ``difficult`` ``[N]`` bool (optional, default all False), ``heading`` ``[N]``
  float32 radians in ``[-pi, pi)`` with NaN where unknown (optional), ``angle_known`` ``[N]`` bool
  (optional, default all True, or all ``not aabb_only`` when a legacy ``aabb_only`` bool is given),
  ``base_scale`` float (optional: a resize factor applied before the random scale, e.g. to bring a dataset
  to the training vehicle width). Other keys are passed through unchanged. The per-object arrays come back
  filtered together (objects dropped by the crop removed from each), so they stay aligned with ``boxes``.

Coordinates are continuous: the image spans ``[0, W] x [0, H]`` and pixel ``(i, j)`` covers
``[i, i+1) x [j, j+1)`` (the DOTA devkit / mmrotate / ultralytics convention; a horizontal flip maps ``x`` to
``W - x``). albumentations places pixel centres on integers, so keypoints are shifted by half a pixel on the
way in and out.

How boxes travel: each box becomes 5 keypoints (its 4 corners and the midpoint of its front edge, or its
centre when the heading is unknown); the image and the keypoints go through one albumentations
``Compose``; afterwards each box is clipped to the output image (polygon clipped to the image rectangle),
dropped when the visible fraction of its area is below ``min_visible`` or its short side is below
``min_side`` px, and refitted with :func:`obbdet.boxes.poly_to_xywha` (minimum-area rectangle). The heading
is the direction from the box centre to the transformed front point, so flips mirror it and rotations turn
it, consistently with the pixels.

Objects of unknown angle (``angle_known`` False: VAID, CARPK, DroneVehicle ``<bndbox>`` objects): their
boxes are the bounds of objects of unknown orientation, so an arbitrary-angle rotation could only turn them
into loose rotated bounds of the bounds. For an image holding any such object the rotation is skipped
(flips, 90-degree turns, scale and crop still apply), so those boxes stay exactly axis-aligned, refitted as
the axis-aligned bounds of their clipped corners; the image's other objects are refitted as usual.

Training geometry (:class:`RotateScaleCrop`) is one affine warp from the source image straight to the
output window: scale, rotation and crop composed, so the cost depends on the output size only and no
corner is lost to an intermediate canvas (albumentations' ``Rotate`` followed by ``RandomCrop`` would warp
the whole source image first).
"""
from __future__ import annotations

import logging
import math
import os
import random
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from obbdet.boxes import (BOX_DIM, CORNERS, POINT_DIM, aabb_to_xywha, clip_polys_to_rect,  # noqa: E402
                          poly_to_xywha, wrap_angle, xywha_to_poly)
from obbdet.structures import angle_known_flags  # noqa: E402

logger = logging.getLogger(__name__)

POINTS_PER_BOX = CORNERS + 1  # 4 corners + the front-edge midpoint (heading)
DEFAULT_FILL = (114, 114, 114)  # grey padding for areas outside the source image


def _as_hw(image_size) -> tuple[int, int]:
    """``image_size`` (int or (height, width)) as (height, width)."""
    if isinstance(image_size, (tuple, list)):
        if len(image_size) != 2:
            raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
        return int(image_size[0]), int(image_size[1])
    return int(image_size), int(image_size)


def _affine_to_pixel_centres(linear: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """2x3 matrix in albumentations/OpenCV pixel-centre coordinates for the continuous map ``p -> L p + t``.

    With ``q = p - 0.5``: ``q' = L q + (L @ [0.5, 0.5] + t - 0.5)``.
    """
    return np.concatenate([linear, (linear @ np.array([0.5, 0.5]) + offset - 0.5)[:, None]], axis=1)


# ---------------------------------------------------------------------------------------------------
# Geometric transforms (albumentations DualTransforms)
# ---------------------------------------------------------------------------------------------------

class RotateScaleCrop(A.DualTransform):
    """Random scale, arbitrary-angle rotation (with probability) and a random crop/pad to ``(height, width)``.

    One ``cv2.warpAffine`` from the source to the output window. The scale is log-uniform in
    ``scale_range`` (times ``base_scale``); the rotation angle uniform in ``[-rotate_limit, rotate_limit]``
    degrees with probability ``rotate_prob`` (never when ``allow_rotation`` is False); the window is placed
    uniformly over the transformed image (which is centred at random inside the window when smaller, i.e.
    padded with ``fill``), or, with probability ``object_focus_prob``, so that it contains the centre of a
    random object (keypoints in groups of ``points_per_object``, corners first). The object is drawn with
    ``focus_weights`` (one per object, set per sample by ``OBBAugment``; None: uniform): class-balanced
    weights make a crop show a bus as often as a car when both are in the image.
    """

    def __init__(self, height: int, width: int, *, rotate_prob: float = 0.5, rotate_limit: float = 180.0,
                 scale_range: tuple[float, float] = (0.75, 1.33), object_focus_prob: float = 0.0,
                 points_per_object: int = POINTS_PER_BOX, fill=DEFAULT_FILL,
                 interpolation: int = cv2.INTER_LINEAR, p: float = 1.0):
        super().__init__(p=p)
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        if not 0.0 <= rotate_prob <= 1.0:
            raise ValueError(f"rotate_prob must be in [0, 1], got {rotate_prob}")
        self.height, self.width = int(height), int(width)
        self.rotate_prob, self.rotate_limit = float(rotate_prob), float(rotate_limit)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.object_focus_prob = float(object_focus_prob)
        self.points_per_object = int(points_per_object)
        self.fill = fill
        self.interpolation = interpolation
        self.allow_rotation = True  # set per sample by OBBAugment (False when an object's angle is unknown)
        self.base_scale = 1.0  # set per sample by OBBAugment
        self.focus_weights: list[float] | None = None  # set per sample by OBBAugment

    def get_transform_init_args_names(self):
        return ("height", "width", "rotate_prob", "rotate_limit", "scale_range", "object_focus_prob",
                "points_per_object", "fill", "interpolation")

    def _window_origin(self, lo: float, hi: float, size: int, focus: float | None) -> float:
        """Left (or top) edge of the window over transformed content spanning ``[lo, hi]``."""
        a, b = (lo, hi - size) if hi - lo >= size else (hi - size, lo)
        if focus is not None:  # keep the focus point a margin inside the window
            margin = min(size / 4, 32.0)
            fa, fb = max(a, focus - size + margin), min(b, focus - margin)
            if fa <= fb:
                a, b = fa, fb
        return self.py_random.uniform(a, b)

    def get_params_dependent_on_data(self, params, data):
        h, w = params["shape"][:2]
        scale = self.base_scale * math.exp(self.py_random.uniform(*np.log(self.scale_range)))
        angle = 0.0
        if self.allow_rotation and self.rotate_prob > 0 and self.py_random.random() < self.rotate_prob:
            angle = math.radians(self.py_random.uniform(-self.rotate_limit, self.rotate_limit))
        cos_a, sin_a = math.cos(angle) * scale, math.sin(angle) * scale
        linear = np.array([[cos_a, -sin_a], [sin_a, cos_a]])  # turns +x towards +y (clockwise on screen)
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], float) @ linear.T
        focus = self._focus_point(data.get("keypoints"), linear)
        ox = self._window_origin(corners[:, 0].min(), corners[:, 0].max(), self.width,
                                 None if focus is None else focus[0])
        oy = self._window_origin(corners[:, 1].min(), corners[:, 1].max(), self.height,
                                 None if focus is None else focus[1])
        return {"matrix": _affine_to_pixel_centres(linear, -np.array([ox, oy])), "angle": angle, "scale": scale}

    def _focus_point(self, keypoints, linear: np.ndarray):
        """The transformed centre of a random object, with probability ``object_focus_prob``."""
        if keypoints is None or len(keypoints) < self.points_per_object or self.object_focus_prob <= 0:
            return None
        if self.py_random.random() >= self.object_focus_prob:
            return None
        n_objects = len(keypoints) // self.points_per_object
        weights = self.focus_weights if self.focus_weights is not None and len(self.focus_weights) == n_objects \
            else None
        index = self.py_random.choices(range(n_objects), weights=weights)[0] if weights else \
            self.py_random.randrange(n_objects)
        k = index * self.points_per_object
        centre = np.asarray(keypoints[k:k + CORNERS, :2], float).mean(axis=0) + 0.5  # continuous coordinates
        return linear @ centre

    def apply(self, img, matrix=None, **params):
        fill = self.fill if img.ndim == 2 or np.ndim(self.fill) else (self.fill,) * img.shape[2]
        return cv2.warpAffine(img, matrix, (self.width, self.height), flags=self.interpolation,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=fill)

    def apply_to_keypoints(self, keypoints, matrix=None, **params):
        out = keypoints.copy()
        out[:, :2] = keypoints[:, :2] @ matrix[:, :2].T + matrix[:, 2]
        return out


class Letterbox(A.DualTransform):
    """Deterministic resize keeping the aspect ratio, then pad bottom/right to ``(height, width)``.

    The scale is ``base_scale`` (default 1: native resolution) unless the image would not fit, in which
    case it is the largest scale that fits; with ``allow_upscale`` it is always the fitting scale.
    """

    def __init__(self, height: int, width: int, *, allow_upscale: bool = False, fill=DEFAULT_FILL, p: float = 1.0):
        super().__init__(p=p)
        self.height, self.width = int(height), int(width)
        self.allow_upscale = bool(allow_upscale)
        self.fill = fill
        self.base_scale = 1.0

    def get_transform_init_args_names(self):
        return ("height", "width", "allow_upscale", "fill")

    def get_params_dependent_on_data(self, params, data):
        h, w = params["shape"][:2]
        fit = min(self.height / h, self.width / w)
        scale = fit if self.allow_upscale else min(self.base_scale, fit)
        new_w, new_h = max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)
        sx, sy = new_w / w, new_h / h  # exact per-axis factors after rounding to whole pixels
        return {"new_size": (new_w, new_h), "matrix": _affine_to_pixel_centres(np.diag([sx, sy]), np.zeros(2)),
                "resize": (sx, sy)}

    def apply(self, img, new_size=None, **params):
        if new_size != (img.shape[1], img.shape[0]):
            shrinking = new_size[0] < img.shape[1]
            img = cv2.resize(img, new_size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        pad_b, pad_r = max(self.height - img.shape[0], 0), max(self.width - img.shape[1], 0)
        fill = self.fill if img.ndim == 2 or np.ndim(self.fill) else (self.fill,) * img.shape[2]
        if pad_b or pad_r:
            img = cv2.copyMakeBorder(img, 0, pad_b, 0, pad_r, cv2.BORDER_CONSTANT, value=fill)
        return img[:self.height, :self.width]

    def apply_to_keypoints(self, keypoints, matrix=None, **params):
        out = keypoints.copy()
        out[:, :2] = keypoints[:, :2] @ matrix[:, :2].T + matrix[:, 2]
        return out


class CenterCropPad(A.DualTransform):
    """Deterministic centre crop to ``(height, width)`` at native resolution, padding (centred) when smaller.

    The offset is a whole number of pixels, so no resampling happens.
    """

    def __init__(self, height: int, width: int, *, fill=DEFAULT_FILL, p: float = 1.0):
        super().__init__(p=p)
        self.height, self.width = int(height), int(width)
        self.fill = fill

    def get_transform_init_args_names(self):
        return ("height", "width", "fill")

    def get_params_dependent_on_data(self, params, data):
        h, w = params["shape"][:2]
        ox, oy = (w - self.width) // 2, (h - self.height) // 2
        return {"matrix": np.array([[1.0, 0.0, -ox], [0.0, 1.0, -oy]])}

    def apply(self, img, matrix=None, **params):
        fill = self.fill if img.ndim == 2 or np.ndim(self.fill) else (self.fill,) * img.shape[2]
        return cv2.warpAffine(img, matrix, (self.width, self.height), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=fill)

    def apply_to_keypoints(self, keypoints, matrix=None, **params):
        out = keypoints.copy()
        out[:, :2] = keypoints[:, :2] + matrix[:, 2]
        return out


# ---------------------------------------------------------------------------------------------------
# Boxes <-> keypoints
# ---------------------------------------------------------------------------------------------------

def _check_target(target: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Validated (boxes [N,5] float64, labels [N] int64, difficult [N] bool, heading [N] float64 or None,
    angle_known [N] bool)."""
    boxes = np.asarray(target.get("boxes", np.zeros((0, BOX_DIM))), np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != BOX_DIM:
        raise ValueError(f"target['boxes'] must have shape [N, {BOX_DIM}], got {boxes.shape}")
    n = len(boxes)
    bad = np.flatnonzero(~np.isfinite(boxes).all(axis=1))
    if len(bad):
        raise ValueError(f"target['boxes'] has non-finite values at object #{int(bad[0])}: {boxes[bad[0]].tolist()}")
    labels = np.asarray(target.get("labels", np.zeros(n)), np.int64).reshape(-1)
    difficult = np.asarray(target.get("difficult", np.zeros(n, bool)), bool).reshape(-1)
    heading = target.get("heading")
    heading = None if heading is None else np.asarray(heading, np.float64).reshape(-1)
    angle_known = target.get("angle_known")
    angle_known = None if angle_known is None else np.asarray(angle_known, bool).reshape(-1)
    for name, arr in (("labels", labels), ("difficult", difficult), ("heading", heading),
                      ("angle_known", angle_known)):
        if arr is not None and len(arr) != n:
            raise ValueError(f"target['{name}'] has {len(arr)} entries for {n} boxes")
    angle_known = angle_known_flags(angle_known, n, bool(target.get("aabb_only", False)))
    return boxes, labels, difficult, heading, angle_known


def boxes_to_keypoints(boxes: np.ndarray, heading: np.ndarray | None) -> np.ndarray:
    """Keypoints ``[N * 5, 2]`` (continuous coordinates): each box's 4 corners, then its front point.

    The front point is the midpoint of the edge the heading points through (the centre when the heading
    is unknown).
    """
    n = len(boxes)
    corners = xywha_to_poly(boxes)  # [N, 4, 2]
    front = boxes[:, :2].copy()
    if heading is not None:
        known = np.isfinite(heading)
        reach = np.maximum(boxes[known, 2] / 2, 1.0)  # half the long side (the front edge); 1 px for empty boxes
        front[known] += reach[:, None] * np.stack([np.cos(heading[known]), np.sin(heading[known])], axis=-1)
    return np.concatenate([corners, front[:, None, :]], axis=1).reshape(n * POINTS_PER_BOX, POINT_DIM)


def _polygon_area(polys: np.ndarray) -> np.ndarray:
    x, y = polys[..., 0], polys[..., 1]
    return 0.5 * np.abs((x * np.roll(y, -1, axis=-1) - np.roll(x, -1, axis=-1) * y).sum(axis=-1))


def keypoints_to_boxes(points: np.ndarray, heading: np.ndarray | None, width: int, height: int, *,
                       min_visible: float, min_side: float, aabb_only):
    """Boxes from transformed keypoints ``[N * 5, 2]`` (continuous), clipped to ``[0, width] x [0, height]``.

    aabb_only: bool, or ``[N]`` bool per object: those boxes are refitted as the axis-aligned bounds of their
    clipped corners (objects of unknown angle), the others as minimum-area rectangles.
    Returns ``(boxes [M, 5] float64, heading [M] or None, keep [N] bool)``.
    """
    n = len(points) // POINTS_PER_BOX
    groups = points.reshape(n, POINTS_PER_BOX, POINT_DIM)
    corners, front = groups[:, :CORNERS], groups[:, CORNERS]
    inside = ((corners >= 0) & (corners <= (width, height))).all(axis=(1, 2))
    clipped = corners
    visible = np.ones(n)
    cut = np.flatnonzero(~inside)
    if len(cut):
        polys, area_in, area = clip_polys_to_rect(corners[cut], 0.0, 0.0, width, height)
        centre_in = ((corners[cut].mean(axis=1) >= 0) & (corners[cut].mean(axis=1) <= (width, height))).all(axis=1)
        visible[cut] = np.where(area > 0, area_in / np.maximum(area, 1e-12), centre_in.astype(float))
        q = polys.shape[1]
        clipped = np.concatenate([corners, np.repeat(corners[:, -1:], q - CORNERS, axis=1)], axis=1)
        clipped[cut] = polys
    aabb_only = np.broadcast_to(np.asarray(aabb_only, bool), (n,))
    boxes = poly_to_xywha(clipped, warn=False) if not aabb_only.all() else np.zeros((n, BOX_DIM))
    if aabb_only.any():  # stay axis-aligned: the bounds of the (clipped) corners
        bounds = clipped[aabb_only]
        boxes[aabb_only] = aabb_to_xywha(np.concatenate([bounds.min(axis=1), bounds.max(axis=1)], axis=1))
    keep = (visible >= min_visible) & (visible > 0) & (boxes[:, 3] >= min_side)
    out_heading = None
    if heading is not None:
        vec = front - corners.mean(axis=1)
        out_heading = np.where(np.isfinite(heading), np.arctan2(vec[:, 1], vec[:, 0]), np.nan)
        out_heading = np.where(np.isfinite(out_heading), wrap_angle(np.nan_to_num(out_heading), -math.pi, 2 * math.pi),
                               np.nan)[keep]
    return boxes[keep], out_heading, keep


# ---------------------------------------------------------------------------------------------------
# The (image, target) -> (image, target) transform
# ---------------------------------------------------------------------------------------------------

class OBBAugment:
    """An albumentations ``Compose`` wrapped as ``(image, target) -> (image, target)`` for oriented boxes.

    ``seed`` makes the sequence of augmentations reproducible. In a torch ``DataLoader`` worker (detected by
    a changed process id) the pipeline reseeds itself from ``(seed, the worker's torch seed)``, so workers
    differ from each other and from epoch to epoch, and a run seeded through torch is reproducible.
    """

    def __init__(self, transforms: list, *, min_visible: float = 0.5, min_side: float = 1.0, seed: int | None = None,
                 aabb_only_no_rotation: bool = True, balance_focus_classes: bool = True):
        if not 0.0 <= min_visible <= 1.0:
            raise ValueError(f"min_visible must be in [0, 1], got {min_visible}")
        self.pipeline = A.Compose(transforms, keypoint_params=A.KeypointParams(
            format="xy", remove_invisible=False, check_each_transform=False))
        self.min_visible, self.min_side = float(min_visible), float(min_side)
        self.seed = seed
        self.aabb_only_no_rotation = aabb_only_no_rotation
        self.balance_focus_classes = balance_focus_classes
        self._pid = os.getpid()
        self.reseed(seed)

    def reseed(self, seed: int | None, *extra: int) -> None:
        """Restart the random stream from ``seed`` (and optional extra entropy words).

        albumentations 2.0 seeds every transform of a ``Compose`` with the same seed, so their streams are
        identical and e.g. a horizontal and a vertical flip with equal probability always fire together.
        One shared generator for all transforms keeps their decisions independent.
        """
        words = ([] if seed is None else [int(seed) & 0xFFFFFFFF]) + [int(e) & 0xFFFFFFFF for e in extra]
        sequence = np.random.SeedSequence(words if words else None)
        state = sequence.generate_state(2)
        py_seed = int(state[0]) << 32 | int(state[1])
        self.pipeline.set_random_state(np.random.default_rng(sequence), random.Random(py_seed))

    def _maybe_reseed_for_worker(self) -> None:
        pid = os.getpid()
        if pid == self._pid:
            return
        self._pid = pid
        worker_seed = None
        if "torch" in sys.modules:
            info = sys.modules["torch"].utils.data.get_worker_info()
            worker_seed = None if info is None else int(info.seed)
        if worker_seed is None:
            worker_seed = pid
        if self.seed is None:
            self.reseed(None)
        else:
            self.reseed(self.seed, worker_seed & 0xFFFFFFFF, worker_seed >> 32)

    def _focus_weights(self, labels: np.ndarray) -> list[float] | None:
        """Per object ``1 / (objects of its class in the image)``: each class present is equally likely to be
        the crop's focus (None: uniform over objects)."""
        if not self.balance_focus_classes or not len(labels):
            return None
        _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        return (1.0 / counts[inverse]).tolist()

    def _set_sample_params(self, target: dict, labels: np.ndarray, angle_known: np.ndarray) -> None:
        # one unknown-angle object is enough: the rotation cannot be applied to some boxes only
        allow_rotation = not (self.aabb_only_no_rotation and not angle_known.all())
        base_scale = float(target.get("base_scale", 1.0))
        if not base_scale > 0:
            raise ValueError(f"target['base_scale'] must be > 0, got {base_scale}")
        for t in self.pipeline.transforms:
            if isinstance(t, RotateScaleCrop):
                t.allow_rotation = allow_rotation
                t.focus_weights = self._focus_weights(labels)
            if isinstance(t, (RotateScaleCrop, Letterbox)):
                t.base_scale = base_scale

    def __call__(self, image: np.ndarray, target: dict) -> tuple[np.ndarray, dict]:
        """Augment ``image`` ``[H, W, 3]`` uint8 RGB and its ``target`` (see the module docstring)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be [H, W, 3] uint8, got {image.shape} {image.dtype}")
        self._maybe_reseed_for_worker()
        boxes, labels, difficult, heading, angle_known = _check_target(target)
        self._set_sample_params(target, labels, angle_known)
        points = boxes_to_keypoints(boxes, heading) - 0.5  # albumentations: pixel centres on integers
        out = self.pipeline(image=image, keypoints=points)
        out_image = out["image"]
        moved = np.asarray(out["keypoints"], np.float64)[:, :POINT_DIM].reshape(-1, POINT_DIM) + 0.5
        new_boxes, new_heading, keep = keypoints_to_boxes(
            moved, heading, out_image.shape[1], out_image.shape[0], min_visible=self.min_visible,
            min_side=self.min_side, aabb_only=~angle_known)
        result = {k: v for k, v in target.items() if k != "base_scale"}
        result.update(boxes=new_boxes.astype(np.float32).reshape(-1, BOX_DIM), labels=labels[keep],
                      difficult=difficult[keep], angle_known=angle_known[keep])
        if heading is not None:
            result["heading"] = new_heading.astype(np.float32)
        self._record_resize(result, image.shape)
        return out_image, result

    def _record_resize(self, result: dict, shape) -> None:
        """Validation transforms record how to map outputs back to the source image."""
        for t in self.pipeline.transforms:
            if isinstance(t, Letterbox) and "resize" in t.params:
                result["resize"] = tuple(float(v) for v in t.params["resize"])
                result["orig_size"] = (int(shape[0]), int(shape[1]))
            elif isinstance(t, CenterCropPad) and "matrix" in t.params:
                result["offset"] = tuple(float(v) for v in t.params["matrix"][:, 2])
                result["orig_size"] = (int(shape[0]), int(shape[1]))


# ---------------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------------

def build_train_transform(image_size, rotate_prob: float = 0.5, scale_range: tuple[float, float] = (0.75, 1.33),
                          min_visible: float = 0.5, *, rotate_limit: float = 180.0, min_side: float = 1.0,
                          flip_prob: float = 0.5, rot90_prob: float = 0.75, object_focus_prob: float = 0.3,
                          balance_focus_classes: bool = True,
                          color_prob: float = 0.8, brightness: float = 0.25, contrast: float = 0.25,
                          saturation: float = 0.25, hue: float = 0.03, blur_prob: float = 0.1,
                          noise_prob: float = 0.2, noise_std: tuple[float, float] = (0.01, 0.04),
                          fill=DEFAULT_FILL, interpolation: int = cv2.INTER_LINEAR,
                          seed: int | None = None) -> OBBAugment:
    """The training pipeline: geometry, then colour, blur and noise.

    Args:
        image_size: output size, an int or (height, width).
        rotate_prob: probability of an arbitrary-angle rotation (uniform in +-``rotate_limit`` degrees).
        scale_range: random scale factors (log-uniform), times the target's ``base_scale``.
        min_visible: objects cut by the crop keep their visible part if at least this fraction of their
            area is visible, else they are dropped.
        min_side: objects whose short side ends up below this many px are dropped.
        flip_prob: probability of a horizontal flip, and (independently) of a vertical flip.
        rot90_prob: probability of a random multiple of 90 degrees (0, 90, 180 or 270) on square outputs.
        object_focus_prob: probability that the crop window is placed around a random object (helps on
            large sparse images); otherwise it is uniform over the image.
        balance_focus_classes: the focus object is drawn class-balanced (each class present in the image
            equally likely), so rare classes (buses among cars) are seen whole more often; False: uniform.
        color_prob, brightness, contrast, saturation, hue: ``A.ColorJitter`` settings.
        blur_prob: probability of a Gaussian or motion blur; noise_prob / noise_std: ``A.GaussNoise``.
        fill: padding colour; interpolation: OpenCV flag of the warp.
        seed: makes the augmentation sequence reproducible (None: fresh entropy).
    """
    height, width = _as_hw(image_size)
    transforms = [
        RotateScaleCrop(height, width, rotate_prob=rotate_prob, rotate_limit=rotate_limit, scale_range=scale_range,
                        object_focus_prob=object_focus_prob, fill=fill, interpolation=interpolation),
        A.HorizontalFlip(p=flip_prob),
        A.VerticalFlip(p=flip_prob),
    ]
    if height == width and rot90_prob > 0:
        transforms.append(A.RandomRotate90(p=rot90_prob))
    if color_prob > 0:
        transforms.append(A.ColorJitter(brightness=(1 - brightness, 1 + brightness),
                                        contrast=(1 - contrast, 1 + contrast),
                                        saturation=(1 - saturation, 1 + saturation), hue=(-hue, hue), p=color_prob))
    if blur_prob > 0:
        transforms.append(A.OneOf([A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.3, 1.2)),
                                   A.MotionBlur(blur_limit=(3, 5))], p=blur_prob))
    if noise_prob > 0:
        transforms.append(A.GaussNoise(std_range=noise_std, p=noise_prob))
    return OBBAugment(transforms, min_visible=min_visible, min_side=min_side, seed=seed,
                      balance_focus_classes=balance_focus_classes)


def build_val_transform(image_size, *, mode: str = "letterbox", allow_upscale: bool = False,
                        fill=DEFAULT_FILL) -> OBBAugment:
    """The deterministic validation pipeline.

    ``mode='letterbox'`` (default): the whole image at native resolution (times the target's
    ``base_scale``), shrunk only if it would not fit (``allow_upscale=True``: always scaled to fit), padded
    at the bottom/right; no object is lost. The output target gets ``resize`` = (sx, sy), the factors from
    source to output pixels, and ``orig_size`` = (height, width).
    ``mode='crop'``: the centre window at native resolution (padded, centred, when the image is smaller);
    objects cut by it are clipped like in training (``min_visible`` 0.5); the target gets ``offset`` =
    (dx, dy) added to source coordinates, and ``orig_size``.
    """
    height, width = _as_hw(image_size)
    if mode == "letterbox":
        transforms = [Letterbox(height, width, allow_upscale=allow_upscale, fill=fill)]
        min_visible = 0.0
    elif mode == "crop":
        transforms = [CenterCropPad(height, width, fill=fill)]
        min_visible = 0.5
    else:
        raise ValueError(f"mode must be 'letterbox' or 'crop', got {mode!r}")
    return OBBAugment(transforms, min_visible=min_visible, min_side=0.0, seed=0)
