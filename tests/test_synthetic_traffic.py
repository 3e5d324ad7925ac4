"""Synthetic traffic sequences: determinism, tracks, headings, parked and occluded vehicles, files, the CLI."""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from obbdet.datasets_registry.synthetic import render_scene
from obbdet.datasets_registry.synthetic_options import SceneOptions
from obbdet.datasets_registry.synthetic_traffic import TrafficOptions, render_traffic_sequence
from obbdet.datasets_registry.synthetic_traffic_io import generate_traffic_sequences, sequence_seed
from obbdet.datasets_registry.synthetic_traffic_sim import Traffic, TrafficParams
from obbdet.datasets_registry.synthetic_traffic_world import build_world
from obbdet.boxes import xywha_to_poly
from obbdet.formats import read_obb_json
from obbdet.iou import box_iou_rotated

SEED, SIZE, WIDTH_PX, FRAMES = 7, 256, 10.0, 60


@pytest.fixture(scope="module")
def sequence():
    return list(render_traffic_sequence(SEED, FRAMES, SIZE, SIZE, vehicle_width=WIDTH_PX))


def _by_track(labels) -> dict:
    return {e["track_id"]: i for i, e in enumerate(labels.extras)}


def _whole(labels) -> np.ndarray:
    """``[N]`` bool: boxes entirely inside the frame (the others are refitted to their visible part)."""
    poly = xywha_to_poly(labels.boxes)
    return ((poly >= 0) & (poly <= np.array([labels.width, labels.height]))).all(axis=(1, 2))


def test_render_scene_unchanged_by_the_traffic_seams():
    image, labels = render_scene(5, 160, 128, scene="street", vehicle_width=18)
    digest = hashlib.sha1(image.tobytes() + labels.boxes.tobytes() + ",".join(labels.classes).encode()).hexdigest()
    assert digest == "43675206a4d6517a433fab432eb8b600bd85949f"


def test_same_seed_same_frames_and_labels(sequence):
    again = list(render_traffic_sequence(SEED, 12, SIZE, SIZE, vehicle_width=WIDTH_PX))
    for (img_a, lab_a), (img_b, lab_b) in zip(sequence, again):
        assert np.array_equal(img_a, img_b)
        assert np.array_equal(lab_a.boxes, lab_b.boxes) and lab_a.extras == lab_b.extras
    other = next(render_traffic_sequence(SEED + 1, 1, SIZE, SIZE, vehicle_width=WIDTH_PX))
    assert not np.array_equal(other[0], sequence[0][0])


def test_frames_differ_by_sensor_noise_and_are_uint8(sequence):
    (a, _), (b, _) = sequence[0], sequence[1]
    assert a.shape == (SIZE, SIZE, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, b)


def test_track_ids_unique_per_frame_and_stable(sequence):
    seen_class = {}
    for k, (_, labels) in enumerate(sequence):
        ids = [e["track_id"] for e in labels.extras]
        assert len(ids) == len(set(ids)) and min(ids) >= 1
        for tid, i in _by_track(labels).items():
            assert seen_class.setdefault(tid, labels.classes[i]) == labels.classes[i]
        if k:  # the same id is the same vehicle: it moved by its speed, never jumped
            prev = sequence[k - 1][1]
            before = _by_track(prev)
            whole, whole_before = _whole(labels), _whole(prev)
            for tid, i in _by_track(labels).items():
                if tid in before and whole[i] and whole_before[before[tid]]:
                    step = np.hypot(*(labels.boxes[i, :2] - prev.boxes[before[tid], :2]))
                    assert step <= 7.0 * WIDTH_PX / 18.0 + 1e-6
                    assert step == pytest.approx(labels.extras[i]["speed"], abs=1e-3)
    assert len(seen_class) > 5


def test_heading_follows_the_displacement_of_moving_vehicles(sequence):
    checked = 0
    for (_, prev), (_, labels) in zip(sequence, sequence[1:]):
        before = _by_track(prev)
        whole, whole_before = _whole(labels), _whole(prev)
        for tid, i in _by_track(labels).items():
            e = labels.extras[i]
            if tid not in before or e["parked"] or e["speed"] < 0.5 or not whole[i] or not whole_before[before[tid]]:
                continue
            dx, dy = labels.boxes[i, :2] - prev.boxes[before[tid], :2]
            diff = (math.atan2(dy, dx) - labels.heading[i] + math.pi) % (2 * math.pi) - math.pi
            assert abs(diff) < math.radians(10)
            # along the long side: heading and box angle agree modulo pi
            assert abs((labels.heading[i] - labels.boxes[i, 4] + math.pi / 2) % math.pi - math.pi / 2) < 1e-6
            checked += 1
    assert checked > 50


def test_parked_vehicles_never_move_and_moving_ones_do(sequence):
    first = {}
    moving_speeds = []
    for _, labels in sequence:
        for tid, i in _by_track(labels).items():
            e = labels.extras[i]
            if e["parked"]:
                assert e["speed"] == 0.0
                assert np.array_equal(first.setdefault(tid, labels.boxes[i]), labels.boxes[i])
            else:
                moving_speeds.append(e["speed"])
    assert first, "no parked vehicles"
    assert 0 < max(moving_speeds) <= 6.0 * WIDTH_PX / 18.0 + 1e-6
    assert min(moving_speeds) == 0.0 and np.median(moving_speeds) > 1.0  # some stop, most drive


def test_vehicles_do_not_overlap(sequence):
    for _, labels in sequence:
        full = ~labels.difficult
        iou = box_iou_rotated(labels.boxes[full], labels.boxes[full])
        np.fill_diagonal(iou, 0.0)
        assert iou.max(initial=0.0) < 0.02


def test_a_vehicle_is_hidden_then_seen_again_with_its_id(sequence):
    history: dict[int, list] = {}
    for k, (_, labels) in enumerate(sequence):
        for tid, i in _by_track(labels).items():
            history.setdefault(tid, []).append((k, labels.extras[i]["occluded"], labels.extras[i]["parked"]))
        for i, e in enumerate(labels.extras):
            assert 0.0 <= e["occluded"] <= 1.0
            assert not (e["occluded"] > 0.5 and not labels.difficult[i])
    found = False
    for tid, h in history.items():
        frames = [k for k, _, _ in h]
        missing = set(range(frames[0], frames[-1] + 1)) - set(frames)  # fully hidden frames are not written
        mostly = [k for k, occ, _ in h if occ > 0.5]
        hidden = sorted(missing | set(mostly))
        if not h[0][2] and hidden and any(k < hidden[0] and occ < 0.5 for k, occ, _ in h) and \
                any(k > hidden[-1] and occ < 0.5 for k, occ, _ in h):
            found = True
    assert found, "no vehicle passed under an occluder and came out again"


def test_some_vehicles_stop_and_park():
    rng = np.random.default_rng(3)
    world = build_world(rng, 512, 512, SceneOptions(vehicle_width=14.0))
    traffic = Traffic(world, rng, TrafficParams(p_park=1.0, p_stop=1.0), first_id=len(world.parked) + 1)
    traffic.populate()
    parked, waited = set(), set()
    for _ in range(300):
        traffic.step()
        for m in traffic.movers:
            if m.parked:
                parked.add(m.track_id)
                assert m.speed == 0.0
            if m.stop_done:
                waited.add(m.track_id)
    assert parked and waited


def test_labels_round_trip_through_the_files(tmp_path):
    manifest = generate_traffic_sequences(tmp_path, 2, 5, seed=11, width=160, height=128, vehicle_width=12.0,
                                          progress=False)
    assert [s["name"] for s in manifest["sequences"]] == ["seq000", "seq001"]
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    for s in manifest["sequences"]:
        assert s["frames"] == 5 and s["tracks"] == s["moving_vehicles"] + s["parked_vehicles"]
    frames = list(render_traffic_sequence(sequence_seed(11, 1), 5, 160, 128, vehicle_width=12.0))
    for k, (_, labels) in enumerate(frames):
        back = read_obb_json(tmp_path / "labels" / "seq001" / f"{k:06d}.json")
        assert back.image == f"{k:06d}.jpg" and (back.width, back.height) == (160, 128)
        assert back.classes == labels.classes and back.extras == (labels.extras or None)
        assert np.array_equal(back.difficult, labels.difficult)
        if len(labels):
            assert np.allclose(back.boxes, labels.boxes, atol=1e-6)
            assert np.allclose(back.heading, labels.heading, atol=1e-9)
    assert (tmp_path / "frames" / "seq001" / "000004.jpg").is_file()
    from obbdet.video import video_info
    info = video_info(tmp_path / "videos" / "seq001.mp4")
    assert (info.width, info.height) == (160, 128) and info.frames == 5


def test_options_are_validated():
    with pytest.raises(TypeError, match="unknown synthetic traffic option"):
        TrafficOptions.from_kwargs({"speed": 3})
    with pytest.raises(ValueError, match="p_park"):
        TrafficOptions.from_kwargs({"p_park": 2.0})
    with pytest.raises(ValueError, match="64 x 64"):
        next(render_traffic_sequence(0, 1, 32, 32))


def test_camera_jitter_moves_the_frame_and_the_boxes_together():
    still = list(render_traffic_sequence(2, 4, 192, 192, vehicle_width=12.0))
    shaken = list(render_traffic_sequence(2, 4, 192, 192, vehicle_width=12.0, camera_jitter=2.0))
    moved = 0
    for (_, a), (_, b) in zip(still, shaken):
        ia, ib = _by_track(a), _by_track(b)
        for tid in set(ia) & set(ib):
            if a.extras[ia[tid]]["parked"] and not a.difficult[ia[tid]] and not b.difficult[ib[tid]]:
                moved += not np.allclose(a.boxes[ia[tid], :2], b.boxes[ib[tid], :2])
    assert moved > 0


def test_cli_writes_sequences(tmp_path):
    from obbdet.tools.make_synthetic import main

    assert main([str(tmp_path), "--sequences", "1", "--frames", "3", "--size", "128x96", "--quiet",
                 "--vehicle-width", "12", "--no-video"]) == 0
    assert sorted(p.name for p in (tmp_path / "labels" / "seq000").iterdir()) == ["000000.json", "000001.json",
                                                                                 "000002.json"]
    assert not (tmp_path / "videos" / "seq000.mp4").exists()
    assert main([str(tmp_path / "x"), "--sequences", "1", "--frames", "2", "--size", "32x32", "--quiet"]) == 2
