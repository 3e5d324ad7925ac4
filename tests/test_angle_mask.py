"""Per-object angle mask: objects labelled only by an axis-aligned box carry ``angle_known`` False from the
importer, through caching, class mapping, augmentation and collation, into the loss, which gives them no
angle term and a bounded axis-aligned-hull term instead."""
from __future__ import annotations

import math
import pickle

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from obbdet.augment import OBBAugment, RotateScaleCrop, keypoints_to_boxes
from obbdet.boxes import BOX_DIM, xywha_to_poly
from obbdet.data import DetectionDataset, collate_detections, sample_target, targets_to_device
from obbdet.datasets_registry import load_dataset
from obbdet.datasets_registry.cache import pack_samples, unpack_samples
from obbdet.model import AnchorGenerator, OBBCriterion
from obbdet.model.loss import HULL_MIN_NORM, aabb_extent_deltas, aabb_target_deltas
from obbdet.structures import Sample
from tests.registry_files import (
    dv_bndbox, dv_point, dv_polygon, ro_object, rolabelimg_xml, voc_xml, write_dronevehicle, write_image, write_text,
)

A = pytest.importorskip("albumentations")

RECT = [(200, 150), (260, 150), (260, 180), (200, 180)]  # 60 x 30, axis-aligned polygon: its angle is known
TILTED = [(300, 300), (340, 320), (330, 340), (290, 320)]  # a rotated polygon


def _native_names(sample):
    return [sample.meta["classes"][i] for i in sample.labels]


def _ro_bndbox(x0, y0, x1, y1, name="car") -> str:
    """A roLabelImg axis-aligned object (``<type>bndbox</type>``), as the UAV-ROD importer reads it."""
    return (f"  <object>\n    <type>bndbox</type>\n    <name>{name}</name>\n    <difficult>0</difficult>\n"
            f"    <bndbox>\n      <xmin>{x0}</xmin>\n      <ymin>{y0}</ymin>\n      <xmax>{x1}</xmax>\n"
            f"      <ymax>{y1}</ymax>\n    </bndbox>\n  </object>\n")


# ---- importers -------------------------------------------------------------------------------------------

def test_dronevehicle_bndbox_objects_have_unknown_angle(tmp_path):
    objects = [dv_polygon("car", RECT), dv_bndbox("truck", 300, 200, 340, 220), dv_point("car", 300, 300),
               dv_polygon("bus", TILTED), dv_bndbox("van", 10, 10, 40, 30),  # the latter entirely in the border
               dv_bndbox("car", 400, 400, 420, 460), dv_polygon("van", RECT, difficult=1)]
    write_dronevehicle(tmp_path, "train", "00001", objects)
    (sample,) = load_dataset("dronevehicle", tmp_path)
    assert _native_names(sample) == ["car", "truck", "bus", "car", "van"]
    assert sample.angle_known.dtype == bool
    assert sample.angle_known.tolist() == [True, False, True, False, True]
    assert sample.difficult.tolist() == [False, False, False, False, True]
    assert not sample.aabb_only  # some angles are known
    (uncropped,) = load_dataset("dronevehicle", tmp_path, crop_border=False)
    assert uncropped.angle_known.tolist() == [True, False, True, False, False, True]

    # class mapping that drops objects keeps the mask aligned
    (mapped,) = load_dataset("dronevehicle", tmp_path, classes=["car", "truck", "bus", "van"],
                             class_map={"car": "car", "freight_car": "truck", "truck": "ignore", "bus": "bus",
                                        "van": "van"})
    assert [mapped.meta["classes"][i] for i in mapped.labels] == ["car", "bus", "car", "van"]
    assert mapped.angle_known.tolist() == [True, True, False, True]


def test_uav_rod_bndbox_objects_have_unknown_angle(tmp_path):
    write_image(tmp_path / "train" / "images" / "DJI_0006_000000.jpg", 32, 24)
    write_text(tmp_path / "train" / "annotations" / "DJI_0006_000000.xml",
               rolabelimg_xml([ro_object(100, 80, 40, 16, 4.0), _ro_bndbox(10, 20, 50, 40),
                               ro_object(200, 120, 30, 12, 0.0), _ro_bndbox(150, 150, 170, 200)]))
    (sample,) = load_dataset("uav_rod", tmp_path)
    assert sample.angle_known.tolist() == [True, False, True, False]
    # an exactly axis-aligned <robndbox> is a labelled angle of 0, not an unknown one
    assert sample.boxes[2, 4] == pytest.approx(0.0)
    assert np.isnan(sample.heading[[1, 3]]).all() and np.isfinite(sample.heading[[0, 2]]).all()


def test_axis_aligned_importers_mark_every_object(tmp_path):
    write_image(tmp_path / "vaid" / "JPEGImages" / "000001.jpg", 32, 16)
    write_text(tmp_path / "vaid" / "Annotations" / "000001.xml",
               voc_xml([("1", 10, 20, 50, 40, 0), ("5", 100, 100, 120, 160, 0)]))
    (vaid,) = load_dataset("vaid", tmp_path / "vaid")
    assert vaid.angle_known.tolist() == [False, False] and vaid.aabb_only
    write_image(tmp_path / "carpk" / "Images" / "a.png", 128, 72)
    write_text(tmp_path / "carpk" / "Annotations" / "a.txt", "10 10 30 20 1\n40 40 50 60 1\n")
    (carpk,) = load_dataset("carpk", tmp_path / "carpk")
    assert carpk.angle_known.tolist() == [False, False]


def test_mask_defaults_pickles_and_cache_round_trip():
    boxes = np.array([[10, 10, 8, 4, 0.3], [30, 30, 8, 4, 0.0]], np.float32)
    plain = Sample("a.jpg", 64, 64, boxes, np.zeros(2, np.int64), np.zeros(2, bool))
    assert plain.angle_known.tolist() == [True, True] and not plain.aabb_only
    with pytest.raises(ValueError, match="angle_known"):
        Sample("a.jpg", 64, 64, boxes, np.zeros(2, np.int64), np.zeros(2, bool), angle_known=[True])

    # a Sample pickled before the per-object mask existed: one aabb_only flag, no angle_known
    old = Sample("b.jpg", 64, 64, boxes, np.zeros(2, np.int64), np.zeros(2, bool))
    del old.__dict__["angle_known"]
    old.__dict__["aabb_only"] = True
    restored = pickle.loads(pickle.dumps(old))
    assert restored.angle_known.tolist() == [False, False] and restored.aabb_only

    mixed = Sample("c.jpg", 64, 64, boxes, np.zeros(2, np.int64), np.zeros(2, bool), angle_known=[False, True])
    empty = Sample("d.jpg", 64, 64, np.zeros((0, BOX_DIM), np.float32), np.zeros(0, np.int64), np.zeros(0, bool))
    again = unpack_samples(pack_samples([plain, mixed, empty]))
    assert [s.angle_known.tolist() for s in again] == [[True, True], [False, True], []]


# ---- dataset, collation --------------------------------------------------------------------------------

def test_mask_reaches_the_collated_targets(tmp_path):
    path = write_image(tmp_path / "x.png", 64, 48)
    boxes = np.array([[10, 10, 8, 4, 0.3], [30, 30, 8, 4, 0.0], [50, 20, 10, 6, 0.0]], np.float32)
    sample = Sample(str(path), 64, 48, boxes, np.arange(3), np.zeros(3, bool), angle_known=[True, False, False])
    assert sample_target(sample)["angle_known"].tolist() == [True, False, False]
    legacy = DetectionDataset([sample], transform=lambda image, target: (image, {
        k: v for k, v in target.items() if k != "angle_known"} | {"aabb_only": True}))
    dataset = DetectionDataset([sample])
    _, targets = collate_detections([dataset[0], legacy[0]], stride=32)
    targets = targets_to_device(targets, "cpu")
    assert targets[0]["angle_known"].dtype == torch.bool
    assert targets[0]["angle_known"].tolist() == [True, False, False]
    assert targets[1]["angle_known"].tolist() == [False, False, False]  # legacy per-image flag


# ---- augmentation --------------------------------------------------------------------------------------

PALETTE = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255), (255, 128, 0),
           (128, 0, 255)]


def _scene(rng):
    """Eight separated boxes in distinct colours (label = colour index); odd labels axis-aligned, angle unknown."""
    image = np.zeros((360, 480, 3), np.uint8)
    boxes = []
    for i in range(8):
        cx, cy = 60 + 120 * (i % 4), 90 + 180 * (i // 4)
        angle = 0.0 if i % 2 else rng.uniform(-math.pi / 2, math.pi / 2)
        boxes.append([cx, cy, rng.uniform(50, 80), rng.uniform(20, 30), angle])
        cv2.fillPoly(image, [np.round(xywha_to_poly(np.asarray(boxes[-1], float)) - 0.5).astype(np.int32)],
                     PALETTE[i])
    boxes = np.asarray(boxes, np.float32)
    known = np.arange(8) % 2 == 0
    target = {"boxes": boxes, "labels": np.arange(8, dtype=np.int64), "difficult": np.arange(8) % 3 == 0,
              "heading": np.where(np.arange(8) % 4 == 0, boxes[:, 4], np.nan).astype(np.float32),
              "angle_known": known}
    return image, target


def _check_aligned(out, result, source):
    """Every per-object array of ``result`` belongs to the object drawn where its box is."""
    labels = result["labels"]
    n = len(result["boxes"])
    assert len(labels) == len(result["difficult"]) == len(result["angle_known"]) == len(result["heading"]) == n
    np.testing.assert_array_equal(result["angle_known"], source["angle_known"][labels])
    np.testing.assert_array_equal(result["difficult"], source["difficult"][labels])
    np.testing.assert_array_equal(np.isnan(result["heading"]), np.isnan(source["heading"][labels]))
    for box, label in zip(result["boxes"], labels):
        ys, xs = np.nonzero((out == PALETTE[label]).all(axis=-1))
        assert len(xs), f"object {label} kept but not visible"
        centre = np.array([xs.mean() + 0.5, ys.mean() + 0.5])
        assert np.abs(centre - box[:2]).max() < max(box[2] / 2, 3.0)  # its own pixels, not a neighbour's
    unknown = ~result["angle_known"]
    angles = result["boxes"][unknown, 4]
    assert np.all(np.isclose(angles, 0, atol=1e-5) | np.isclose(angles, -math.pi / 2, atol=1e-5))


@pytest.mark.parametrize("no_rotation", [True, False])
def test_mask_stays_aligned_through_rotation_crop_and_drops(no_rotation):
    rng = np.random.default_rng(0)
    transform = OBBAugment([RotateScaleCrop(200, 200, rotate_prob=1.0, scale_range=(0.8, 1.2), fill=(0, 0, 0),
                                            interpolation=cv2.INTER_NEAREST), A.HorizontalFlip(p=0.5),
                            A.RandomRotate90(p=0.5)],
                           min_visible=0.5, seed=1, aabb_only_no_rotation=no_rotation)
    dropped = mixed = 0
    for _ in range(12):
        image, target = _scene(rng)
        out, result = transform(image, target)
        _check_aligned(out, result, target)
        dropped += len(result["boxes"]) < 8
        mixed += result["angle_known"].any() and not result["angle_known"].all()
    assert dropped >= 6 and mixed >= 3


def test_keypoints_to_boxes_refits_per_object():
    boxes = np.array([[50, 50, 40, 20, 0.0], [120, 60, 40, 20, 0.0], [190, 200, 40, 20, 0.0]])
    corners = xywha_to_poly(boxes)
    turn = math.radians(30)
    rot = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    moved = (corners - boxes[:, None, :2]) @ rot.T + boxes[:, None, :2]
    points = np.concatenate([moved, boxes[:, None, :2]], axis=1).reshape(-1, 2)
    out, _, keep = keypoints_to_boxes(points, None, 200, 150, min_visible=0.5, min_side=1.0,
                                      aabb_only=np.array([False, True, True]))
    assert keep.tolist() == [True, True, False]  # the third lies mostly outside
    assert out[0, 4] == pytest.approx(turn, abs=1e-6)  # known angle: the turned rectangle
    np.testing.assert_allclose(out[1], [120, 60, 40 * math.cos(turn) + 20 * math.sin(turn),
                                        40 * math.sin(turn) + 20 * math.cos(turn), 0.0], atol=1e-6)


# ---- loss ----------------------------------------------------------------------------------------------

CLASSES = 4


@pytest.fixture(scope="module")
def batch_parts():
    anchors = AnchorGenerator(3, 5, 3, [(1.0, 1.0), (1.4, 0.7), (0.7, 1.4)], 4.0).anchors(128, 128)
    generator = torch.Generator().manual_seed(0)
    n = len(anchors)
    outputs = {"cls_logits": torch.randn(1, n, CLASSES, generator=generator),
               "box_deltas": 0.3 * torch.randn(1, n, 4, generator=generator),
               "angle_vec": torch.randn(1, n, 2, generator=generator)}
    return outputs, anchors


def _target(boxes, angle_known=None, **extra):
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, BOX_DIM)
    target = {"boxes": boxes, "labels": torch.zeros(len(boxes), dtype=torch.int64),
              "difficult": torch.zeros(len(boxes), dtype=torch.bool), "heading": None, **extra}
    if angle_known is not None:
        target["angle_known"] = torch.as_tensor(angle_known, dtype=torch.bool)
    return target


def _losses(outputs, anchors, targets, criterion=None):
    criterion = criterion or OBBCriterion(CLASSES)
    leaves = {k: v.clone().requires_grad_(True) for k, v in outputs.items()}
    losses = criterion(leaves, targets, anchors)
    return losses, leaves


def test_angle_loss_ignores_objects_of_unknown_angle(batch_parts):
    outputs, anchors = batch_parts
    criterion = OBBCriterion(CLASSES)
    first = [40, 40, 40, 14, 0.4]
    second_a, second_b = [88, 84, 44, 16, 0.30], [88, 84, 44, 16, 0.34]
    # the angles differ little enough that the anchor assignment is the same: only the angle target differs
    labels_a, matched_a = criterion._label_batch([_target([first, second_a])], anchors)
    labels_b, matched_b = criterion._label_batch([_target([first, second_b])], anchors)
    assert torch.equal(labels_a, labels_b) and torch.equal(matched_a, matched_b)
    assert (matched_a[labels_a >= 0] == 1).any() and (matched_a[labels_a >= 0] == 0).any()

    def angle_loss(second, known):
        losses, _ = _losses(outputs, anchors, [_target([first, second], angle_known=[True, known])], criterion)
        return {name: value.detach() for name, value in losses.items()}

    known_a, known_b = angle_loss(second_a, True), angle_loss(second_b, True)
    unknown_a, unknown_b = angle_loss(second_a, False), angle_loss(second_b, False)
    assert float(known_a["loss_angle"]) != float(known_b["loss_angle"])
    assert float(unknown_a["loss_angle"]) == float(unknown_b["loss_angle"]) > 0  # the first object still counts
    assert float(unknown_a["loss_angle"]) < float(known_a["loss_angle"])
    # the box term still trains the unknown-angle object: its size matters
    bigger, _ = _losses(outputs, anchors, [_target([first, [88, 84, 52, 16, 0.30]], angle_known=[True, False])],
                        criterion)
    assert float(bigger["loss_box"].detach()) != float(unknown_a["loss_box"])


def test_unknown_angle_gets_no_angle_gradient_but_box_gradient(batch_parts):
    outputs, anchors = batch_parts
    criterion = OBBCriterion(CLASSES)
    target = _target([[40, 40, 40, 14, 0.4], [88, 84, 44, 16, 0.3]], angle_known=[True, False])
    labels, matched = criterion._label_batch([target], anchors)
    losses, leaves = _losses(outputs, anchors, [target], criterion)
    on_unknown = (labels[0] >= 0) & (matched[0] == 1)
    on_known = (labels[0] >= 0) & (matched[0] == 0)
    (grad_angle,) = torch.autograd.grad(losses["loss_angle"], leaves["angle_vec"], retain_graph=True)
    assert torch.all(grad_angle[0, on_unknown] == 0) and grad_angle[0, on_known].abs().sum() > 0
    grad_box, grad_vec = torch.autograd.grad(losses["loss_box"], [leaves["box_deltas"], leaves["angle_vec"]])
    assert grad_box[0, on_unknown].abs().sum() > 0
    assert grad_vec[0, on_unknown].abs().sum() > 0  # the hull term: the angle must agree with the AABB
    assert torch.all(grad_vec[0, on_known] == 0)  # known angles are trained by loss_angle only, as before


def test_mask_defaults_and_legacy_flag_match(batch_parts):
    outputs, anchors = batch_parts
    boxes = [[40, 40, 40, 14, 0.4], [88, 84, 44, 16, 0.3]]
    without, _ = _losses(outputs, anchors, [_target(boxes)])
    all_known, _ = _losses(outputs, anchors, [_target(boxes, angle_known=[True, True])])
    legacy, _ = _losses(outputs, anchors, [_target(boxes, aabb_only=True)])
    none_known, _ = _losses(outputs, anchors, [_target(boxes, angle_known=[False, False])])
    without, all_known, legacy, none_known = ({name: float(value.detach()) for name, value in losses.items()}
                                              for losses in (without, all_known, legacy, none_known))
    for name in ("loss_cls", "loss_box", "loss_angle", "loss"):
        assert without[name] == all_known[name]
        assert legacy[name] == none_known[name]
    assert none_known["loss_angle"] == 0.0 and none_known["loss_box"] > 0


# ---- the hull term's gradient ----------------------------------------------------------------------------

DELTA = 0.1  # the Huber delta of the default loss config
NEAR_AXES = [0.0, 1e-6, 1e-4, 1e-3, 1e-2, 0.1, math.pi / 2 - 1e-6, math.pi / 2 - 1e-4, math.pi / 2 - 1e-2,
             -math.pi / 2, -math.pi / 2 + 1e-6, -math.pi / 2 + 1e-4, -math.pi / 2 + 1e-2, -1e-6, -1e-4, -1e-2]


def _hull_loss(angle, size, target_box, vec=None):
    """Huber hull loss of one predicted box of ``size`` (w, h) px at ``angle`` on a 32 px anchor."""
    anchor = torch.tensor([[0.0, 0.0, 32.0, 32.0]])
    deltas = torch.tensor([[0.0, 0.0, math.log(size[0] / 32), math.log(size[1] / 32)]])
    if vec is None:
        vec = torch.stack([torch.cos(2 * angle), torch.sin(2 * angle)], dim=-1).reshape(1, 2)
    target = aabb_target_deltas(torch.tensor([target_box], dtype=torch.float32), anchor)
    return F.huber_loss(aabb_extent_deltas(deltas, vec), target, reduction="sum", delta=DELTA)


def _reference_hull_loss(angle: float, size, target_box) -> torch.Tensor:
    """The same loss from ``w |cos a| + h |sin a|`` in float64, differentiated in ``a`` (for comparison)."""
    a = torch.tensor(angle, dtype=torch.float64, requires_grad=True)
    w, h = size
    ex = w * torch.cos(a).abs() + h * torch.sin(a).abs()
    ey = w * torch.sin(a).abs() + h * torch.cos(a).abs()
    tx, ty = (target_box[2], target_box[3]) if abs(target_box[4]) < 1 else (target_box[3], target_box[2])
    pred = torch.stack([torch.log(ex), torch.log(ey)])
    goal = torch.tensor([math.log(tx), math.log(ty)], dtype=torch.float64)
    (grad,) = torch.autograd.grad(F.huber_loss(pred, goal, reduction="sum", delta=DELTA), a)
    return grad


@pytest.mark.parametrize("target_box", [[16, 16, 40, 14, 0.0], [16, 16, 40, 14, -math.pi / 2]],
                         ids=["wide", "tall"])
@pytest.mark.parametrize("size", [(40, 14), (30, 20), (60, 10)])
def test_hull_gradient_is_bounded_and_correct_near_the_axes(target_box, size):
    aspect = max(size) / min(size)
    bound = 2 * DELTA * aspect  # |d huber/d log e| <= DELTA, |d log e / d a| <= aspect, two extents
    for angle in NEAR_AXES:
        a = torch.tensor(angle, dtype=torch.float32, requires_grad=True)
        (grad_a,) = torch.autograd.grad(_hull_loss(a, size, target_box), a)
        assert torch.isfinite(grad_a) and abs(float(grad_a)) <= bound * (1 + 1e-5), (angle, float(grad_a))
        if min(abs(angle), abs(abs(angle) - math.pi / 2)) >= 1e-4:  # off the kink: the true derivative
            assert float(grad_a) == pytest.approx(float(_reference_hull_loss(angle, size, target_box)),
                                                  rel=2e-2, abs=1e-6), angle
        # with respect to a unit angle vector: d a / d (2a) = 1/2 along the circle
        vec = torch.tensor([[math.cos(2 * angle), math.sin(2 * angle)]], requires_grad=True)
        (grad_vec,) = torch.autograd.grad(_hull_loss(None, size, target_box, vec=vec), vec)
        assert torch.isfinite(grad_vec).all() and float(grad_vec.norm()) <= bound / 2 * (1 + 1e-4)


def test_hull_gradient_pulls_towards_the_aabb_orientation():
    """Against a wide AABB a slightly turned prediction is pulled back to 0 (no dead zone next to the axis)."""
    for angle in (1e-4, 1e-3, 1e-2, -1e-4, -1e-3, -1e-2):
        a = torch.tensor(angle, dtype=torch.float32, requires_grad=True)
        (grad,) = torch.autograd.grad(_hull_loss(a, (40, 14), [16, 16, 40, 14, 0.0]), a)
        expected = float(_reference_hull_loss(angle, (40, 14), [16, 16, 40, 14, 0.0]))
        assert math.copysign(1, float(grad)) == math.copysign(1, angle)
        assert float(grad) == pytest.approx(expected, rel=2e-2)


@pytest.mark.parametrize("vec", [[0.0, 0.0], [1e-9, 0.0], [-1e-7, 1e-8], [0.3, -0.1], [3.0, 0.01]])
def test_hull_gradient_is_finite_for_any_vector_length(vec):
    v = torch.tensor([vec], requires_grad=True)
    (grad,) = torch.autograd.grad(_hull_loss(None, (40, 14), [16, 16, 40, 14, 0.0], vec=v), v)
    aspect = 40 / 14
    # inside HULL_MIN_NORM the vector is scaled by 1 / HULL_MIN_NORM; d log e / d c <= (aspect^2 - 1) / 4
    bound = 2 * DELTA * max(aspect, (aspect ** 2 - 1) / 4 + aspect / 2) / HULL_MIN_NORM
    assert torch.isfinite(grad).all() and float(grad.norm()) <= bound
