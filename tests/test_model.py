"""Detector, anchors, coder, criterion, postprocessing and checkpoints (tiny configs, CPU, no downloads)."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach a model hub

from obbdet.boxes import BOX_DIM, normalize_xywha  # noqa: E402
from obbdet.checkpoint import (  # noqa: E402
    CheckpointError, build_detector_from_checkpoint, checkpoint_inference_meta, load_checkpoint, save_checkpoint,
)
from obbdet.config import ModelConfig, variant_config  # noqa: E402
from obbdet.model import (  # noqa: E402
    AnchorGenerator, OBBCriterion, PretrainedWeightsError, build_detector, decode_xywha, encode_xywha, label_anchors,
)
from obbdet.model.anchors import label_anchors_atss  # noqa: E402
from obbdet.model.anchors import IGNORED, NEGATIVE  # noqa: E402
from obbdet.model.coder import vec_to_angle  # noqa: E402

CLASSES = ["car", "truck", "bus", "van"]


@pytest.fixture(scope="module")
def tiny_cfg():
    return variant_config("tiny")


@pytest.fixture(scope="module")
def detector(tiny_cfg):
    torch.manual_seed(0)
    return build_detector(tiny_cfg.model, CLASSES, heading=True)


def _target(boxes, labels=None, aabb_only=False, heading=None):
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, BOX_DIM)
    n = len(boxes)
    return {"boxes": boxes, "labels": torch.zeros(n, dtype=torch.int64) if labels is None else torch.as_tensor(labels),
            "difficult": torch.zeros(n, dtype=torch.bool), "aabb_only": aabb_only,
            "heading": None if heading is None else torch.as_tensor(heading, dtype=torch.float32)}


def _random_boxes(n, size, seed=0, min_len=8.0, max_len=60.0):
    rng = np.random.default_rng(seed)
    length = rng.uniform(min_len, max_len, n)
    width = length / rng.uniform(1.5, 4.0, n)
    boxes = np.stack([rng.uniform(0, size, n), rng.uniform(0, size, n), length, width,
                      rng.uniform(-math.pi / 2, math.pi / 2, n)], axis=1)
    return torch.as_tensor(normalize_xywha(boxes), dtype=torch.float32)


# ---------------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------------

def test_forward_shapes_and_finite_losses(detector, tiny_cfg):
    images = torch.rand(2, 3, 128, 128)
    outputs = detector(images)
    num_anchors = len(detector.anchors_for(128, 128))
    assert outputs["cls_logits"].shape == (2, num_anchors, len(CLASSES))
    assert outputs["box_deltas"].shape == (2, num_anchors, 4)
    assert outputs["angle_vec"].shape == (2, num_anchors, 2)
    assert outputs["heading_vec"].shape == (2, num_anchors, 2)
    criterion = OBBCriterion.from_config(len(CLASSES), tiny_cfg.loss)
    targets = [_target([[40, 50, 30, 12, 0.3], [90, 90, 20, 19, 1.0]], [0, 1], heading=[0.3, float("nan")]),
               _target(torch.zeros(0, BOX_DIM))]
    losses = criterion(outputs, targets, detector.anchors_for(128, 128))
    assert set(losses) == {"loss", "loss_cls", "loss_box", "loss_angle", "loss_iou", "loss_heading"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_box"] > 0 and losses["loss_angle"] > 0 and losses["loss_heading"] > 0
    losses["loss"].backward()
    grads = [p.grad for p in detector.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    detector.zero_grad(set_to_none=True)


def test_any_stride_multiple_input_size(detector):
    assert detector.stride == 32
    detector.postprocess.pre_nms_topk = 100  # untrained scores: keep NMS small
    for height, width in [(64, 96), (128, 256), (160, 32)]:
        out = detector.predict(torch.rand(1, 3, height, width), score_threshold=0.0, max_det_per_image=7)
        assert out[0]["boxes"].shape[1] == BOX_DIM and len(out[0]["boxes"]) <= 7
        assert len(out[0]["scores"]) == len(out[0]["labels"]) == len(out[0]["heading"])
        assert detector(torch.rand(1, 3, height, width))["cls_logits"].shape[1] == \
            len(detector.anchors_for(height, width))
    with pytest.raises(ValueError, match="multiple of the network stride 32"):
        detector(torch.rand(1, 3, 100, 128))


def test_predict_keeps_up_to_max_det_per_image(detector):
    assert detector.postprocess.max_det_per_image == 1000  # the default: dense scenes hold 300+ vehicles
    detector.postprocess.pre_nms_topk = 3000
    outputs = detector.predict(torch.rand(1, 3, 256, 256), score_threshold=0.0, nms_iou=1.0, vote_iou=0.0)
    assert len(outputs[0]["boxes"]) == 1000  # nothing suppressed: capped at exactly max_det_per_image
    assert (outputs[0]["scores"][:-1] >= outputs[0]["scores"][1:]).all()


def test_backbone_weights_file_must_exist(tmp_path):
    # model.pretrained without a file goes through timm's download: tests/test_model_init.py checks it offline
    with pytest.raises(PretrainedWeightsError, match="not found"):
        build_detector(ModelConfig(variant="obbdet_micro", image_size=128, backbone_weights=str(tmp_path / "x.pt")),
                       CLASSES)


def test_backbone_weights_from_local_file(tmp_path):
    import timm

    source = timm.create_model("mobilenetv3_small_050", pretrained=False)
    torch.nn.init.constant_(source.conv_stem.weight, 0.125)
    path = tmp_path / "backbone.pth"
    torch.save(source.state_dict(), path)
    det = build_detector(ModelConfig(variant="obbdet_micro", image_size=128, pretrained=True,
                                     backbone_weights=str(path)), CLASSES)
    assert torch.allclose(det.backbone.conv_stem.weight, torch.full_like(det.backbone.conv_stem.weight, 0.125))


def test_unknown_variant_lists_choices():
    with pytest.raises(ValueError, match="tf_efficientdet_d0"):
        build_detector(ModelConfig(variant="efficientdet_d99"), CLASSES)


# ---------------------------------------------------------------------------------------------------
# Anchors and labeling
# ---------------------------------------------------------------------------------------------------

def test_anchor_order_matches_levels():
    gen = AnchorGenerator(3, 5, 1, [1.0, 2.0, 0.5], 3.0)
    anchors = gen.anchors_xyxy(64, 128)
    assert anchors.shape == ((8 * 16 + 4 * 8 + 2 * 4) * 3, 4)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    assert torch.allclose(centres[:3], torch.tensor([[4.0, 4.0]] * 3))  # first cell, three aspects
    assert torch.allclose(centres[3], torch.tensor([12.0, 4.0]))  # next column
    assert gen.anchors_xyxy(64, 128) is anchors  # cached per size


@pytest.mark.parametrize("assign", [label_anchors, label_anchors_atss])
def test_labeling_empty_image(assign):
    anchors = AnchorGenerator(3, 5, 1, [1.0], 3.0).anchors(128, 128)
    assigned = assign(anchors, torch.zeros(0, BOX_DIM), torch.zeros(0, dtype=torch.int64))
    assert (assigned.labels == NEGATIVE).all()


def test_atss_thousand_boxes_every_object_learned():
    anchors = AnchorGenerator(3, 7, 3, [1.0, 2.0, 0.5], 4.0).anchors(1024, 1024)
    boxes = _random_boxes(1000, 1024, seed=5, min_len=10, max_len=80)
    labels = torch.arange(1000) % 4
    assigned = label_anchors_atss(anchors, boxes, labels)
    positive = assigned.labels >= 0
    assert torch.equal(assigned.labels[positive], labels[assigned.matched[positive]])
    assert assigned.matched[positive].unique().numel() >= 995  # only an anchor shared by two GT can lose one
    assert set(assigned.labels.unique().tolist()) <= {NEGATIVE, 0, 1, 2, 3}


def test_atss_positives_lie_inside_rotated_boxes_and_cover_elongated_ones():
    anchors = AnchorGenerator(3, 5, 3, [1.0, 2.0, 0.5], 3.0).anchors(256, 256)
    bus = [128.0, 128.0, 110.0, 24.0, 0.0]  # 4.6:1, axis-aligned: no anchor reaches IoU 0.5 with it
    diagonal_car = [60.0, 60.0, 40.0, 16.0, math.pi / 4]
    boxes = torch.tensor([bus, diagonal_car])
    atss = label_anchors_atss(anchors, boxes, torch.tensor([0, 1]))
    fixed = label_anchors(anchors, boxes, torch.tensor([0, 1]))
    for gt in (0, 1):
        mine = (atss.labels >= 0) & (atss.matched == gt)
        assert mine.sum() >= 3
        centres = (anchors.boxes[mine, :2] + anchors.boxes[mine, 2:]) / 2
        from obbdet.model.anchors import _centres_inside_xywha
        assert _centres_inside_xywha(centres, boxes[gt].expand(len(centres), -1)).all()
    assert ((fixed.labels >= 0) & (fixed.matched == 0)).sum() == 1  # fixed thresholds: only the forced match


def test_labeling_thousand_boxes_no_cap():
    anchors = AnchorGenerator(3, 7, 3, [1.0, 2.0, 0.5], 4.0).anchors(1024, 1024)
    boxes = _random_boxes(1000, 1024, seed=1, min_len=10, max_len=50)
    labels = torch.arange(1000) % 4
    assigned = label_anchors(anchors, boxes, labels)
    positive = assigned.labels >= 0
    assert set(assigned.labels.unique().tolist()) <= {NEGATIVE, IGNORED, 0, 1, 2, 3}
    assert torch.equal(assigned.labels[positive], labels[assigned.matched[positive]])
    matched_gt = assigned.matched[positive].unique()
    assert len(matched_gt) >= 980  # every GT claims its best anchor; only exact collisions can lose one
    assert matched_gt.max() >= 990  # boxes late in the list are labelled too: no cap at 100


def test_sparse_labeling_equals_dense():
    anchors = AnchorGenerator(3, 5, 3, [1.0, 2.0, 0.5], 3.0).anchors(256, 192)
    boxes = _random_boxes(120, 256, seed=4, min_len=4, max_len=120)
    boxes[:5, :2] = torch.tensor([[-10.0, 5], [250, 250], [0, 0], [191, 3], [96, 300]])  # at and beyond the edges
    labels = torch.arange(120) % 3
    sparse = label_anchors(anchors, boxes, labels)
    dense = label_anchors(anchors.boxes, boxes, labels)
    assert torch.equal(sparse.labels, dense.labels)
    positive = sparse.labels >= 0
    assert positive.sum() > 100 and torch.equal(sparse.matched[positive], dense.matched[positive])


def test_labeling_ignores_difficult_on_request_and_zero_size():
    anchors = AnchorGenerator(3, 5, 1, [1.0], 3.0).anchors_xyxy(128, 128)
    boxes = torch.tensor([[40.0, 40, 30, 12, 0.2], [90, 90, 30, 0, 0.0]])
    assigned = label_anchors(anchors, boxes, torch.tensor([1, 2]), gt_ignore=torch.tensor([True, False]))
    assert not (assigned.labels >= 0).any()
    assert (assigned.labels == IGNORED).any()


# ---------------------------------------------------------------------------------------------------
# Coder and angle loss
# ---------------------------------------------------------------------------------------------------

def test_decode_round_trip_iou():
    from obbdet.iou import box_iou_rotated

    boxes = _random_boxes(500, 512, seed=2)
    anchors_all = AnchorGenerator(3, 7, 3, [1.0, 2.0, 0.5], 4.0).anchors(512, 512)
    assigned = label_anchors(anchors_all, boxes, torch.zeros(len(boxes), dtype=torch.int64))
    positive = assigned.labels >= 0
    anchors, gt = anchors_all.boxes[positive], boxes[assigned.matched[positive]]
    deltas, angle = encode_xywha(gt, anchors)
    decoded = decode_xywha(deltas, angle, anchors)
    iou = box_iou_rotated(decoded.double(), gt.double(), aligned=True)
    assert len(iou) > 500 and iou.min() > 0.99
    # angle vectors decode to le90 angles, equal modulo pi (the same rectangle) at the boundary
    a = torch.tensor([-math.pi / 2, -1.0, 0.0, 1.0, math.pi / 2 - 1e-6], dtype=torch.float64)
    decoded_a = vec_to_angle(torch.stack([torch.cos(2 * a), torch.sin(2 * a)], -1))
    assert ((decoded_a >= -math.pi / 2) & (decoded_a < math.pi / 2)).all()
    difference = torch.remainder(decoded_a - a + math.pi / 2, math.pi) - math.pi / 2
    assert difference.abs().max() < 1e-6


def _loss_for_box(criterion, outputs, anchors, box):
    return criterion(outputs, [_target([box])], anchors)


@pytest.fixture(scope="module")
def fixed_outputs(detector):
    torch.manual_seed(3)
    with torch.no_grad():
        outputs = detector(torch.rand(1, 3, 128, 128))
    return outputs, detector.anchors_for(128, 128)


def test_angle_loss_continuous_across_90_degrees(fixed_outputs, tiny_cfg):
    outputs, anchors = fixed_outputs
    criterion = OBBCriterion.from_config(len(CLASSES), tiny_cfg.loss)
    eps = 1e-4
    below = _loss_for_box(criterion, outputs, anchors, [64, 64, 40, 14, math.pi / 2 - eps])
    above = _loss_for_box(criterion, outputs, anchors, [64, 64, 40, 14, -math.pi / 2])
    for name in ("loss_angle", "loss_box", "loss"):
        assert abs(float(below[name]) - float(above[name])) < 1e-3 * max(1.0, float(below[name]))
    assert float(below["loss_angle"]) > 0
    # a sweep through the boundary has no jump larger than its neighbours'
    angles = np.linspace(math.pi / 2 - 0.2, math.pi / 2 + 0.2, 41)
    values = [float(_loss_for_box(criterion, outputs, anchors, normalize_xywha(
        np.array([64, 64, 40, 14, a])).tolist())["loss_angle"]) for a in angles]
    steps = np.abs(np.diff(values))
    assert steps.max() < 5 * np.median(steps) + 1e-6


def test_square_box_loss_invariant_under_quarter_turns(fixed_outputs, tiny_cfg):
    outputs, anchors = fixed_outputs
    criterion = OBBCriterion.from_config(len(CLASSES), tiny_cfg.loss)
    reference = _loss_for_box(criterion, outputs, anchors, [64, 64, 24, 24, 0.3])
    for turns in (1, 2, 3):
        turned = normalize_xywha(np.array([64, 64, 24, 24, 0.3 + turns * math.pi / 2]))
        losses = _loss_for_box(criterion, outputs, anchors, turned.tolist())
        for name in ("loss", "loss_angle", "loss_box"):
            assert float(losses[name]) == pytest.approx(float(reference[name]), rel=1e-5, abs=1e-7)
    # a nearly square box changes its loss only a little when its representation flips by 90 degrees
    a = _loss_for_box(criterion, outputs, anchors, [64, 64, 24.2, 24, 0.3])["loss"]
    b = _loss_for_box(criterion, outputs, anchors, normalize_xywha(np.array([64, 64, 24, 24.2, 0.3 + math.pi / 2]))
                      .tolist())["loss"]
    assert float(a) == pytest.approx(float(b), rel=1e-3)


def test_aabb_only_masks_angle_loss(fixed_outputs, tiny_cfg):
    outputs, anchors = fixed_outputs
    criterion = OBBCriterion.from_config(len(CLASSES), tiny_cfg.loss)
    losses = criterion(outputs, [_target([[64, 64, 40, 14, 0.0]], aabb_only=True)], anchors)
    assert float(losses["loss_angle"]) == 0.0
    assert float(losses["loss_box"]) > 0


# ---------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------

def test_checkpoint_round_trip(detector, tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint({"model": detector.spec, "state_dict": detector.state_dict(), "ema_state_dict": None,
                     "vehicle_width": 14.5, "calibration": {"width_scale": 0.95, "length_scale": None},
                     "nms_iou": 0.4}, path)
    ckpt = load_checkpoint(path)
    rebuilt = build_detector_from_checkpoint(ckpt)
    images = torch.rand(1, 3, 96, 64)
    detector.eval()
    assert torch.allclose(rebuilt(images)["cls_logits"], detector(images)["cls_logits"], atol=1e-5)
    meta = checkpoint_inference_meta(ckpt)
    assert meta["class_names"] == CLASSES and meta["vehicle_width"] == 14.5 and meta["width_scale"] == 0.95


def test_load_checkpoint_rejects_other_files(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pt: not an obbdet checkpoint"):
        load_checkpoint(text)
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {}, "weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="format marker"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_candidates_take_the_best_anchor_shape_per_location():
    """Copies of one box (the anchor shapes of one location) cannot fill the per-class candidate cap: with a
    cap of 2, a second location still gets in, and each location proposes its best shape."""
    from obbdet.model.postprocess import PostProcessor

    shapes, locations = 3, 4
    probs = torch.full((locations * shapes, 1), 0.01)
    probs[0:3, 0] = torch.tensor([0.7, 0.9, 0.8])  # location 0: shape 1 is its best
    probs[3 * 2 + 2, 0] = 0.6  # location 2: shape 2
    logits = torch.logit(probs)
    scores, anchor_idx, labels = PostProcessor(anchors_per_location=shapes)._candidates(logits, 0.05, 2)
    assert anchor_idx.tolist() == [1, 8] and labels.tolist() == [0, 0]
    assert scores.tolist() == pytest.approx([0.9, 0.6])
    # one shape per location: the plain per-anchor top-k, where location 0's copies take both places
    _, anchor_idx, _ = PostProcessor(anchors_per_location=1)._candidates(logits, 0.05, 2)
    assert anchor_idx.tolist() == [1, 2]
