"""Label sets with known geometry for the calibration tests."""
from __future__ import annotations

import numpy as np

from obbdet.structures import ImageLabels


def noisy_cars(seed: int = 0, n_images: int = 30, per_image: int = 25, widening: float = 1.0):
    """Ground-truth cars G and detections D: G's boxes with the width (short side) multiplied by ``widening``,
    plus the noise of a real detector (without it every factor within the 95% IoU of the true one would tie
    at mAP 100%). Returns ``(gt, det)``, dicts of :class:`ImageLabels` by image key."""
    rng = np.random.default_rng(seed)
    gt, det = {}, {}
    for i in range(n_images):
        n = per_image
        boxes = np.column_stack([rng.uniform(0, 1000, n), rng.uniform(0, 1000, n), rng.uniform(40, 50, n),
                                 rng.uniform(17, 21, n), rng.uniform(-np.pi / 2, np.pi / 2, n)])
        noisy = boxes.copy()
        noisy[:, 3] *= widening * rng.normal(1.0, 0.01, n)
        noisy[:, 2] *= rng.normal(1.0, 0.01, n)
        noisy[:, :2] += rng.normal(0, 0.4, (n, 2))
        noisy[:, 4] += rng.normal(0, np.radians(0.5), n)
        gt[f"{i:03d}"] = ImageLabels(boxes=boxes, classes=["car"] * n)
        det[f"{i:03d}"] = ImageLabels(boxes=noisy, classes=["car"] * n, scores=rng.random(n))
    return gt, det
