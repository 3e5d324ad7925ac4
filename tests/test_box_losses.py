"""Localization losses on rotated-box overlap (probiou, kld, gwd, riou), the differentiable exact IoU, quality-aware
classification (qfl, varifocal) and their config keys, down to a short training run with each option."""
from __future__ import annotations

import csv
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from obbdet.boxes import normalize_xywha  # noqa: E402
from obbdet.config import _CHOICES, ConfigError, resolve_config  # noqa: E402
from obbdet.iou import box_iou_rotated  # noqa: E402
from obbdet.model import OBBCriterion  # noqa: E402
from obbdet.model.anchors import AnchorGenerator  # noqa: E402
from obbdet.model.box_losses import OVERLAP_LOSSES, overlap_loss  # noqa: E402
from obbdet.model.coder import encode_xywha  # noqa: E402
from obbdet.model.loss import BOX_LOSSES, sigmoid_focal_loss  # noqa: E402
from obbdet.model.quality import QUALITY_MODES, quality_focal_loss, varifocal_loss  # noqa: E402
from obbdet.model.rotated_iou import rotated_iou_differentiable  # noqa: E402

TARGET = [50.0, 40.0, 40.0, 16.0, 0.3]  # a car-like box, le90


def _vec(a):
    a = torch.as_tensor(a, dtype=torch.float32)
    return torch.stack([torch.cos(2 * a), torch.sin(2 * a)], dim=-1)


def _loss(name, pred, target, grad=False):
    """Loss ``[N]`` of prediction boxes ``[N, 5]`` (their angle given as a unit angle vector) against targets; with
    ``grad`` also the gradients of centre, sides and angle vector."""
    pred = torch.as_tensor(pred, dtype=torch.float32).reshape(-1, 5)
    target = torch.as_tensor(target, dtype=torch.float32).reshape(-1, 5)
    parts = [pred[:, :2].clone(), pred[:, 2:4].clone(), _vec(pred[:, 4])]
    for part in parts:
        part.requires_grad_(grad)
    loss = overlap_loss(name, *parts, target)
    if not grad:
        return loss
    loss.sum().backward()
    return loss, [part.grad for part in parts]


def _moved(box, **offsets):
    box = list(box)
    for key, value in offsets.items():
        box["xywha".index(key)] += value
    return box


# ---------------------------------------------------------------------------------------------------
# Each overlap loss
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", OVERLAP_LOSSES)
def test_minimum_at_identity_and_growth_with_every_error(name):
    at_identity = float(_loss(name, TARGET, TARGET))
    assert 0.0 <= at_identity < 1e-3
    along = (math.cos(TARGET[4]), math.sin(TARGET[4]))
    across = (-math.sin(TARGET[4]), math.cos(TARGET[4]))
    directions = {"x": lambda s: _moved(TARGET, x=s), "y": lambda s: _moved(TARGET, y=s),
                  "along": lambda s: _moved(TARGET, x=s * along[0], y=s * along[1]),
                  "across": lambda s: _moved(TARGET, x=s * across[0], y=s * across[1]),
                  "w+": lambda s: _moved(TARGET, w=2 * s), "w-": lambda s: _moved(TARGET, w=-2 * s),
                  "h+": lambda s: _moved(TARGET, h=s), "h-": lambda s: _moved(TARGET, h=-0.5 * s),
                  "a+": lambda s: _moved(TARGET, a=0.05 * s), "a-": lambda s: _moved(TARGET, a=-0.05 * s)}
    for direction, move in directions.items():
        values = [float(_loss(name, move(step), TARGET)) for step in (0.5, 1.0, 2.0, 4.0)]
        assert at_identity < values[0] < values[1] < values[2] < values[3], (direction, values)


@pytest.mark.parametrize("name", OVERLAP_LOSSES)
def test_offsets_across_an_elongated_box_cost_more_than_along_it(name):
    along = _moved(TARGET, x=3 * math.cos(TARGET[4]), y=3 * math.sin(TARGET[4]))
    across = _moved(TARGET, x=-3 * math.sin(TARGET[4]), y=3 * math.cos(TARGET[4]))
    if name == "gwd":  # the Wasserstein centre term is isotropic: the same for both
        assert float(_loss(name, across, TARGET)) == pytest.approx(float(_loss(name, along, TARGET)), rel=1e-4)
    else:
        assert float(_loss(name, across, TARGET)) > 1.2 * float(_loss(name, along, TARGET))


@pytest.mark.parametrize("name", OVERLAP_LOSSES)
def test_continuous_across_the_le90_boundary(name):
    eps = 1e-4
    pred = [50.0, 40.0, 42.0, 15.0, math.pi / 2 - 0.1]
    below = _loss(name, pred, [50, 40, 40, 16, math.pi / 2 - eps])
    above = _loss(name, pred, [50, 40, 40, 16, -math.pi / 2 + eps])
    assert float(below) > 0.01
    assert float(below) == pytest.approx(float(above), abs=1e-3)
    # the same rectangle written with a and a - pi: the same loss
    same = _loss(name, pred, [50, 40, 40, 16, math.pi / 2 - eps - math.pi])
    assert float(same) == pytest.approx(float(below), abs=1e-5)
    # predictions on either side of the boundary: continuous too
    pred_below = _loss(name, _moved(pred, a=0.1 - eps), TARGET)
    pred_above = _loss(name, [50.0, 40.0, 42.0, 15.0, -math.pi / 2 + eps], TARGET)
    assert float(pred_below) == pytest.approx(float(pred_above), abs=1e-3)


@pytest.mark.parametrize("name", OVERLAP_LOSSES)
def test_square_boxes_invariant_under_quarter_turns(name):
    square = [30.0, 30.0, 20.0, 20.0, 0.4]
    pred = [31.0, 29.5, 21.0, 19.0, 0.3]
    reference = float(_loss(name, pred, square))
    assert reference > 0
    for turns in (1, 2, 3):
        turned_target = normalize_xywha(np.array(_moved(square, a=turns * math.pi / 2))).tolist()
        assert float(_loss(name, pred, turned_target)) == pytest.approx(reference, rel=1e-4, abs=1e-6)
    # a square prediction's angle vector turned by 90 degrees (negated) describes the same box
    square_pred = [31.0, 29.5, 20.0, 20.0, 0.2]
    value = float(_loss(name, square_pred, TARGET))
    assert float(_loss(name, _moved(square_pred, a=math.pi / 2), TARGET)) == pytest.approx(value, rel=1e-4)


@pytest.mark.parametrize("name", OVERLAP_LOSSES)
def test_finite_gradients_in_edge_cases(name):
    cases = {
        "identical": (TARGET, TARGET),
        "touching along the long side": (_moved(TARGET, x=-16 * math.sin(0.3), y=16 * math.cos(0.3)), TARGET),
        "touching corners": ([10.0, 10.0, 4.0, 2.0, 0.0], [14.0, 12.0, 4.0, 2.0, 0.0]),
        "disjoint": (_moved(TARGET, x=200.0), TARGET),
        "square turned by 90 degrees": ([5.0, 5.0, 3.0, 3.0, math.pi / 2], [5.0, 5.0, 3.0, 3.0, 0.0]),
        "tiny": ([1.0, 1.0, 0.02, 0.01, 0.1], [1.0, 1.0, 0.021, 0.01, 0.12]),
        "elongated": ([100.0, 100.0, 500.0, 2.0, 0.7], [101.0, 100.0, 480.0, 2.5, 0.71]),
    }
    for case, (pred, target) in cases.items():
        loss, grads = _loss(name, pred, target, grad=True)
        assert torch.isfinite(loss).all(), case
        assert all(torch.isfinite(g).all() for g in grads), case
    # disjoint boxes still pull together (riou's distance term; the Gaussian losses by construction)
    _, (grad_centre, _, _) = _loss(name, _moved(TARGET, x=200.0), TARGET, grad=True)
    assert float(grad_centre[0, 0]) > 0
    # an untrained head's near-zero (or zero) angle vector
    for scale in (1e-6, 0.0):
        vec = (scale * _vec(torch.tensor([0.3]))).requires_grad_(True)
        loss = overlap_loss(name, torch.tensor([[50.0, 40.0]]), torch.tensor([[40.0, 16.0]]), vec,
                            torch.tensor([TARGET]))
        loss.sum().backward()
        assert torch.isfinite(loss).all() and torch.isfinite(vec.grad).all()


@pytest.mark.parametrize("name", OVERLAP_LOSSES)
def test_gradient_descent_on_the_loss_fits_the_box(name):
    """Descending the loss alone moves a poor prediction (IoU ~0.5) onto its target: centre, sides and angle."""
    target = torch.tensor([TARGET])
    centre = torch.tensor([[54.0, 37.0]], requires_grad=True)
    log_sides = torch.log(torch.tensor([[30.0, 22.0]])).requires_grad_(True)
    vec = (0.3 * _vec(torch.tensor([0.9]))).requires_grad_(True)  # 35 degrees off, short as an untrained head's
    optimizer = torch.optim.Adam([centre, log_sides, vec], lr=0.05)
    start = float(box_iou_rotated(torch.tensor([[54.0, 37.0, 30.0, 22.0, 0.9]]), target, aligned=True))
    for _ in range(400):
        optimizer.zero_grad()
        overlap_loss(name, centre, log_sides.exp(), vec, target).sum().backward()
        optimizer.step()
    with torch.no_grad():
        angle = 0.5 * torch.atan2(vec[:, 1], vec[:, 0])
        fitted = torch.cat([centre, log_sides.exp(), angle[:, None]], dim=1)
    assert start < 0.5
    final = float(box_iou_rotated(fitted, target, aligned=True))
    assert final > 0.95, (start, final)


# ---------------------------------------------------------------------------------------------------
# The exact IoU and its gradient
# ---------------------------------------------------------------------------------------------------

def _random_pairs(n, seed):
    """Overlapping and disjoint pairs of boxes of every shape: tiny, car-like and very elongated."""
    rng = np.random.default_rng(seed)
    length = np.exp(rng.uniform(np.log(0.05), np.log(300), n))
    width = length / np.exp(rng.uniform(0, np.log(200), n))
    boxes1 = np.stack([rng.uniform(0, 50, n), rng.uniform(0, 50, n), length, width, rng.uniform(-3, 3, n)], 1)
    boxes2 = boxes1 + rng.normal(size=(n, 5)) * np.stack([length / 3, length / 3, length / 4, width / 3,
                                                          np.full(n, 0.3)], 1)
    boxes2[:, 2:4] = np.abs(boxes2[:, 2:4]) + 1e-3
    return torch.tensor(boxes1), torch.tensor(boxes2)


def test_riou_matches_the_exact_iou():
    boxes1, boxes2 = _random_pairs(2000, seed=1)
    exact = box_iou_rotated(boxes1.numpy(), boxes2.numpy(), aligned=True)
    assert (exact > 0).sum() > 800 and (exact == 0).sum() > 50
    for dtype in (torch.float64, torch.float32):
        b1, b2 = boxes1.to(dtype), boxes2.to(dtype)  # the exact IoU of the boxes as given (float32-rounded)
        exact = box_iou_rotated(b1.double().numpy(), b2.double().numpy(), aligned=True)
        np.testing.assert_allclose(rotated_iou_differentiable(b1, b2).double().numpy(), exact, atol=1e-5)
    # the loss: 1 - IoU for pairs of one centre
    centred = boxes2.clone()
    centred[:, :2] = boxes1[:, :2]
    loss = _loss("riou", centred.float(), boxes1.float())
    expected = 1 - box_iou_rotated(centred.numpy(), boxes1.numpy(), aligned=True)
    np.testing.assert_allclose(loss.double().numpy(), expected, atol=1e-5)


def test_riou_gradient_matches_finite_differences():
    boxes1, boxes2 = _random_pairs(64, seed=2)
    overlapping = box_iou_rotated(boxes1.numpy(), boxes2.numpy(), aligned=True) > 0.05
    boxes1, boxes2 = boxes1[overlapping], boxes2[overlapping]
    assert len(boxes1) > 20
    assert torch.autograd.gradcheck(rotated_iou_differentiable,
                                    (boxes1.requires_grad_(True), boxes2.requires_grad_(True)),
                                    eps=1e-7, atol=1e-5, rtol=1e-3)


# ---------------------------------------------------------------------------------------------------
# Quality-aware classification
# ---------------------------------------------------------------------------------------------------

def _logits_and_targets():
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(200, 4, generator=generator)
    targets = (torch.rand(200, 4, generator=generator) < 0.1).float()
    return logits, targets


def test_qfl_is_the_focal_loss_for_quality_one():
    logits, targets = _logits_and_targets()
    focal = sigmoid_focal_loss(logits, targets, 0.25, 1.5)
    qfl = quality_focal_loss(logits, targets, targets > 0, 0.25, 1.5)
    torch.testing.assert_close(qfl, focal)


def test_varifocal_for_quality_one_is_focal_on_negatives_and_bce_on_positives():
    logits, targets = _logits_and_targets()
    focal = sigmoid_focal_loss(logits, targets, 0.25, 2.0)
    vfl = varifocal_loss(logits, targets, 0.25, 2.0)
    negative = targets == 0
    torch.testing.assert_close(vfl[negative], focal[negative])
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(vfl[~negative], bce[~negative])  # positives: not down-weighted by the focal factor


@pytest.mark.parametrize("quality", ["qfl", "varifocal"])
def test_soft_targets_are_learned_as_scores(quality):
    """The loss of a positive is smallest where its score equals its quality target."""
    logits = torch.linspace(-6, 6, 2401)
    for q in (0.3, 0.7):
        targets = torch.full_like(logits, q)
        if quality == "qfl":
            loss = quality_focal_loss(logits, targets, torch.ones_like(logits, dtype=torch.bool), 0.25, 2.0)
        else:
            loss = varifocal_loss(logits, targets, 0.25, 2.0)
        assert float(logits[loss.argmin()].sigmoid()) == pytest.approx(q, abs=0.01)


# ---------------------------------------------------------------------------------------------------
# The criterion
# ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scene():
    anchors = AnchorGenerator(3, 5, 3, [(1.0, 1.0), (1.4, 0.7), (0.7, 1.4)], 4.0).anchors(128, 128)
    generator = torch.Generator().manual_seed(0)
    n = len(anchors)
    outputs = {"cls_logits": torch.randn(1, n, 4, generator=generator),
               "box_deltas": 0.3 * torch.randn(1, n, 4, generator=generator),
               "angle_vec": torch.randn(1, n, 2, generator=generator)}
    boxes = torch.tensor([[40.0, 40.0, 40.0, 14.0, 0.4], [90.0, 84.0, 30.0, 28.0, -1.2]])
    return outputs, anchors, boxes


def _target(boxes, angle_known=True):
    n = len(boxes)
    return {"boxes": boxes, "labels": torch.tensor([0, 2])[:n], "difficult": torch.zeros(n, dtype=torch.bool),
            "angle_known": torch.full((n,), angle_known)}


def _criterion_losses(scene, angle_known=True, outputs=None, **options):
    default_outputs, anchors, boxes = scene
    leaves = {k: v.clone().requires_grad_(True) for k, v in (outputs or default_outputs).items()}
    losses = OBBCriterion(4, **options)(leaves, [_target(boxes, angle_known)], anchors)
    losses["loss"].backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(torch.isfinite(leaf.grad).all() for leaf in leaves.values())
    return {name: value.detach() for name, value in losses.items()}


@pytest.mark.parametrize("box_loss", OVERLAP_LOSSES)
def test_criterion_overlap_loss_beside_or_instead_of_the_huber(scene, box_loss):
    huber = _criterion_losses(scene)
    assert float(huber["loss_iou"]) == 0.0
    beside = _criterion_losses(scene, box_loss=box_loss)
    assert float(beside["loss_iou"]) > 0
    for name in ("loss_cls", "loss_box", "loss_angle"):
        assert float(beside[name]) == float(huber[name])
    assert float(beside["loss"]) == pytest.approx(float(huber["loss"]) + 5.0 * float(beside["loss_iou"]), rel=1e-5)
    instead = _criterion_losses(scene, box_loss=box_loss, keep_huber=False, box_loss_weight=2.0)
    assert float(instead["loss_box"]) == 0.0 and float(instead["loss_angle"]) == 0.0
    assert float(instead["loss"]) == pytest.approx(float(instead["loss_cls"]) + 2.0 * float(instead["loss_iou"]),
                                                   rel=1e-5)
    # objects of unknown angle keep their hull term and get no overlap loss (their labels are AABBs)
    unknown = _criterion_losses(scene, angle_known=False, box_loss=box_loss, keep_huber=False)
    assert float(unknown["loss_iou"]) == 0.0 and float(unknown["loss_box"]) > 0


@pytest.mark.parametrize("box_loss", OVERLAP_LOSSES)
def test_criterion_without_huber_is_invariant_for_squares_and_continuous_at_le90(scene, box_loss):
    outputs, anchors, _ = scene

    def loss(box):
        boxes = torch.tensor([box], dtype=torch.float32)
        return {name: float(value) for name, value in _criterion_losses(
            (outputs, anchors, boxes), box_loss=box_loss, keep_huber=False, quality="qfl").items()}

    square = [60.0, 60.0, 24.0, 24.0, 0.3]
    reference = loss(square)
    for turns in (1, 2, 3):
        turned = loss(normalize_xywha(np.array(_moved(square, a=turns * math.pi / 2))).tolist())
        for name in ("loss", "loss_iou", "loss_cls"):
            assert turned[name] == pytest.approx(reference[name], rel=1e-4, abs=1e-6)
    below = loss([60.0, 60.0, 40.0, 14.0, math.pi / 2 - 1e-4])
    above = loss([60.0, 60.0, 40.0, 14.0, -math.pi / 2 + 1e-4])
    assert below["loss_iou"] > 0
    for name in ("loss", "loss_iou", "loss_cls"):
        assert above[name] == pytest.approx(below[name], rel=1e-3, abs=1e-5)


def test_quality_targets_of_perfect_predictions_are_one(scene):
    """Outputs that decode to the GT boxes exactly: quality 1 for every positive, so QFL is the focal loss."""
    outputs, anchors, boxes = scene
    perfect = {k: v.clone() for k, v in outputs.items()}
    criterion = OBBCriterion(4)
    labels, matched = criterion._label_batch([_target(boxes)], anchors)
    positive = labels[0] >= 0
    deltas, vec = encode_xywha(boxes[matched[0, positive]], anchors.boxes[positive])
    perfect["box_deltas"][0, positive], perfect["angle_vec"][0, positive] = deltas, vec
    plain = _criterion_losses(scene, outputs=perfect)
    qfl = _criterion_losses(scene, outputs=perfect, quality="qfl")
    assert float(qfl["loss_cls"]) == pytest.approx(float(plain["loss_cls"]), rel=1e-4)
    # with the random outputs the qualities are below 1: the positives' targets and so the loss change
    assert float(_criterion_losses(scene, quality="qfl")["loss_cls"]) != float(_criterion_losses(scene)["loss_cls"])
    for box_loss in OVERLAP_LOSSES:
        assert float(_criterion_losses(scene, outputs=perfect, box_loss=box_loss)["loss_iou"]) < 1e-3


def test_criterion_rejects_unknown_options():
    with pytest.raises(ValueError, match="box_loss must be one of"):
        OBBCriterion(4, box_loss="giou")
    with pytest.raises(ValueError, match="quality must be one of"):
        OBBCriterion(4, quality="iou")
    with pytest.raises(ValueError, match="no box loss"):
        OBBCriterion(4, keep_huber=False)


# ---------------------------------------------------------------------------------------------------
# Config keys and a short training run with each option
# ---------------------------------------------------------------------------------------------------

def test_config_keys():
    assert _CHOICES[("loss", "box_loss")] == BOX_LOSSES and _CHOICES[("loss", "quality")] == QUALITY_MODES
    cfg = resolve_config(None, ["loss.box_loss=kld", "loss.quality=qfl", "keep_huber=false", "box_loss_weight=2"])
    assert (cfg.loss.box_loss, cfg.loss.quality, cfg.loss.keep_huber, cfg.loss.box_loss_weight) == \
        ("kld", "qfl", False, 2.0)
    default = resolve_config(None, [])
    assert (default.loss.box_loss, default.loss.quality, default.loss.keep_huber) == ("huber", "none", True)
    refused = {"loss.box_loss=giou": "loss.box_loss='giou' is not one of huber, probiou, kld, gwd, riou",
               "loss.quality=iou": "loss.quality='iou' is not one of none, qfl, varifocal",
               "loss.keep_huber=false": "keep_huber=false needs an overlap", "box_loss_weight=-1": "must be >= 0"}
    for override, message in refused.items():
        with pytest.raises(ConfigError, match=message):
            resolve_config(None, [override])


SMOKE_RUNS = [  # every box loss and every quality mode at least once
    ("probiou", "qfl", True), ("kld", "varifocal", True), ("gwd", "none", False), ("riou", "qfl", False),
]


@pytest.mark.parametrize("box_loss,quality,keep_huber", SMOKE_RUNS)
def test_short_training_run(tmp_path_factory, box_loss, quality, keep_huber, one_torch_thread):
    from obbdet.cli import train

    out = tmp_path_factory.mktemp("runs")
    cache = tmp_path_factory.getbasetemp() / "box_losses_synthetic"
    rc = train.main([f"{box_loss}-{quality}", "0", "--config", "tiny", "--no-progress", f"train.out_dir={out}",
                     f"data.synthetic_cache={cache}", "train.threads=1", "train.epochs=1",
                     "train.max_steps_per_epoch=2", "data.synthetic_val=2", f"loss.box_loss={box_loss}",
                     f"loss.quality={quality}", f"loss.keep_huber={str(keep_huber).lower()}"])
    assert rc == 0
    with open(out / f"{box_loss}-{quality}" / "summary.csv") as f:
        row = list(csv.DictReader(f))[-1]
    for key in ("train_loss", "train_loss_iou", "train_loss_cls", "val_loss", "val_loss_iou"):
        assert math.isfinite(float(row[key])), key
    assert float(row["train_loss_iou"]) > 0
