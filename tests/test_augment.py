"""OBB-aware augmentation: boxes follow the pixels, headings follow the fronts, crops clip and drop."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from obbdet.augment import (CenterCropPad, OBBAugment, RotateScaleCrop, build_train_transform,
                            build_val_transform)
from obbdet.boxes import BOX_DIM, normalize_xywha, xywha_to_poly
from obbdet.iou import box_iou_rotated

A = pytest.importorskip("albumentations")

PALETTE = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255), (255, 128, 0),
           (128, 0, 255), (0, 128, 255), (255, 255, 255)]


def _raster(shape, box) -> np.ndarray:
    """Exact centre-sampled raster ``[H, W]`` bool of an xywha box: pixel (i, j) covers [i, i+1) x [j, j+1)
    and is in the box when its centre is."""
    mask = np.zeros(shape, bool)
    corners = xywha_to_poly(np.asarray(box, np.float64))
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int), (shape[1], shape[0]))
    if x0 >= x1 or y0 >= y1:
        return mask
    ys, xs = np.mgrid[y0:y1, x0:x1]
    dx, dy = xs + 0.5 - box[0], ys + 0.5 - box[1]
    c, s = math.cos(box[4]), math.sin(box[4])
    mask[y0:y1, x0:x1] = (np.abs(dx * c + dy * s) <= box[2] / 2) & (np.abs(-dx * s + dy * c) <= box[3] / 2)
    return mask


def _draw(image: np.ndarray, box, colour) -> None:
    image[_raster(image.shape[:2], box)] = colour


def _scene(rng: np.random.Generator, height: int = 360, width: int = 480, n: int = 8):
    """A black image with ``n`` non-overlapping filled boxes in distinct colours; labels = palette index."""
    image = np.zeros((height, width, 3), np.uint8)
    occupied = np.zeros((height, width), bool)
    boxes = []
    while len(boxes) < n:
        box = np.array([rng.uniform(40, width - 40), rng.uniform(40, height - 40), rng.uniform(60, 150),
                        rng.uniform(26, 55), rng.uniform(-math.pi / 2, math.pi / 2)])
        grown = _raster(occupied.shape, box + [0, 0, 8, 8, 0])
        if (grown & occupied).any():
            continue
        occupied |= grown
        _draw(image, box, PALETTE[len(boxes)])
        boxes.append(box)
    boxes = np.array(boxes)
    target = {"boxes": boxes.astype(np.float32), "labels": np.arange(n, dtype=np.int64),
              "difficult": np.zeros(n, bool), "heading": boxes[:, 4].astype(np.float32)}
    return image, target


def _mask_rect(image: np.ndarray, colour, squares: bool = False) -> tuple[np.ndarray | None, int]:
    """Min-area rectangle (xywha, continuous coordinates) of the pixels of exactly ``colour``, and their count.

    The rectangle fits the pixel centres, which for a centre-sampled raster of a rotated box lie close to
    its edges; ``squares=True`` fits the whole pixel squares instead (exact for axis-aligned boxes).
    """
    ys, xs = np.nonzero((image == np.array(colour, np.uint8)).all(axis=2))
    if len(xs) < 3:
        return None, len(xs)
    offsets = ((0, 0), (1, 0), (0, 1), (1, 1)) if squares else ((0.5, 0.5),)
    points = np.concatenate([np.stack([xs + dx, ys + dy], axis=1) for dx, dy in offsets]).astype(np.float32)
    (cx, cy), (w, h), deg = cv2.minAreaRect(points)
    return np.array([cx, cy, w, h, math.radians(deg)]), len(xs)


def _centroid(image: np.ndarray, colour) -> np.ndarray:
    ys, xs = np.nonzero((image == np.array(colour, np.uint8)).all(axis=2))
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


def _geometry_only(size: int, *, rotate_prob: float = 1.0, seed: int = 0, min_visible: float = 0.5):
    return build_train_transform(size, rotate_prob=rotate_prob, scale_range=(0.7, 1.4), min_visible=min_visible,
                                 object_focus_prob=0.5, color_prob=0, blur_prob=0, noise_prob=0, fill=(0, 0, 0),
                                 interpolation=cv2.INTER_NEAREST, seed=seed)


def test_boxes_follow_pixels_under_rotation_flips_scale_and_crop():
    rng = np.random.default_rng(0)
    transform = _geometry_only(320)
    ious, offsets, kept_checked = [], [], 0
    for trial in range(30):
        image, target = _scene(rng)
        out, result = transform(image, target)
        scale = transform.pipeline.transforms[0].params["scale"]
        kept = set(result["labels"].tolist())
        for box, label in zip(result["boxes"], result["labels"]):
            rect, _ = _mask_rect(out, PALETTE[label])
            assert rect is not None, f"trial {trial}: box {label} kept but no pixel of it is visible"
            ious.append(float(box_iou_rotated(box[None].astype(np.float64), rect[None], aligned=True)[0]))
            corners = xywha_to_poly(box.astype(np.float64))
            if (corners.min(axis=0) > 1).all() and (corners.max(axis=0) < np.array(out.shape[1::-1]) - 1).all():
                offsets.append(box[:2] - _centroid(out, PALETTE[label]))  # uncut: centre = pixel centroid
        for label in range(len(target["boxes"])):  # keep/drop decisions agree with the visible pixel fraction
            _, count = _mask_rect(out, PALETTE[label])
            full = target["boxes"][label, 2] * target["boxes"][label, 3] * scale ** 2
            if count > 0.65 * full:
                assert label in kept, f"trial {trial}: box {label} is {count / full:.0%} visible but dropped"
                kept_checked += 1
            elif count < 0.35 * full:
                assert label not in kept, f"trial {trial}: box {label} is {count / full:.0%} visible but kept"
    assert len(ious) > 100 and kept_checked > 100
    assert np.mean(ious) >= 0.95, f"mean IoU {np.mean(ious):.3f} over {len(ious)} boxes"
    assert np.percentile(ious, 5) >= 0.85
    # no systematic shift (a half-pixel convention error would show here)
    assert len(offsets) > 50 and np.all(np.abs(np.mean(offsets, axis=0)) < 0.12), np.mean(offsets, axis=0)


def test_axis_aligned_only_samples_stay_axis_aligned_and_follow_pixels():
    rng = np.random.default_rng(1)
    transform = _geometry_only(320)
    ious = []
    for _ in range(10):
        image = np.zeros((360, 480, 3), np.uint8)
        boxes = np.array([[80 + 100 * i, 90 + 60 * (i % 3), rng.uniform(40, 80), rng.uniform(20, 35), 0.0]
                          for i in range(4)])
        for i, box in enumerate(boxes):
            _draw(image, box, PALETTE[i])
        out, result = transform(image, {"boxes": boxes, "labels": np.arange(4), "aabb_only": True})
        assert result["aabb_only"] is True
        angles = result["boxes"][:, 4]
        assert np.all(np.isclose(angles, 0, atol=1e-5) | np.isclose(angles, -math.pi / 2, atol=1e-5))
        for box, label in zip(result["boxes"], result["labels"]):
            rect, _ = _mask_rect(out, PALETTE[label], squares=True)
            ious.append(float(box_iou_rotated(box[None].astype(np.float64), rect[None], aligned=True)[0]))
    assert np.mean(ious) >= 0.95


def _two_tone(heading: float, size: int = 200):
    """One box with its front half red and rear half blue, pointing along ``heading``."""
    image = np.zeros((size, size, 3), np.uint8)
    box = np.array([size / 2, size / 2, 90.0, 36.0, heading])
    c, s = math.cos(heading), math.sin(heading)
    front = np.array([size / 2 + c * 22.5, size / 2 + s * 22.5, 45.0, 36.0, heading])
    rear = np.array([size / 2 - c * 22.5, size / 2 - s * 22.5, 45.0, 36.0, heading])
    _draw(image, front, (255, 0, 0))
    _draw(image, rear, (0, 0, 255))
    return image, {"boxes": box[None], "labels": np.array([0]), "heading": np.array([heading], np.float32)}


def _pixel_heading(image: np.ndarray) -> float:
    red = np.argwhere((image == (255, 0, 0)).all(axis=2)).mean(axis=0)  # (y, x)
    blue = np.argwhere((image == (0, 0, 255)).all(axis=2)).mean(axis=0)
    return math.atan2(red[0] - blue[0], red[1] - blue[1])


def _angle_diff(a: float, b: float) -> float:
    return abs((a - b + math.pi) % (2 * math.pi) - math.pi)


def test_heading_follows_the_front_under_random_geometry():
    rng = np.random.default_rng(2)
    transform = build_train_transform(200, rotate_prob=0.9, scale_range=(0.8, 1.2), object_focus_prob=1.0,
                                      color_prob=0, blur_prob=0, noise_prob=0, fill=(0, 0, 0),
                                      interpolation=cv2.INTER_NEAREST, seed=3)
    checked = 0
    for _ in range(40):
        image, target = _two_tone(rng.uniform(-math.pi, math.pi))
        out, result = transform(image, target)
        if len(result["boxes"]) == 0 or result["boxes"][0, 2] < 60:  # cut by the crop: skip
            continue
        heading = float(result["heading"][0])
        assert -math.pi <= heading < math.pi
        assert _angle_diff(heading, _pixel_heading(out)) < math.radians(4)
        # the box angle is the heading's axis (le90: modulo pi)
        assert _angle_diff(2 * heading, 2 * float(result["boxes"][0, 4])) < math.radians(2)
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("flip, expected", [("h", lambda h: math.pi - h), ("v", lambda h: -h)])
def test_heading_under_flips(flip, expected):
    transform = OBBAugment([A.HorizontalFlip(p=1.0) if flip == "h" else A.VerticalFlip(p=1.0)], seed=0)
    for heading in (0.3, -2.5, 1.9, math.pi / 2):
        image, target = _two_tone(heading)
        out, result = transform(image, target)
        assert _angle_diff(float(result["heading"][0]), expected(heading)) < 1e-5
        assert _angle_diff(float(result["heading"][0]), _pixel_heading(out)) < math.radians(2)
        assert np.allclose(result["boxes"][0, :2], (100, 100), atol=1e-4)  # the centre maps to W - x / H - y


def test_unknown_heading_stays_unknown():
    transform = _geometry_only(200)
    image, target = _two_tone(0.5)
    target["heading"] = np.array([np.nan], np.float32)
    _, result = transform(image, target)
    assert len(result["heading"]) == len(result["boxes"])
    assert np.isnan(result["heading"]).all()


def test_crop_clips_and_drops_by_visible_fraction():
    image = np.zeros((200, 200, 3), np.uint8)
    # centre crop 100 x 100 covers [50, 150]^2 of the source; boxes 40 x 20, axis-aligned
    boxes = np.array([[100, 100, 40, 20, 0.0],  # inside
                      [154, 80, 40, 20, 0.0],  # x in [134, 174]: 16/40 = 40 % visible
                      [140, 120, 40, 20, 0.0],  # x in [120, 160]: 30/40 = 75 % visible
                      [100, 160, 40, 20, 0.0]])  # y in [150, 170]: outside
    target = {"boxes": boxes, "labels": np.arange(4), "difficult": np.array([False, True, False, False])}
    for min_visible, expected in ((0.5, [0, 2]), (0.3, [0, 1, 2]), (0.8, [0])):
        out, result = OBBAugment([CenterCropPad(100, 100)], min_visible=min_visible)(image, target)
        assert out.shape == (100, 100, 3)
        assert result["labels"].tolist() == expected
        got = dict(zip(result["labels"].tolist(), result["boxes"]))
        assert np.allclose(got[0], [50, 50, 40, 20, 0], atol=1e-4)
        if 2 in got:
            assert np.allclose(got[2][:4], [85, 70, 30, 20], atol=1e-4)  # clipped to x in [70, 100]
        if 1 in got:
            # 16 x 20 after the cut: the long side is now the vertical one (le90)
            assert np.allclose(got[1], normalize_xywha(np.array([92.0, 30, 16, 20, 0])), atol=1e-4)
            assert result["difficult"][result["labels"].tolist().index(1)]


def test_rotated_box_cut_by_the_crop_is_refitted_to_its_visible_part():
    image = np.zeros((200, 200, 3), np.uint8)
    box = np.array([[150, 100, 60, 20, math.radians(30)]])  # straddles the crop's right edge x = 150
    _draw(image, box[0], (255, 0, 0))
    out, result = OBBAugment([CenterCropPad(100, 100)], min_visible=0.3)(image, {"boxes": box, "labels": [0]})
    rect, _ = _mask_rect(out, (255, 0, 0))
    assert len(result["boxes"]) == 1
    assert result["boxes"][0, 0] + result["boxes"][0, 2] / 2 <= 100 + 30  # shrunk
    iou = box_iou_rotated(result["boxes"].astype(np.float64), rect[None], aligned=True)[0]
    assert iou > 0.9


def test_same_seed_same_augmentations_and_flips_are_independent():
    rng = np.random.default_rng(4)
    image, target = _scene(rng)
    a, b, c = (_geometry_only(256, seed=s) for s in (7, 7, 8))
    outs_a = [a(image, target) for _ in range(5)]
    outs_b = [b(image, target) for _ in range(5)]
    outs_c = [c(image, target) for _ in range(5)]
    for (ia, ta), (ib, tb) in zip(outs_a, outs_b):
        assert np.array_equal(ia, ib)
        assert np.array_equal(ta["boxes"], tb["boxes"])
    assert any(not np.array_equal(ia, ic) for (ia, _), (ic, _) in zip(outs_a, outs_c))
    # one shared random stream: a horizontal and a vertical flip of equal probability fire independently
    flips = OBBAugment([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)], seed=0)
    image, target = _two_tone(0.4)
    outcomes = {round(float(flips(image, target)[1]["heading"][0]), 3) for _ in range(40)}
    assert len(outcomes) == 4


def test_reseed_restarts_the_stream():
    image, target = _scene(np.random.default_rng(5))
    t = _geometry_only(256, seed=11)
    first = [t(image, target)[1]["boxes"] for _ in range(3)]
    t.reseed(11)
    again = [t(image, target)[1]["boxes"] for _ in range(3)]
    assert all(np.array_equal(x, y) for x, y in zip(first, again))


def test_train_transform_output_contract_and_passthrough():
    image, target = _scene(np.random.default_rng(6))
    target["image_id"] = "x"
    out, result = build_train_transform((256, 320), seed=0)(image, target)
    assert out.shape == (256, 320, 3) and out.dtype == np.uint8
    assert result["boxes"].dtype == np.float32 and result["boxes"].shape[1] == BOX_DIM
    assert result["labels"].dtype == np.int64 and result["difficult"].dtype == bool
    assert result["heading"].dtype == np.float32 and len(result["heading"]) == len(result["boxes"])
    assert result["image_id"] == "x"
    w, h, a = result["boxes"][:, 2], result["boxes"][:, 3], result["boxes"][:, 4]
    assert np.all(w >= h) and np.all(a >= -math.pi / 2) and np.all(a < math.pi / 2)


def test_empty_target_and_bad_input():
    transform = build_train_transform(128, seed=0)
    out, result = transform(np.zeros((100, 150, 3), np.uint8), {"boxes": np.zeros((0, 5)), "labels": np.zeros(0)})
    assert out.shape == (128, 128, 3) and result["boxes"].shape == (0, 5)
    with pytest.raises(ValueError, match="shape"):
        transform(np.zeros((10, 10, 3), np.uint8), {"boxes": np.zeros((2, 4)), "labels": [0, 1]})
    with pytest.raises(ValueError, match="object #1"):
        transform(np.zeros((10, 10, 3), np.uint8), {"boxes": [[5, 5, 4, 2, 0], [5, np.nan, 4, 2, 0]],
                                                     "labels": [0, 1]})
    with pytest.raises(ValueError, match="labels"):
        transform(np.zeros((10, 10, 3), np.uint8), {"boxes": [[5, 5, 4, 2, 0]], "labels": [0, 1]})


def test_val_letterbox_keeps_every_object_and_reports_the_resize():
    image = np.zeros((400, 800, 3), np.uint8)
    boxes = np.array([[100, 100, 40, 16, 0.3], [790, 390, 40, 16, -1.0], [400, 200, 30, 10, 1.2]])
    _draw(image, boxes[2], (255, 0, 0))
    out, result = build_val_transform(512)(image, {"boxes": boxes, "labels": [0, 1, 2]})
    assert out.shape == (512, 512, 3)
    assert result["resize"] == (0.64, 0.64) and result["orig_size"] == (400, 800)
    assert len(result["boxes"]) == 3
    assert np.allclose(result["boxes"][[0, 2], :4], boxes[[0, 2], :4] * 0.64, atol=1e-3)
    assert (out[256:] == 114).all()  # padded at the bottom
    # small images keep their native resolution unless upscaling is asked for
    _, small = build_val_transform(512)(np.zeros((100, 200, 3), np.uint8), {"boxes": boxes[:1], "labels": [0]})
    assert small["resize"] == (1.0, 1.0)
    _, up = build_val_transform(512, allow_upscale=True)(np.zeros((100, 200, 3), np.uint8),
                                                         {"boxes": boxes[:1], "labels": [0]})
    assert up["resize"] == (2.56, 2.56)


def test_base_scale_scales_the_sample():
    transform = OBBAugment([RotateScaleCrop(400, 400, rotate_prob=0.0, scale_range=(1.0, 1.0))], seed=0)
    image = np.zeros((400, 400, 3), np.uint8)
    _, result = transform(image, {"boxes": [[200, 200, 40, 20, 0.0]], "labels": [0], "base_scale": 0.5})
    assert np.allclose(result["boxes"][0, 2:4], [20, 10], atol=1e-4)
    assert "base_scale" not in result


def _crops_showing_class(balance: bool, n_crops: int = 200) -> float:
    """Fraction of 64 x 64 crops (always focused on an object) of a 1000 x 1000 image holding 60 cars in one
    corner and one bus in the other that contain the bus."""
    rng = np.random.default_rng(0)
    cars = np.column_stack([rng.uniform(50, 300, 60), rng.uniform(50, 300, 60), np.full(60, 20.0), np.full(60, 8.0),
                            np.zeros(60)])
    bus = np.array([[800.0, 800.0, 40.0, 10.0, 0.0]])
    target = {"boxes": np.vstack([cars, bus]).astype(np.float32), "labels": np.array([0] * 60 + [2])}
    transform = build_train_transform(64, rotate_prob=0.0, scale_range=(1.0, 1.0), object_focus_prob=1.0,
                                      balance_focus_classes=balance, color_prob=0, blur_prob=0, noise_prob=0,
                                      seed=3)
    image = np.zeros((1000, 1000, 3), np.uint8)
    return float(np.mean([2 in transform(image, target)[1]["labels"] for _ in range(n_crops)]))


def test_class_balanced_focus_shows_rare_classes_as_often_as_common_ones():
    # two classes in the image: balanced focus picks the bus half the time, uniform focus 1 time in 61
    assert 0.4 < _crops_showing_class(balance=True) < 0.6
    assert _crops_showing_class(balance=False) < 0.06
