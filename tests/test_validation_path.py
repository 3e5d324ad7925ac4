"""Validation runs the inference path: the image at the training scale, cut into tiles, merged across tiles,
scored against the ground truth in the dataset's pixels: the same function infer.py runs."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from obbdet.data import DetectionDataset
from obbdet.engine import EvalOptions, validation_detections
from obbdet.inference import InferenceOptions, Predictor
from obbdet.structures import Sample
from tests.infer_support import BrightRectDetector, grid_boxes, match_ious, render_rects

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Detector(BrightRectDetector):
    def eval(self):
        return self


def test_validation_tiles_merges_and_matches_infer(tmp_path):
    boxes = grid_boxes(6, 5, 130.0, origin=(60.0, 60.0), seed=3)  # some vehicles straddle tile borders
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), cv2.cvtColor(render_rects(860, 700, boxes), cv2.COLOR_RGB2BGR))
    sample = Sample(image_path=str(path), width=860, height=700, boxes=boxes.astype(np.float32),
                    labels=np.zeros(len(boxes), np.int64), difficult=np.zeros(len(boxes), bool))
    detector = _Detector()
    options = EvalOptions(score_threshold=0.05, nms_iou=0.4, tile=384, overlap=96, batch=4, show_progress=False)
    (index, target, dets), = validation_detections(detector, DetectionDataset([sample]), torch.device("cpu"),
                                                   options)
    assert index == 0 and len(detector.calls) >= 2
    assert all(shape[2] <= 384 and shape[3] <= 384 for shape in detector.calls)  # tiles, not a letterbox
    np.testing.assert_allclose(target["boxes"].numpy(), boxes, rtol=1e-6)  # ground truth in dataset pixels
    assert len(dets) == len(boxes) and match_ious(boxes, dets.boxes).min() > 0.85  # cut vehicles found once
    # the Predictor (infer.py's path) with the same options gives the same boxes
    infer_opts = InferenceOptions(tile=384, overlap=96, batch=4, score_threshold=0.05, nms_iou=0.4)
    same = Predictor(_Detector(), ["car", "truck"], options=infer_opts).predict(path)
    np.testing.assert_array_equal(same.boxes, dets.boxes)
