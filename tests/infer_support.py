"""Stand-ins shared by the inference tests: a detector whose answers are known, scenes it detects, files.

``BrightRectDetector`` "detects" bright rectangles (thresholding + image moments): it sees half a vehicle where
a tile border cuts one, exactly like a real model, so tiling, merging, rescaling and caps are tested against
known geometry.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from obbdet.boxes import BOX_DIM, normalize_xywha, xywha_to_poly
from obbdet.imageio import PAD_GREY
from obbdet.inference import InferenceOptions, Predictor
from obbdet.iou import box_iou_rotated
from obbdet.model.tta import predict_views


def detect_image(detector, image, *, options=InferenceOptions(), scale=1.0, class_names=None, name=None):
    """One in-memory image through the Predictor (the path infer.py runs), as ImageLabels."""
    names = list(class_names) if class_names is not None else ["0", "1"]
    return Predictor(detector, names, options=options).predict(image, scale=scale, name=name).to_labels(image=name)


# ---------------------------------------------------------------------------------------------------
# A detector whose answers are known: bright rectangles -> their minimum-area rectangles
# ---------------------------------------------------------------------------------------------------

BACKGROUND = 30  # grey level of the synthetic ground
COLORS = {0: (240, 200, 60), 1: (60, 200, 240)}  # class 0 "red" cars, class 1 "blue" trucks; same mean level
FOREGROUND_MEAN = sum(COLORS[0]) / 3


class BrightRectDetector:
    """Finds bright blobs in ``[B, 3, H, W]`` float images in [0, 1] and returns, per blob, the rectangle with
    the blob's area-weighted centroid and second moments (exact for a rendered rectangle, a partial box for
    a rectangle cut by the image edge). Class 0 when red dominates, 1 when blue does; the score grows with
    the blob's area. Records each input shape it was called with. Exactly equivariant under flips and quarter
    turns of the pixel grid, so test-time augmentation (``obbdet.model.tta``) must give back the same boxes."""

    stride = 128

    def __init__(self):
        self.calls: list[tuple[int, ...]] = []

    def predict(self, images, score_threshold=0.05, max_det_per_image=1000, nms_iou=0.5, pre_nms_topk=None,
                vote_iou=0.0, tta="none"):
        """As ``Detector.predict``: candidates, then NMS, box voting and the views of ``tta`` fused."""
        return predict_views(self.candidates, images, tta, nms_iou=nms_iou, max_det=max_det_per_image,
                             vote_iou=vote_iou, score_threshold=score_threshold)

    def candidates(self, images) -> list[dict]:
        self.calls.append(tuple(images.shape))
        assert images.dtype == torch.float32 and images.shape[2] % self.stride == 0
        assert images.shape[3] % self.stride == 0
        return [self._one(img.permute(1, 2, 0).numpy(), 10 ** 9) for img in images]

    @staticmethod
    def _one(rgb: np.ndarray, max_det: int) -> dict:
        weight = np.clip((rgb.mean(axis=2) * 255 - BACKGROUND) / (FOREGROUND_MEAN - BACKGROUND), 0, 1)
        weight[np.all(np.abs(rgb * 255 - PAD_GREY) < 0.5, axis=2)] = 0  # padding, as a trained network learns
        count, components, stats, _ = cv2.connectedComponentsWithStats((weight > 0.5).astype(np.uint8))
        boxes, scores, labels = [], [], []
        height, width = weight.shape
        for k in range(1, count):
            x, y, w, h, _ = stats[k]
            x0, y0, x1, y1 = max(x - 1, 0), max(y - 1, 0), min(x + w + 1, width), min(y + h + 1, height)
            region = cv2.dilate((components[y0:y1, x0:x1] == k).astype(np.uint8), np.ones((3, 3), np.uint8))
            patch = weight[y0:y1, x0:x1] * region  # numpy moments: cv2.moments reads an Nx2 array as a contour
            ys, xs = np.mgrid[y0:y1, x0:x1] + 0.5  # pixel centres in pixel-corner coordinates
            mass = patch.sum()
            cx, cy = (patch * xs).sum() / mass, (patch * ys).sum() / mass
            mu20, mu02 = (patch * (xs - cx) ** 2).sum() / mass, (patch * (ys - cy) ** 2).sum() / mass
            mu11 = (patch * (xs - cx) * (ys - cy)).sum() / mass
            half_trace, spread = (mu20 + mu02) / 2, math.hypot((mu20 - mu02) / 2, mu11)
            # a uniform rectangle of side L has variance L^2 / 12 along that side
            boxes.append([cx, cy, math.sqrt(12 * (half_trace + spread)), math.sqrt(12 * max(half_trace - spread, 0.0)),
                          0.5 * math.atan2(2 * mu11, mu20 - mu02)])
            scores.append(min(0.99, 0.3 + mass / 2000.0))
            inside = patch > 0.5
            labels.append(0 if rgb[y0:y1, x0:x1, 0][inside].mean() >= rgb[y0:y1, x0:x1, 2][inside].mean() else 1)
        boxes = normalize_xywha(np.asarray(boxes, dtype=np.float64).reshape(-1, BOX_DIM))
        order = np.argsort(-np.asarray(scores), kind="stable")[:max_det]
        return {"boxes": torch.as_tensor(boxes[order], dtype=torch.float32),
                "scores": torch.as_tensor(np.asarray(scores)[order], dtype=torch.float32),
                "labels": torch.as_tensor(np.asarray(labels, dtype=np.int64)[order])}


def render_rects(width: int, height: int, boxes: np.ndarray, labels=None, scale: float = 1.0,
                 supersample: int = 4) -> np.ndarray:
    """A dark ``[H, W, 3]`` uint8 RGB scene of ``width x height`` x ``scale`` px with each box ``[N, 5]`` (given at
    scale 1) filled in its class colour; edges anti-aliased by exact-ish area coverage (supersampling)."""
    out_h, out_w = int(round(height * scale)), int(round(width * scale))
    labels = np.zeros(len(boxes), int) if labels is None else np.asarray(labels)
    image = np.full((out_h, out_w, 3), BACKGROUND, np.float32)
    for cls, color in COLORS.items():
        sel = np.asarray(boxes, dtype=np.float64).reshape(-1, BOX_DIM)[labels == cls]
        if not len(sel):
            continue
        big = np.zeros((out_h * supersample, out_w * supersample), np.uint8)
        polys = xywha_to_poly(sel) * scale * supersample - 0.5  # pixel-corner -> OpenCV pixel-centre coordinates
        cv2.fillPoly(big, list(np.round(polys * 16).astype(np.int32)), 255, cv2.LINE_8, 4)
        cover = cv2.resize(big, (out_w, out_h), interpolation=cv2.INTER_AREA).astype(np.float32)[..., None] / 255
        image = image * (1 - cover) + np.array(color, np.float32) * cover
    return np.round(image).astype(np.uint8)


def grid_boxes(nx: int, ny: int, spacing: float, origin=(20.0, 20.0), size=(36.0, 16.0), seed=0) -> np.ndarray:
    """Non-overlapping vehicles on a jittered grid, random angles: ``[nx*ny, 5]``."""
    rng = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.arange(nx) * spacing + origin[0], np.arange(ny) * spacing + origin[1])
    n = nx * ny
    jitter = rng.uniform(-0.1, 0.1, (n, 2)) * spacing
    return np.column_stack([xs.ravel() + jitter[:, 0], ys.ravel() + jitter[:, 1], np.full(n, size[0]),
                            np.full(n, size[1]), rng.uniform(-math.pi / 2, math.pi / 2, n)])


def match_ious(gt: np.ndarray, det: np.ndarray) -> np.ndarray:
    """Best IoU of each GT box among the detections."""
    if len(det) == 0:
        return np.zeros(len(gt))
    return box_iou_rotated(gt, det).max(axis=1)


def write_good(path: Path, boxes, size=(320, 256)):
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(path.suffix, cv2.cvtColor(render_rects(*size, boxes), cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(data.tobytes())
    return data.tobytes()


def bad_input_folder(root: Path) -> tuple[list[str], dict[str, str]]:
    """Good images in nested folders among bad files; returns (good relative paths, bad name -> reason)."""
    boxes = grid_boxes(3, 2, 90.0, origin=(50.0, 50.0), seed=7)
    good = ["a.jpg", "sub/b.png", "sub/deeper/c.tif", "d.BMP"]
    for rel in good:
        write_good(root / rel, boxes)
    (root / "empty.jpg").write_bytes(b"")
    jpeg = (root / "a.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(jpeg[: len(jpeg) * 2 // 3])
    (root / "notes.png").write_text("this is not an image\n")
    (root / "broken_link.jpg").symlink_to(root / "does_not_exist.jpg")
    (root / "readme.txt").write_text("ignored: not an image extension")
    bad = {"empty.jpg": "empty file", "truncated.jpg": "cannot decode", "notes.png": "cannot decode",
           "broken_link.jpg": "not found"}
    if os.geteuid() != 0:  # root reads anything: the permission case needs an ordinary user
        write_good(root / "locked.jpg", boxes)
        os.chmod(root / "locked.jpg", 0)
        bad["locked.jpg"] = "cannot read"
    return good, bad
