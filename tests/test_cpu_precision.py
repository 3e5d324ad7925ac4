"""CPU inference in bfloat16 (autocast) and channels_last against float32, through the Predictor.

The tiny checkpoint is barely trained: at each location its three anchor shapes score within rounding noise
of each other (which shape a location proposes is decided by the last bits), and its angle vectors are so
short that their direction is too (bfloat16 turned near-square boxes by up to 0.16 rad while moving their
centres by 0.01 px). A trained model decides both by wide margins; the checkpoint used here is the tiny one
with two biases that do the same: the class head's raised by 2 for the first anchor shape (every location
proposes that shape in any precision) and the angle head's ``cos 2a`` output raised by 1 (vectors of length
about 1). With a threshold of 0, no NMS (IoU 1) and every location a candidate, the detections of two
precisions are the same (location, class) pairs and are compared box by box.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from obbdet.inference import InferenceSetupError, Predictor

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EVERYTHING = dict(score_threshold=0.0, nms_iou=1.0, vote_iou=0.0, pre_nms_topk=10 ** 6, max_det=10 ** 6, whole=True)


@pytest.fixture(scope="module")
def one_shape_checkpoint(tiny_checkpoint, tmp_path_factory):
    from obbdet.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(tiny_checkpoint)
    classes = len(ckpt["model"]["class_names"])
    for key in ("state_dict", "ema_state_dict"):
        state = ckpt[key]
        state["net.class_net.predict.conv_pw.bias"][:classes] += 2.0  # channels (shape, class): shape 0
        angle_bias = [name for name in state if name.startswith("angle_predict.") and name.endswith(".bias")]
        state[angle_bias[-1]][0::2] += 1.0  # channels (shape, [cos 2a, sin 2a])
    path = tmp_path_factory.mktemp("precision") / "one_shape.pt"
    save_checkpoint(ckpt, path)
    return path


@pytest.fixture(scope="module")
def scene():
    from obbdet.datasets_registry.synthetic import render_scene

    return render_scene(3, 256, 192, vehicle_width=16.0)[0]


def best_iou(a, b) -> np.ndarray:
    """``[len(a)]``: each detection of ``a``'s best rotated IoU with a detection of ``b`` of its class."""
    from obbdet.iou import box_iou_rotated

    iou = box_iou_rotated(a.boxes, b.boxes)
    return np.where(a.labels[:, None] == b.labels[None, :], iou, 0.0).max(1)


def test_bfloat16_detections_match_float32(one_shape_checkpoint, scene):
    fp32 = Predictor.from_checkpoint(one_shape_checkpoint, "cpu", **EVERYTHING)
    bf16 = Predictor.from_checkpoint(one_shape_checkpoint, "cpu", precision="bf16", **EVERYTHING)
    assert bf16.options.bfloat16 and bf16.options.channels_last and not fp32.options.bfloat16
    a, b = fp32.predict(scene, -1), bf16.predict(scene, -1)
    assert len(a) == len(b) == 4 * (32 * 24 + 16 * 12 + 8 * 6)  # every location, every class
    iou = best_iou(a, b)
    assert iou.min() > 0.9, f"{(iou <= 0.9).sum()} of {len(a)} detections moved (worst IoU {iou.min():.3f})"
    assert np.median(iou) > 0.98
    assert np.abs(np.sort(a.scores) - np.sort(b.scores)).max() < 0.01  # bfloat16: an 8-bit mantissa
    assert np.isfinite(b.boxes).all() and b.boxes.dtype == np.float64 and b.scores.dtype == np.float64


def test_channels_last_gives_the_float32_detections(one_shape_checkpoint, scene):
    nchw = Predictor.from_checkpoint(one_shape_checkpoint, "cpu", channels_last=False, **EVERYTHING)
    nhwc = Predictor.from_checkpoint(one_shape_checkpoint, "cpu", **EVERYTHING)  # the CPU default
    assert nhwc.options.channels_last and not nchw.options.channels_last
    first_conv = next(m for m in nhwc.detector.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    a, b = nchw.predict(scene, -1), nhwc.predict(scene, -1)
    assert len(a) == len(b) and best_iou(a, b).min() > 0.999


def test_precision_options_are_checked(one_shape_checkpoint):
    with pytest.raises(InferenceSetupError, match="unknown precision"):
        Predictor.from_checkpoint(one_shape_checkpoint, "cpu", precision="int8")
    with pytest.raises(InferenceSetupError, match="exclude each other|CUDA"):
        Predictor.from_checkpoint(one_shape_checkpoint, "cpu", precision="bf16", half=True)

