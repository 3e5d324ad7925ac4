"""Box voting after NMS and test-time augmentation (flips and quarter turns fused by voting).

Boxes are le90 xywha ``[cx, cy, w, h, a]``: ``w`` the long side, ``a`` radians in ``[-pi/2, pi/2)``, clockwise on
screen; headings radians in ``[-pi, pi)``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from obbdet.box_voting import view_agreement_scores, vote_pairs, weighted_mean_boxes
from obbdet.boxes import poly_to_xywha, xywha_to_poly
from obbdet.inference.options import InferenceOptions
from obbdet.model.postprocess import suppress
from obbdet.model.tta import VIEWS, boxes_from_view, predict_views, view_images

D = math.radians


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 5)


def angle_gap(a, b) -> float:
    """Largest difference of le90 angles modulo pi."""
    d = np.remainder(np.asarray(a, np.float64) - np.asarray(b, np.float64) + math.pi / 2, math.pi) - math.pi / 2
    return float(np.abs(d).max())


def vote(kept, candidates, weights, vote_iou=0.5):
    """Kept boxes (scoring 1, above every candidate) voted from candidates scored ``weights``."""
    kept, candidates, weights = t(kept), t(candidates), torch.tensor(weights, dtype=torch.float32)
    idx_k, idx_c = vote_pairs(kept, torch.ones(len(kept)), torch.zeros(len(kept), dtype=torch.long), candidates,
                              weights, torch.zeros(len(candidates), dtype=torch.long), vote_iou)
    return weighted_mean_boxes(kept, candidates, weights, idx_k, idx_c)


def test_a_kept_box_becomes_the_score_weighted_mean_of_its_cluster():
    kept = [100, 50, 40, 16, D(10)]
    candidates = [kept, [102, 51, 44, 18, D(14)], [300, 300, 40, 16, 0.0]]  # the last one far away: not voted
    fused = vote([kept], candidates, [0.6, 0.2, 0.9])[0].double()
    expected = [(0.6 * 100 + 0.2 * 102) / 0.8, (0.6 * 50 + 0.2 * 51) / 0.8, (0.6 * 40 + 0.2 * 44) / 0.8,
                (0.6 * 16 + 0.2 * 18) / 0.8, D((0.6 * 10 + 0.2 * 14) / 0.8)]
    np.testing.assert_allclose(fused.numpy(), expected, rtol=0, atol=1e-5)


def test_angles_average_across_the_le90_boundary():
    """89 and -89 degrees are 2 degrees apart: their mean is the boundary (+-90), not 0."""
    fused = vote([[50, 50, 40, 12, D(89)]], [[50, 50, 40, 12, D(89)], [50, 50, 40, 12, D(-89)]], [1.0, 1.0])[0]
    assert angle_gap(fused[4], D(90)) < 1e-5
    assert -math.pi / 2 - 1e-6 <= float(fused[4]) < math.pi / 2  # le90 (float32 rounding of -pi/2)


def test_near_square_candidates_vote_whichever_description_they_come_with():
    """A near-square candidate turned by ~90 degrees is the same rectangle described from its other side: its
    sides are swapped and its angle turned before averaging, so the result matches the same candidate given
    in the kept box's description."""
    kept = [50, 50, 20.0, 19.8, D(10)]
    as_turned = [50.4, 50, 20.0, 19.6, D(-78)]  # long side along -78: short side along 12 degrees
    as_aligned = [50.4, 50, 19.6, 20.0, D(12)]  # the same rectangle, long and short swapped
    a = vote([kept], [kept, as_turned], [1.0, 1.0])[0].double().numpy()
    b = vote([kept], [kept, as_aligned], [1.0, 1.0])[0].double().numpy()
    np.testing.assert_allclose(a[:4], b[:4], atol=1e-5)
    assert angle_gap(a[4], b[4]) < 1e-5
    # along 11 degrees the mean of 20 and 19.6, across it of 19.8 and 20: the long side (19.9) lies across
    np.testing.assert_allclose(a[:4], [50.2, 50, 19.9, 19.8], atol=1e-5)
    assert angle_gap(a[4], D(-79)) < 1e-5


def test_square_boxes_vote_the_same_after_quarter_turns():
    """Turning every candidate of a square cluster by 90 degrees (the same rectangles) changes nothing."""
    kept = [50, 50, 20, 20, D(10)]
    cands = [kept, [51, 49, 20, 20, D(14)], [50, 51, 20, 20, D(7)]]
    turned = [[*c[:4], c[4] + math.pi / 2] for c in cands]
    a = vote([kept], cands, [0.9, 0.5, 0.4])[0].double().numpy()
    b = vote([kept], [[*c[:4], (c[4] + math.pi / 2) % math.pi - math.pi / 2] for c in turned], [0.9, 0.5, 0.4])
    b = b[0].double().numpy()
    np.testing.assert_allclose(a[:4], b[:4], atol=1e-5)
    assert angle_gap(a[4], b[4]) < 1e-5


def test_voting_is_class_aware_and_off_at_zero():
    boxes = t([[50, 50, 40, 16, 0.0], [52, 50, 40, 16, 0.0], [51, 50, 40, 16, 0.0]])
    result = {"boxes": boxes, "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([0, 0, 1])}
    plain = suppress(dict(result), nms_iou=0.5, max_det=10)
    voted = suppress(dict(result), nms_iou=0.5, max_det=10, vote_iou=0.6)
    assert plain["labels"].tolist() == voted["labels"].tolist() == [0, 1]
    torch.testing.assert_close(plain["boxes"], boxes[[0, 2]])
    assert voted["boxes"][0, 0].item() == pytest.approx((0.9 * 50 + 0.8 * 52) / 1.7, abs=1e-4)  # class 0 only
    torch.testing.assert_close(voted["boxes"][1], boxes[2])  # class 1 alone: unchanged
    torch.testing.assert_close(voted["scores"], plain["scores"])  # one view: the kept box's score


def test_a_candidate_votes_once_and_never_for_a_box_scoring_below_it():
    """Dense parking: kept box A (0.9) beat candidate X (0.8) in NMS; B (0.3), the car next to A, overlaps X at
    IoU >= vote_iou but scores below it, so X must not drag B onto A; candidate Y overlapping A and C votes only
    for A, the better-scored one."""
    boxes = t([[50, 50, 40, 16, 0.0],  # A
               [50, 57, 40, 16, 0.0],  # X: between A and B, suppressed by A
               [50, 62, 40, 16, 0.0],  # B: the neighbour, IoU(A, B) < nms_iou
               [80, 50, 40, 16, 0.0],  # C
               [65, 50, 40, 16, 0.0]])  # Y: overlaps A and C alike
    scores = torch.tensor([0.9, 0.8, 0.3, 0.7, 0.2])
    labels = torch.zeros(5, dtype=torch.long)
    kept = [0, 3, 2]  # NMS order: A, C, B
    idx_k, idx_c = vote_pairs(boxes[kept], scores[kept], labels[kept], boxes, scores, labels, vote_iou=0.3)
    pairs = sorted(zip(idx_k.tolist(), idx_c.tolist()))
    assert (2, 1) not in pairs  # X does not vote for B
    assert sum(c == 4 for _, c in pairs) == 1 and (0, 4) in pairs  # Y votes once, for A
    assert (0, 0) in pairs and (1, 3) in pairs and (2, 2) in pairs  # every kept box votes for itself
    voted = suppress({"boxes": boxes, "scores": scores, "labels": labels}, nms_iou=0.3, max_det=10, vote_iou=0.3)
    b = voted["boxes"][voted["scores"] == 0.3][0]
    torch.testing.assert_close(b, boxes[2])  # B stays where it was


def test_boxes_voting_brings_together_are_suppressed_again():
    """A (0.9) and B (0.8) pass NMS at 0.4 (IoU 0.33); candidate C between them votes for A and moves it to IoU
    0.47 with B: what leaves is NMS'd again, so B goes (the cross-tile merge relies on NMS'd tile outputs)."""
    boxes = t([[50, 50, 40, 16, 0.0], [50, 58, 40, 16, 0.0], [50, 55, 40, 16, 0.0]])
    result = {"boxes": boxes, "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.zeros(3, dtype=torch.long)}
    plain = suppress(dict(result), nms_iou=0.4, max_det=10)
    voted = suppress(dict(result), nms_iou=0.4, max_det=10, vote_iou=0.5)
    assert len(plain["boxes"]) == 2 and len(voted["boxes"]) == 1
    assert float(voted["boxes"][0, 1]) == pytest.approx((0.9 * 50 + 0.7 * 55) / 1.6, abs=1e-4)


def test_voting_moves_the_heading_onto_the_new_long_axis():
    result = {"boxes": t([[50, 50, 40, 16, D(0)], [50, 50, 40, 16, D(10)]]), "scores": torch.tensor([0.5, 0.5]),
              "labels": torch.tensor([0, 0]), "heading": torch.tensor([D(178), D(-170)])}
    voted = suppress(result, nms_iou=0.5, max_det=10, vote_iou=0.5)
    assert angle_gap(voted["boxes"][0, 4], D(5)) < 1e-5
    assert float(voted["heading"][0]) == pytest.approx(D(-175), abs=1e-5)  # the end the head pointed to


def test_view_agreement_sums_each_views_best_score():
    scores = torch.tensor([0.9, 0.7, 0.5, 0.8])
    views = torch.tensor([0, 1, 1, 0])
    idx_k, idx_c = torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1, 2, 3])
    agreed = view_agreement_scores(scores, views, 2, 2, idx_k, idx_c)
    torch.testing.assert_close(agreed, torch.tensor([(0.9 + 0.7) / 2, 0.8 / 2]))


def view_points(points: np.ndarray, view: int, height: int, width: int) -> tuple[np.ndarray, int, int]:
    """Points ``[N, 2]`` (x, y; pixel-corner coordinates) of a ``height x width`` image in view ``view``, and the
    view's size: the forward map, written independently of ``boxes_from_view``."""
    x, y = points[:, 0].copy(), points[:, 1].copy()
    if view & 4:
        x, y, height, width = y, x, width, height
    if view & 1:
        x = width - x
    if view & 2:
        y = height - y
    return np.stack([x, y], 1), height, width


@pytest.mark.parametrize("view", range(8))
def test_view_images_moves_pixels_where_view_points_says(view):
    height, width = 6, 10
    image = torch.zeros(1, 1, height, width)
    image[0, 0, 1, 7] = 1.0  # pixel row 1, column 7: centre (7.5, 1.5)
    seen = view_images(image, view)[0, 0]
    (x, y), h, w = (lambda p: (p[0][0], p[1], p[2]))(view_points(np.array([[7.5, 1.5]]), view, height, width))
    assert tuple(seen.shape) == (h, w)
    assert seen[int(y), int(x)] == 1.0 and seen.sum() == 1.0


@pytest.mark.parametrize("view", range(8))
def test_boxes_from_view_undoes_each_view(view):
    """Boxes (and headings) carried into a view by moving their corners, then mapped back: the originals."""
    height, width = 64, 96
    boxes = np.array([[30.0, 20.0, 24.0, 10.0, D(25)], [70.0, 40.0, 30.0, 12.0, D(-80)],
                      [10.0, 50.0, 14.0, 12.0, D(-90)]])
    heading = np.array([D(25), D(100), D(-90)])  # along each box's long axis
    corners = xywha_to_poly(boxes)  # [N, 4, 2]
    fronts = boxes[:, :2] + 10 * np.stack([np.cos(heading), np.sin(heading)], 1)
    moved, h, w = view_points(corners.reshape(-1, 2), view, height, width)
    in_view = poly_to_xywha(moved.reshape(-1, 4, 2))
    front_in_view, _, _ = view_points(fronts, view, height, width)
    heading_in_view = np.arctan2(front_in_view[:, 1] - in_view[:, 1], front_in_view[:, 0] - in_view[:, 0])
    back, back_heading = boxes_from_view(torch.from_numpy(in_view), torch.from_numpy(heading_in_view), view, h, w)
    np.testing.assert_allclose(back[:, :4].numpy(), boxes[:, :4], atol=1e-9)
    assert angle_gap(back[:, 4].numpy(), boxes[:, 4]) < 1e-9
    gap = np.remainder(back_heading.numpy() - heading + math.pi, 2 * math.pi) - math.pi
    assert np.abs(gap).max() < 1e-9
    assert (back_heading.numpy() >= -math.pi).all() and (back_heading.numpy() < math.pi).all()


def moments_candidates(images: torch.Tensor) -> list[dict]:
    """An exactly equivariant 'detector': the box of each image's bright pixels from their first and second
    moments (a filled rectangle's sides are sqrt(12 x variance) along its axes), score 0.9."""
    out = []
    for image in images:
        ys, xs = torch.nonzero(image[0] > 0.5, as_tuple=True)
        pts = torch.stack([xs, ys], 1).double() + 0.5  # pixel centres
        centre = pts.mean(0)
        cov = torch.cov((pts - centre).T)
        values, vectors = torch.linalg.eigh(cov)  # ascending
        long_dir = vectors[:, 1]
        box = torch.tensor([[centre[0], centre[1], math.sqrt(12 * values[1]), math.sqrt(12 * values[0]),
                             math.atan2(long_dir[1], long_dir[0])]], dtype=torch.float64)
        box[:, 4] = torch.remainder(box[:, 4] + math.pi / 2, math.pi) - math.pi / 2
        out.append({"boxes": box.float(), "scores": torch.tensor([0.9]), "labels": torch.tensor([0])})
    return out


@pytest.mark.parametrize("tta", list(VIEWS))
def test_every_view_of_an_equivariant_detector_finds_the_same_box(tta):
    """Fusing the views of a detector that sees each view exactly gives the box seen without them, on a
    rectangular, non-square input (the transposing views swap its sides)."""
    image = torch.zeros(1, 3, 64, 96)
    yy, xx = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(96) + 0.5, indexing="ij")
    a = D(30)
    u = (xx - 40) * math.cos(a) + (yy - 30) * math.sin(a)
    v = -(xx - 40) * math.sin(a) + (yy - 30) * math.cos(a)
    image[0, :, (u.abs() < 15) & (v.abs() < 6)] = 1.0
    plain = predict_views(moments_candidates, image, "none", nms_iou=0.5, max_det=10, vote_iou=0.6)[0]
    fused = predict_views(moments_candidates, image, tta, nms_iou=0.5, max_det=10, vote_iou=0.6,
                          score_threshold=0.5)[0]
    assert len(fused["boxes"]) == 1
    torch.testing.assert_close(fused["boxes"][:, :4], plain["boxes"][:, :4], atol=1e-4, rtol=0)
    assert angle_gap(fused["boxes"][:, 4], plain["boxes"][:, 4]) < 1e-5
    assert float(fused["scores"][0]) == pytest.approx(0.9)  # seen in every view


def test_boxes_seen_in_few_views_drop_below_the_score_threshold():
    """A candidate only one view of eight sees scores 1/8 of its score after fusion: below the threshold."""
    calls = []

    def first_view_only(images):  # views come one call each; the first is the image itself
        calls.append(1)
        found = moments_candidates(images)
        return found if len(calls) == 1 else [{name: value[:0] for name, value in c.items()} for c in found]

    image = torch.zeros(1, 3, 64, 96)
    image[0, :, 20:30, 40:70] = 1.0
    fused = predict_views(first_view_only, image, "d8", nms_iou=0.5, max_det=10, vote_iou=0.6,
                          score_threshold=0.2)[0]
    assert len(calls) == 8 and len(fused["boxes"]) == 0


def test_the_training_default_is_the_inference_default():
    from obbdet.box_voting import DEFAULT_VOTE_IOU
    from obbdet.config import TrainConfig
    from obbdet.engine import EvalOptions

    assert TrainConfig().vote_iou == EvalOptions().vote_iou == InferenceOptions().vote_iou == DEFAULT_VOTE_IOU


def test_options_refuse_unknown_views_and_views_without_voting():
    with pytest.raises(ValueError, match="choose one of none, flip, rot4, d8"):
        InferenceOptions(tta="d4")
    with pytest.raises(ValueError, match="needs vote_iou > 0"):
        InferenceOptions(tta="d8", vote_iou=0.0)
    with pytest.raises(ValueError, match="vote_iou must be in"):
        InferenceOptions(vote_iou=1.5)
