"""Tracker for oriented boxes: identities through turns, occlusion and crossings, angle and heading filtering,
frame gaps, the tracks CSV and the folder CLI."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from obbdet.boxes import normalize_xywha
from obbdet.formats import read_obb_json, write_obb_json
from obbdet.structures import ImageLabels
from obbdet.tracking import (TrackedObjects, Tracker, TrackerOptions, read_tracks_csv, track_sequence,
                             write_tracks_csv)
from obbdet.tracking.association import assign

ROOT = Path(__file__).resolve().parents[1]


def _wrap(d, period):
    """Angle differences into ``(-period/2, period/2]``."""
    return -((-np.asarray(d) + period / 2) % period - period / 2)


def _box(cx, cy, length, width, angle):
    return normalize_xywha(np.array([[cx, cy, length, width, angle]]))[0]


def _run(tracker, frames):
    """``frames``: list of (frame, boxes [N, 5], scores, labels[, headings]) -> list of TrackedObjects."""
    return [tracker.update(b, s, lab, *(rest or [None]), frame=f) for f, b, s, lab, *rest in frames]


def _turning_path(n, start, speed, heading0, turn_per_frame):
    """Centres and headings of a vehicle driving forward while turning."""
    headings = heading0 + turn_per_frame * np.arange(n)
    steps = speed * np.stack([np.cos(headings), np.sin(headings)], 1)
    centres = np.asarray(start, float) + np.cumsum(steps, 0) - steps[0]
    return centres, headings


def _track_of(outs, det_row=0):
    """Per frame: (track id, box, heading) of the track matched to input row ``det_row`` (None if none)."""
    found = []
    for out in outs:
        k = np.flatnonzero(out.detection_index == det_row)
        found.append((int(out.track_ids[k[0]]), out.boxes[k[0]], out.headings[k[0]]) if len(k) else None)
    return found


def test_rotation_through_the_le90_boundary_is_smooth_and_keeps_the_heading_side():
    rng = np.random.default_rng(1)
    centres, headings = _turning_path(70, (200, 200), 3.0, math.radians(60), math.radians(1.5))  # 60 -> 163 deg
    frames = []
    for f, ((cx, cy), h) in enumerate(zip(centres, headings)):
        box = _box(cx + rng.normal(0, 0.5), cy + rng.normal(0, 0.5), 40, 18, h + rng.normal(0, math.radians(1)))
        frames.append((f, box[None], [0.9], [0]))
    found = _track_of(_run(Tracker(), frames))
    assert all(item is not None for item in found) and len({item[0] for item in found}) == 1
    angles = np.array([item[1][4] for item in found])
    assert np.all(np.abs(np.degrees(_wrap(np.diff(angles), math.pi))) < 5)  # through +-90 without a jump
    true_axis = _wrap(headings - angles, math.pi)
    assert np.all(np.abs(np.degrees(true_axis)) < 6)
    known = np.array([item[2] for item in found])
    known_at = np.flatnonzero(np.isfinite(known))
    assert known_at[0] <= 5 and np.all(np.isfinite(known[known_at[0]:]))
    off = np.abs(np.degrees(_wrap(known[known_at] - headings[known_at], 2 * math.pi)))
    assert off.max() < 10  # the front stays at the front through the turn


def test_near_square_box_turning_keeps_its_id_and_a_smooth_angle():
    rng = np.random.default_rng(2)
    centres, headings = _turning_path(60, (300, 300), 2.0, 0.3, math.radians(1.5))
    frames = []
    for f, ((cx, cy), h) in enumerate(zip(centres, headings)):
        # sides 30 x 28 with noise: the detector's long side swaps back and forth, the le90 angle jumps by 90
        length, width = 30 + rng.normal(0, 1.0), 28 + rng.normal(0, 1.0)
        frames.append((f, _box(cx, cy, length, width, h + rng.normal(0, math.radians(1)))[None], [0.9], [0]))
    raw_angles = np.array([b[0][4] for _, b, *_ in frames])
    assert np.abs(np.degrees(_wrap(np.diff(raw_angles), math.pi))).max() > 45  # the input does swap
    found = _track_of(_run(Tracker(), frames))
    assert all(item is not None for item in found) and len({item[0] for item in found}) == 1
    angles = np.array([item[1][4] for item in found])
    assert np.abs(np.degrees(_wrap(np.diff(angles), math.pi / 2))).max() < 5
    assert np.abs(np.degrees(_wrap(angles - headings, math.pi / 2))).max() < 6


@pytest.mark.parametrize("slow_down", [False, True])
def test_vehicle_lost_under_a_bridge_keeps_its_id_further_along(slow_down):
    """Hidden for 42 frames (< max_age 60); with ``slow_down`` it brakes to half speed while hidden and reappears
    ~80 px behind the prediction, no overlap with it: matched by the gated centre distance."""
    rng = np.random.default_rng(7)
    frames = []
    hidden = range(20, 62)
    parked = _box(260, 230, 40, 18, 0.0)
    speed = np.where((np.arange(90) >= 20) & slow_down, 2.0, 4.0)
    along = np.cumsum(speed) - speed[0]
    for f in range(90):
        boxes = [parked]
        if f not in hidden:
            boxes.append(_box(100 + along[f], 200 + along[f] / 4, 40, 18, math.atan2(1.0, 4.0)))
        boxes = np.array(boxes)
        boxes[:, :2] += rng.normal(0, 0.5, boxes[:, :2].shape)
        frames.append((f, boxes, [0.9] * len(boxes), [0] * len(boxes)))
    outs = _run(Tracker(), frames)
    moving = _track_of(outs, det_row=1)
    before = {item and item[0] for f, item in enumerate(moving) if f < 20}
    after = {item and item[0] for f, item in enumerate(moving) if f >= 62}
    assert before == after and len(before) == 1
    assert all(len(out) == 1 for f, out in enumerate(outs) if f in hidden)  # hidden: not output, not removed
    parked_ids = {item[0] for item in _track_of(outs, det_row=0)}
    assert len(parked_ids) == 1 and parked_ids != before


def test_removed_after_max_age():
    tracker = Tracker(TrackerOptions(max_age=5))
    box = _box(100, 100, 40, 18, 0.2)[None]
    first = tracker.update(box, [0.9], [0], frame=0).track_ids[0]
    tracker.update(np.zeros((0, 5)), [], [], frame=7)  # 7 frames without it > max_age
    again = tracker.update(box, [0.9], [0], frame=8)
    assert len(again) == 0  # a new, tentative track
    for f in (9, 10):
        again = tracker.update(box, [0.9], [0], frame=f)
    assert len(again) == 1 and again.track_ids[0] != first


@pytest.mark.parametrize("gate", ["distance", "mahalanobis"])
def test_crossing_vehicles_keep_their_ids(gate):
    rng = np.random.default_rng(3)
    frames = []
    a_dir, b_dir = math.radians(20), math.radians(-40)  # 60 degrees apart, crossing at (300, 300) at frame 30
    for f in range(60):
        t = f - 30
        a = _box(300 + 3 * t * math.cos(a_dir), 300 + 3 * t * math.sin(a_dir), 40, 18, a_dir)
        b = _box(300 + 3 * t * math.cos(b_dir) + 5, 300 + 3 * t * math.sin(b_dir), 40, 18, b_dir)
        boxes = np.array([a, b])
        boxes[:, :2] += rng.normal(0, 0.7, (2, 2))
        order = rng.permutation(2)  # detection order carries no identity
        frames.append((f, boxes[order], [0.9, 0.85], [0, 0], order))
    tracker = Tracker(TrackerOptions(gate=gate))
    ids = {0: set(), 1: set()}
    for f, boxes, scores, labels, order in frames:
        out = tracker.update(boxes, scores, labels, frame=f)
        assert len(out) == 2
        for track_id, row in zip(out.track_ids, out.detection_index):
            ids[int(order[row])].add(int(track_id))
    assert len(ids[0]) == 1 and len(ids[1]) == 1 and ids[0] != ids[1]


def test_empty_frames_and_empty_sequence():
    assert list(track_sequence([])) == []
    tracker = Tracker()
    out = tracker.update(np.zeros((0, 5)), np.zeros(0), np.zeros(0, np.int64), frame=0)
    assert isinstance(out, TrackedObjects) and len(out) == 0 and out.boxes.shape == (0, 5)
    box = _box(50, 50, 30, 12, 0.5)[None]
    first = tracker.update(box, [0.9], [0], frame=1)
    assert len(first) == 0  # not the first frame of the sequence any more: tentative
    for f in (2, 3):
        out = tracker.update(box, [0.9], [0], frame=f)
    assert len(out) == 1
    gap = tracker.update(np.zeros((0, 5)), [], [], frame=4)
    assert len(gap) == 0
    back = tracker.update(box, [0.9], [0], frame=5)
    assert back.track_ids.tolist() == out.track_ids.tolist()
    labels = list(track_sequence([(0, ImageLabels(boxes=np.zeros((0, 5)), classes=[], scores=np.zeros(0)))]))
    assert labels[0][0] == 0 and len(labels[0][1]) == 0


def test_low_score_detections_extend_tracks_but_never_start_them():
    tracker = Tracker()
    for f in range(5):
        out = tracker.update(_box(100 + 2 * f, 100, 40, 18, 0)[None], [0.3], [0], frame=f)
        assert len(out) == 0 and len(tracker.tracks) == 0
    tracker = Tracker()
    ids = set()
    for f in range(12):
        out = tracker.update(_box(100 + 2 * f, 100, 40, 18, 0)[None], [0.9 if f < 3 else 0.3], [0], frame=f)
        assert len(out) == 1
        ids.add(int(out.track_ids[0]))
    assert ids == {1}
    out = tracker.update(_box(124, 100, 40, 18, 0)[None], [0.05], [0], frame=12)  # below low_score: dropped
    assert len(out) == 0
    # nor do they confirm a tentative track
    tracker = Tracker()
    tracker.update(np.zeros((0, 5)), [], [], frame=0)
    tracker.update(_box(100, 100, 40, 18, 0)[None], [0.9], [0], frame=1)
    for f in (2, 3, 4):
        assert len(tracker.update(_box(100, 100, 40, 18, 0)[None], [0.3], [0], frame=f)) == 0
    assert len(tracker.tracks) == 0


def test_class_consistency_and_optional_class_switch():
    box = _box(100, 100, 40, 18, 0)[None]
    tracker = Tracker()
    tracker.update(box, [0.9], [0], frame=0)
    out = tracker.update(box, [0.9], [1], frame=1)  # same place, another class: no match
    assert len(out) == 0 and sorted(tracker.tracks.label.tolist()) == [0, 1]
    tracker = Tracker(TrackerOptions(class_switch_cost=0.3))
    first = tracker.update(box, [0.9], [0], frame=0)
    out = tracker.update(box, [0.9], [1], frame=1)
    assert out.track_ids.tolist() == first.track_ids.tolist() and out.labels.tolist() == [1]
    # with both classes present, each detection keeps its own class's track
    tracker = Tracker(TrackerOptions(class_switch_cost=0.3))
    two = np.array([box[0], _box(105, 100, 40, 18, 0)])
    first = tracker.update(two, [0.9, 0.9], [0, 1], frame=0)
    out = tracker.update(two[::-1], [0.9, 0.9], [1, 0], frame=1)
    assert dict(zip(out.labels.tolist(), out.track_ids.tolist())) == dict(zip(first.labels.tolist(),
                                                                               first.track_ids.tolist()))


def test_parked_vehicle_angle_jitter_is_damped_at_least_three_times():
    rng = np.random.default_rng(4)
    n_cars, n_frames = 25, 60
    truth = np.stack([rng.uniform(50, 950, n_cars), rng.uniform(50, 950, n_cars), rng.uniform(35, 50, n_cars),
                      rng.uniform(15, 20, n_cars), rng.uniform(-math.pi / 2, math.pi / 2, n_cars)], 1)
    tracker = Tracker()
    raw, filtered = [], []
    for f in range(n_frames):
        noisy = truth.copy()
        noisy[:, :2] += rng.normal(0, 1.0, (n_cars, 2))
        noisy[:, 2:4] += rng.normal(0, 1.0, (n_cars, 2))
        noisy[:, 4] += rng.normal(0, math.radians(2.0), n_cars)
        noisy = normalize_xywha(noisy)
        out = tracker.update(noisy, np.full(n_cars, 0.9), np.zeros(n_cars, np.int64), frame=f)
        assert len(out) == n_cars
        order = np.argsort(out.detection_index)
        raw.append(noisy[:, 4])
        filtered.append(out.boxes[order, 4])
    raw, filtered = np.array(raw)[10:], np.array(filtered)[10:]
    raw_jitter = np.std(np.degrees(_wrap(np.diff(raw, axis=0), math.pi)))
    filtered_jitter = np.std(np.degrees(_wrap(np.diff(filtered, axis=0), math.pi)))
    assert raw_jitter > 2.0 and filtered_jitter * 3 <= raw_jitter, (raw_jitter, filtered_jitter)


def test_heading_from_motion_and_held_when_stopping():
    rng = np.random.default_rng(5)
    direction = math.radians(150)  # the le90 angle is -30 degrees: the front is at angle + 180
    speeds = np.concatenate([np.full(30, 3.0), np.linspace(3.0, 0.0, 10), np.zeros(40)])
    position = np.cumsum(speeds)[:, None] * np.array([math.cos(direction), math.sin(direction)]) + 400
    frames = [(f, _box(x + rng.normal(0, 0.5), y + rng.normal(0, 0.5), 40, 18,
                       direction + rng.normal(0, math.radians(1)))[None], [0.9], [0])
              for f, (x, y) in enumerate(position)]
    outs = _run(Tracker(), frames)
    headings = np.array([out.headings[0] for out in outs])
    assert np.isnan(headings[0])  # not known until it moves
    known = np.flatnonzero(np.isfinite(headings))[0]
    assert known <= 4 and np.all(np.isfinite(headings[known:]))
    assert np.abs(np.degrees(_wrap(headings[known:] - direction, 2 * math.pi))).max() < 10
    assert outs[-1].speeds[0] < 0.3 and outs[20].speeds[0] == pytest.approx(3.0, abs=0.3)
    # a parked vehicle: NaN without detector headings, the detector's when given (snapped to the axis)
    box = _box(100, 100, 40, 18, 0.4)[None]
    tracker = Tracker()
    assert np.isnan(tracker.update(box, [0.9], [0], frame=0).headings[0])
    out = tracker.update(box, [0.9], [0], [0.4 + math.pi - 0.1], frame=1)
    assert out.headings[0] == pytest.approx(0.4 - math.pi)


def test_slow_vehicle_heading_does_not_flip_from_noise():
    rng = np.random.default_rng(6)
    frames = []
    for f in range(150):
        x = 100 + 0.6 * f  # just above heading_min_speed, along +x
        frames.append((f, _box(x + rng.normal(0, 0.8), 100 + rng.normal(0, 0.8), 40, 18,
                               rng.normal(0, math.radians(2)))[None], [0.9], [0]))
    headings = np.array([out.headings[0] for out in _run(Tracker(), frames)])
    known = headings[np.isfinite(headings)]
    assert len(known) > 100 and np.abs(np.degrees(_wrap(known, 2 * math.pi))).max() < 10


def test_frame_gaps_predict_over_the_difference():
    tracker = Tracker()
    outs = [tracker.update(_box(100 + 2.0 * f, 100, 40, 18, 0)[None], [0.9], [0], frame=f) for f in range(0, 60, 3)]
    assert {int(out.track_ids[0]) for out in outs} == {1}
    assert outs[-1].speeds[0] == pytest.approx(2.0, abs=0.1)  # per source frame, not per processed frame
    with pytest.raises(ValueError, match="does not follow"):
        tracker.update(np.zeros((0, 5)), [], [], frame=57)


def test_assignment_never_trades_one_good_match_for_two_poor_ones():
    rows, cols = np.array([0, 0, 1]), np.array([0, 1, 0])
    r, c = assign(rows, cols, np.array([0.1, 0.9, 0.9]), limit=1.1)
    assert r.tolist() == [0] and c.tolist() == [0]
    r, c = assign(np.array([0, 1]), np.array([1, 0]), np.array([0.2, 0.3]), limit=1.1)  # lone pairs
    assert sorted(zip(r.tolist(), c.tolist())) == [(0, 1), (1, 0)]


def test_options_are_checked():
    with pytest.raises(ValueError, match="gate"):
        TrackerOptions(gate="nearest")
    with pytest.raises(ValueError, match="low_score"):
        TrackerOptions(low_score=0.7)
    with pytest.raises(ValueError, match="boxes"):
        Tracker().update(np.zeros((2, 4)), [1, 1], [0, 0])


def _sequence(n_frames=25, gap_frame=10):
    """obb_json detections of two cars (one parked, one moving), frame ``gap_frame`` empty."""
    frames = []
    for f in range(n_frames):
        boxes = np.array([_box(100 + 3 * f, 100, 40, 18, 0.0), _box(300, 200, 36, 16, 1.0)])
        if f == gap_frame:
            boxes = boxes[:0]
        frames.append((f, ImageLabels(image=f"{f:06d}.jpg", width=640, height=480, boxes=boxes,
                                      classes=["car", "van"][:len(boxes)], scores=np.full(len(boxes), 0.9),
                                      extras=[{"note": k} for k in range(len(boxes))])))
    return frames


def test_csv_round_trip(tmp_path):
    tracked = list(track_sequence(_sequence()))
    assert tracked[5][1].extras[0]["note"] in (0, 1) and "track_id" in tracked[5][1].extras[0]
    path = tmp_path / "tracks.csv"
    rows = write_tracks_csv(path, tracked)
    first = path.read_text().splitlines()[0].split(",")
    assert len(first) == 15 and first[0] == "1" and rows == sum(len(t) for _, t in tracked)
    back = read_tracks_csv(path)
    for frame, labels in tracked:
        if not len(labels):
            assert frame not in back
            continue
        got = back[frame]
        assert [e["track_id"] for e in got.extras] == [e["track_id"] for e in labels.extras]
        assert got.classes == labels.classes
        np.testing.assert_allclose(got.boxes, labels.boxes, atol=1e-3)
        np.testing.assert_allclose(got.heading, labels.heading, atol=1e-5)  # NaN where unknown, both
        np.testing.assert_allclose([e["speed"] for e in got.extras], [e["speed"] for e in labels.extras], atol=1e-4)
    bad = tmp_path / "bad.csv"
    bad.write_text(path.read_text().splitlines()[0] + "\n1,2,3\n")
    with pytest.raises(ValueError, match="bad.csv:2"):
        read_tracks_csv(bad)


def _write_sequence(folder: Path, frames):
    folder.mkdir(parents=True)
    for f, labels in frames:
        write_obb_json(folder / f"{f:06d}.json", labels)


def test_cli_on_folders_of_obb_json(tmp_path):
    det = tmp_path / "det"
    frames = _sequence()
    _write_sequence(det / "seq000", frames)
    _write_sequence(det / "seq001", [(f * 2, labels) for f, labels in frames])  # --every 2 numbering
    (det / "seq001" / "000030.json").write_text('{"objects": [{"class": "car", "cx": 1}]}')
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "obbdet.tracking", str(det), "--out", str(out), "--max-age", "20"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "000030.json" in proc.stderr and "skipped" in proc.stderr
    written = sorted(p.name for p in (out / "seq000").iterdir())
    assert written == [f"{f:06d}.json" for f in range(25)]
    doc = json.loads((out / "seq000" / "000020.json").read_text())
    assert {o["track_id"] for o in doc["objects"]} == {1, 2} and doc["image"] == "000020.jpg"
    moving = next(o for o in doc["objects"] if o["class"] == "car")
    assert moving["heading"] == pytest.approx(0.0, abs=5) and moving["speed"] == pytest.approx(3.0, abs=0.3)
    assert json.loads((out / "seq000" / "000010.json").read_text())["objects"] == []
    assert not (out / "seq001" / "000030.json").exists()
    tracks = read_tracks_csv(out / "seq001.tracks.csv")
    assert sorted(tracks)[:2] == [0, 2] and (out / "seq000.tracks.csv").is_file()
    assert read_obb_json(out / "seq001" / "000040.json", detections=True).extras[0]["speed"] == \
        pytest.approx(1.5, abs=0.2)  # moved 3 px per 2 frames
    # one sequence folder: files in OUT, the CSV where --csv says
    proc = subprocess.run([sys.executable, "-m", "obbdet.tracking", str(det / "seq000"), "--out",
                           str(tmp_path / "one"), "--csv", str(tmp_path / "c" / "one.csv")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "c" / "one.csv").is_file() and (tmp_path / "one" / "000000.json").is_file()
    for args in (["--csv", str(tmp_path / "x.csv")], ["--gate", "nearest"]):
        proc = subprocess.run([sys.executable, "-m", "obbdet.tracking", str(det), "--out", str(tmp_path / "o2"),
                               *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2
    proc = subprocess.run([sys.executable, "-m", "obbdet.tracking", str(det), "--out", str(det / "inside")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "inside" in proc.stderr


def test_gated_sparse_candidates_find_every_overlapping_pair_a_dense_search_finds():
    from obbdet.iou import box_iou_rotated
    from obbdet.tracking.association import gated_pairs, pair_costs

    rng = np.random.default_rng(8)
    tracks = normalize_xywha(np.column_stack([rng.uniform(0, 600, 300), rng.uniform(0, 600, 300),
                                              rng.uniform(30, 50, 300), rng.uniform(12, 20, 300),
                                              rng.uniform(-3, 3, 300)]))
    dets = tracks[rng.permutation(300)[:250]].copy()
    dets[:, :2] += rng.normal(0, 6, (250, 2))
    dets = np.concatenate([dets, normalize_xywha(np.column_stack([rng.uniform(0, 600, (50, 2)),
                                                                  rng.uniform(10, 60, (50, 2)),
                                                                  rng.uniform(-3, 3, 50)]))])
    radius = tracks[:, 2] * 1.5
    ti, di, dist = gated_pairs(tracks[:, :2], radius, dets[:, :2])
    labels_t, labels_d = np.zeros(300, np.int64), np.zeros(300, np.int64)
    ti, di, cost = pair_costs(tracks, labels_t, dets, labels_d, ti, di, dist, min_iou=0.05,
                              distance_ok=np.zeros(300, bool), centre_weight=0.05, class_switch_cost=None)
    dense = box_iou_rotated(tracks, dets)
    centre = np.hypot(*(tracks[:, None, :2] - dets[None, :, :2]).transpose(2, 0, 1))
    expect = np.argwhere((dense >= 0.05) & (centre <= radius[:, None]))
    assert sorted(zip(ti.tolist(), di.tolist())) == sorted(map(tuple, expect.tolist()))
    np.testing.assert_allclose(cost, 1 - dense[ti, di] + 0.05 * centre[ti, di] / radius[ti], atol=1e-12)


def test_cli_tracks_ground_truth_without_scores(tmp_path, caplog):
    from obbdet.tracking.__main__ import main

    frames = [(f, ImageLabels(boxes=labels.boxes, classes=labels.classes)) for f, labels in _sequence(8, gap_frame=3)]
    _write_sequence(tmp_path / "gt", frames)
    assert main([str(tmp_path / "gt"), "--out", str(tmp_path / "as_det")]) == 1  # detections need scores
    assert "000000.json: object #0: detection needs a numeric 'score'" in caplog.text and "--kind gt" in caplog.text
    assert main([str(tmp_path / "gt"), "--out", str(tmp_path / "out"), "--kind", "gt"]) == 0
    tracks = read_tracks_csv(tmp_path / "out" / "tracks.csv")
    assert sorted(tracks) == [0, 1, 2, 4, 5, 6, 7] and all(len(t) == 2 for t in tracks.values())
    assert np.all(np.concatenate([t.scores for t in tracks.values()]) == 1.0)
