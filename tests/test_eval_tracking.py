"""``python -m eval.tracking``: TrackEval's own numbers on axis-aligned boxes, rotated IoU, the angle figures,
frames and sequences missing on one side, bad files and the command line."""
from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from obbdet.boxes import xywha_to_aabb
from obbdet.eval.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EvalInputError, WarningLog
from obbdet.eval.tracking import evaluate_tracking, main
from obbdet.eval.tracking_angles import angle_change_deg
from obbdet.eval.tracking_data import load_sequences
from obbdet.eval.tracking_trackeval import class_data, clear_matches, trackeval_metrics

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def obj(cls, tid, cx, cy, length, width, angle, score=None, **extra):
    out = {"class": cls, "cx": cx, "cy": cy, "length": length, "width": width, "angle": angle, "track_id": tid,
           **extra}
    if score is not None:
        out["score"] = score
    return out


def write_sequence(root: Path, seq: str, frames: dict[int, list[dict]]) -> None:
    folder = root / seq
    folder.mkdir(parents=True, exist_ok=True)
    for frame, objects in frames.items():
        (folder / f"{frame:06d}.json").write_text(json.dumps({"image": f"{frame:06d}.jpg", "objects": objects}))


def evaluate_folders(gt: Path, det: Path, **options):
    warnings = WarningLog()
    result = evaluate_tracking(load_sequences(gt, det, warnings=warnings, **options))
    return result, warnings.lines()


# ---------------------------------------------------------------------------------------------------
# The same data through TrackEval's own MOTChallenge reader and evaluator
# ---------------------------------------------------------------------------------------------------

def _mot_scene(seed: int, n_frames: int, switch: tuple[int, int, int] | None, distractor: bool):
    """GT rows ``(frame, id, x, y, w, h, class)`` and tracker rows ``(frame, id, x, y, w, h, conf)``, 1-based
    frames: linear tracks (some taller than wide), misses, false positives, an id switch, a distractor."""
    rng = np.random.default_rng(seed)
    gt, det = [], []
    tracks = [(tid, rng.uniform(0, 300), rng.uniform(0, 300), rng.uniform(-4, 4), rng.uniform(-4, 4),
               float(rng.choice([20, 40])), float(rng.choice([16, 30]))) for tid in range(1, 6)]
    for f in range(1, n_frames + 1):
        for tid, x0, y0, vx, vy, w, h in tracks:
            if tid == 5 and f < 4:  # a track entering late
                continue
            x, y = round(x0 + vx * f, 2), round(y0 + vy * f, 2)
            gt.append((f, tid, x, y, w, h, 1))
            if rng.random() < 0.15:
                continue  # a miss
            out_id = tid
            if switch and f >= switch[0] and tid in switch[1:]:
                out_id = switch[2] if tid == switch[1] else switch[1]  # two tracks swap ids
            noise = rng.uniform(-3, 3, 4).round(2)
            det.append((f, out_id, x + noise[0], y + noise[1], w + noise[2], h + noise[3], 0.9))
        if distractor:
            gt.append((f, 9, 400.0, 400.0, 30.0, 30.0, 8))
            det.append((f, 99, 401.0, 399.0, 30.0, 31.0, 0.8))
        if rng.random() < 0.4:
            det.append((f, 50 + f % 3, *rng.uniform(0, 350, 2).round(2), 25.0, 18.0, 0.5))  # a false positive
    return gt, det


def _xywh_obb(x, y, w, h) -> dict:
    """An axis-aligned MOT box as obb_json geometry (le90: the long side's direction; -90 when taller)."""
    if w >= h:
        return {"cx": x + w / 2, "cy": y + h / 2, "length": w, "width": h, "angle": 0.0}
    return {"cx": x + w / 2, "cy": y + h / 2, "length": h, "width": w, "angle": -90.0}


def _write_both(tmp_path: Path, scenes: dict[str, tuple[list, list, int]]):
    mot_gt, mot_trk = tmp_path / "mot_gt", tmp_path / "mot_trackers" / "ours" / "data"
    mot_trk.mkdir(parents=True)
    for seq, (gt, det, n_frames) in scenes.items():
        (mot_gt / seq / "gt").mkdir(parents=True)
        (mot_gt / seq / "gt" / "gt.txt").write_text(
            "".join(f"{f},{i},{x},{y},{w},{h},1,{c},1.0\n" for f, i, x, y, w, h, c in gt))
        (mot_trk / f"{seq}.txt").write_text(
            "".join(f"{f},{i},{x},{y},{w},{h},{s},-1,-1,-1\n" for f, i, x, y, w, h, s in det))
        gt_frames = {f: [] for f in range(n_frames)}
        for f, i, x, y, w, h, c in gt:
            gt_frames[f - 1].append({"class": "pedestrian", "track_id": i, **_xywh_obb(x, y, w, h),
                                     **({"difficult": True} if c == 8 else {})})
        det_frames = {f: [] for f in range(n_frames)}
        for f, i, x, y, w, h, s in det:
            det_frames[f - 1].append({"class": "pedestrian", "track_id": i, "score": s, **_xywh_obb(x, y, w, h)})
        write_sequence(tmp_path / "gt", seq, gt_frames)
        write_sequence(tmp_path / "det", seq, det_frames)
    return mot_gt, tmp_path / "mot_trackers"


def _trackeval_reference(gt_folder: Path, trackers_folder: Path, seq_lengths: dict, out: Path) -> dict:
    import trackeval

    eval_config = {"USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_CONFIG": False, "TIME_PROGRESS": False,
                   "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False, "PLOT_CURVES": False, "LOG_ON_ERROR": None,
                   "DISPLAY_LESS_PROGRESS": False}
    dataset_config = {"GT_FOLDER": str(gt_folder), "TRACKERS_FOLDER": str(trackers_folder),
                      "OUTPUT_FOLDER": str(out), "TRACKERS_TO_EVAL": ["ours"], "SKIP_SPLIT_FOL": True,
                      "SEQ_INFO": dict(seq_lengths), "BENCHMARK": "MOT17", "PRINT_CONFIG": False,
                      "DO_PREPROC": True}  # MOTChallenge's distractor removal, which difficult mirrors
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
               trackeval.metrics.Identity({"PRINT_CONFIG": False})]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = trackeval.Evaluator(eval_config)
        res, msg = evaluator.evaluate([trackeval.datasets.MotChallenge2DBox(dataset_config)], metrics)
    assert msg["MotChallenge2DBox"]["ours"] == "Success"
    return res["MotChallenge2DBox"]["ours"]


def test_matches_trackeval_on_axis_aligned_boxes(tmp_path):
    scenes = {"s1": (*_mot_scene(1, 14, (6, 1, 2), False), 14), "s2": (*_mot_scene(2, 10, None, False), 10),
              "s3": (*_mot_scene(3, 12, (4, 3, 4), True), 12)}
    mot_gt, mot_trackers = _write_both(tmp_path, scenes)
    reference = _trackeval_reference(mot_gt, mot_trackers, {s: v[2] for s, v in scenes.items()}, tmp_path / "out")
    result, warnings = evaluate_folders(tmp_path / "gt", tmp_path / "det")
    assert warnings == []
    assert result.classes == ["pedestrian"]
    checked = 0
    for seq in [*scenes, "COMBINED_SEQ"]:
        ref = reference[seq]["pedestrian"]
        ours = result.combined["classes"]["pedestrian"] if seq == "COMBINED_SEQ" \
            else result.per_sequence[seq]["classes"]["pedestrian"]
        for key, value in (("HOTA", np.mean(ref["HOTA"]["HOTA"])), ("DetA", np.mean(ref["HOTA"]["DetA"])),
                           ("AssA", np.mean(ref["HOTA"]["AssA"])), ("MOTA", ref["CLEAR"]["MOTA"]),
                           ("MOTP", ref["CLEAR"]["MOTP"]), ("IDF1", ref["Identity"]["IDF1"])):
            assert ours[key] == pytest.approx(value, abs=1e-6), (seq, key)
        for key in ("IDSW", "Frag", "CLR_TP", "CLR_FN", "CLR_FP"):
            assert ours[key] == ref["CLEAR"][key], (seq, key)
        checked += 1
    combined = result.combined["all"]
    # the data exercise what they should: switches, misses, false positives, the distractor's detections removed
    assert combined["IDSW"] >= 2 and combined["CLR_FN"] > 0 and combined["CLR_FP"] > 0
    assert result.per_sequence["s3"]["all"]["Det"] == sum(1 for d in scenes["s3"][1] if d[1] != 99)
    assert combined["MOTA"] == pytest.approx(reference["COMBINED_SEQ"]["pedestrian"]["CLEAR"]["MOTA"], abs=1e-6)
    assert checked == 4


def test_figure_matching_is_clears(tmp_path):
    """The angle figures' per-frame pairs are CLEAR's: same true positives, same ID switches."""
    scenes = {"s1": (*_mot_scene(1, 14, (6, 1, 2), False), 14)}
    _write_both(tmp_path, scenes)
    seq = load_sequences(tmp_path / "gt", tmp_path / "det", warnings=WarningLog())[0]
    item = class_data(seq, "pedestrian")
    clear = trackeval_metrics()["CLEAR"].eval_sequence(item.data)
    matches = clear_matches(item.data)
    assert sum(len(rows) for rows, _ in matches) == clear["CLR_TP"]
    matched_iou = sum(sim[rows, cols].sum() for (rows, cols), sim in zip(matches, item.data["similarity_scores"]))
    assert matched_iou == pytest.approx(clear["MOTP_sum"], abs=1e-9)
    last, switches = {}, 0
    for (rows, cols), gt_ids, det_ids in zip(matches, item.data["gt_ids"], item.data["tracker_ids"]):
        for g, d in zip(gt_ids[rows].tolist(), det_ids[cols].tolist()):
            switches += g in last and last[g] != d
            last[g] = d
    assert switches == clear["IDSW"] > 0


def test_figure_matching_keeps_last_frames_pair(tmp_path):
    """Frame 1: the detection overlaps a newcomer more than the car it followed in frame 0 (both IoU >= 0.5):
    CLEAR, and so the angle figures, keep it on the followed car."""
    followed, newcomer = obj("car", 1, 100, 100, 40, 16, 0.0), obj("car", 2, 106, 100, 40, 16, 0.0)
    write_sequence(tmp_path / "gt", "a", {0: [followed], 1: [followed, newcomer]})
    write_sequence(tmp_path / "det", "a", {f: [obj("car", 7, 104, 100, 40, 16, 0.0, score=0.9)] for f in (0, 1)})
    seq = load_sequences(tmp_path / "gt", tmp_path / "det", warnings=WarningLog())[0]
    item = class_data(seq, "car")
    assert item.data["similarity_scores"][1][1, 0] > item.data["similarity_scores"][1][0, 0] >= 0.5
    (rows, cols), = clear_matches(item.data)[1:]
    assert item.gt_index[1][rows].tolist() == [0] and cols.tolist() == [0]
    clear = trackeval_metrics()["CLEAR"].eval_sequence(item.data)
    assert clear["MOTP_sum"] == pytest.approx(item.data["similarity_scores"][0][0, 0]
                                              + item.data["similarity_scores"][1][0, 0])


# ---------------------------------------------------------------------------------------------------
# Rotated boxes
# ---------------------------------------------------------------------------------------------------

def _track_frames(n: int, make) -> dict[int, list[dict]]:
    return {f: make(f) for f in range(n)}


def test_perfect_tracking_scores_one(tmp_path):
    def gt(f):
        return [obj("car", 1, 100 + 3 * f, 50, 40, 16, 33.0), obj("car", 2, 300, 200 - 2 * f, 44, 18, -71.5),
                obj("truck", 7, 500, 400, 90, 30, 12.0)]
    write_sequence(tmp_path / "gt", "a", _track_frames(8, gt))
    write_sequence(tmp_path / "det", "a", _track_frames(8, lambda f: [{**o, "score": 0.9} for o in gt(f)]))
    result, _ = evaluate_folders(tmp_path / "gt", tmp_path / "det")
    assert result.classes == ["car", "truck"]
    for figures in (result.combined["all"], result.per_sequence["a"]["classes"]["truck"]):
        for key in ("HOTA", "MOTA", "IDF1", "DetA", "AssA"):
            assert figures[key] == pytest.approx(1.0, abs=1e-9)
        assert figures["IDSW"] == 0
    assert result.combined["all"]["GT"] == 24


def test_rotated_iou_decides_the_match(tmp_path):
    """Thin diagonal boxes crossing at right angles share their axis-aligned hull (AABB IoU 1) but hardly
    overlap: a miss and a false positive with rotated IoU, where an AABB evaluation would see a perfect track."""
    gt_box = (200.0, 200.0, 100.0, 4.0, 45.0)
    crossed = (200.0, 200.0, 100.0, 4.0, -45.0)
    boxes = np.array([gt_box, crossed])
    boxes[:, 4] = np.radians(boxes[:, 4])
    hulls = xywha_to_aabb(boxes)
    assert np.allclose(hulls[0], hulls[1])  # the premise: identical axis-aligned boxes
    write_sequence(tmp_path / "gt", "a", _track_frames(5, lambda f: [obj("car", 1, *gt_box)]))
    write_sequence(tmp_path / "det", "a", _track_frames(5, lambda f: [obj("car", 3, *crossed, score=0.8)]))
    write_sequence(tmp_path / "gt", "b", _track_frames(5, lambda f: [obj("car", 1, *gt_box)]))
    write_sequence(tmp_path / "det", "b", _track_frames(5, lambda f: [obj("car", 3, *gt_box, score=0.8)]))
    result, _ = evaluate_folders(tmp_path / "gt", tmp_path / "det")
    crossed_figures, aligned = result.per_sequence["a"]["all"], result.per_sequence["b"]["all"]
    assert (crossed_figures["CLR_TP"], crossed_figures["CLR_FN"], crossed_figures["CLR_FP"]) == (0, 5, 5)
    assert crossed_figures["MOTA"] == pytest.approx(-1.0) and crossed_figures["IDF1"] == 0.0
    assert crossed_figures["HOTA"] < 0.1
    assert aligned["MOTA"] == pytest.approx(1.0) and aligned["HOTA"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------
# Angle figures
# ---------------------------------------------------------------------------------------------------

def test_angle_change_wraps_into_half_open_range():
    changes = angle_change_deg(np.radians([89.0, -89.0, 0.0, 10.0]), np.radians([-89.0, 89.0, 90.0, 10.0]))
    assert np.allclose(changes, [2.0, -2.0, 90.0, 0.0])
    assert np.allclose(angle_change_deg(np.radians([0.0]), np.radians([88.0]), 90.0), [-2.0])


def test_parked_jitter_on_known_angle_noise(tmp_path):
    """Three parked cars: +-2 deg noise around 30 deg (changes +-4: std 4); noise across the +-90 wrap (89 / -89:
    changes -+2 after the modulo, std 2); a near-square box alternating 0 / 88 deg (mod 90: std 2). A moving car
    is not parked and does not count."""
    def gt(f):
        return [obj("car", 1, 100, 100, 40, 16, 30.0, parked=True, speed=0.0),
                obj("car", 2, 300, 100, 40, 16, 89.5 - 180, parked=True, speed=0),
                obj("car", 3, 100, 300, 20, 19, 0.0, parked=True, speed=0),
                obj("car", 4, 300 + 5 * f, 300, 40, 16, 0.0, speed=5.0, heading=0.0)]

    def det(f):
        sign = 1 if f % 2 == 0 else -1
        return [obj("car", 11, 100, 100, 40, 16, 30.0 + 2 * sign, score=0.9),
                obj("car", 12, 300, 100, 40, 16, 89.0 if sign > 0 else -89.0, score=0.9),
                obj("car", 13, 100, 300, 20, 19, 0.0 if sign > 0 else 88.0, score=0.9),
                obj("car", 14, 300 + 5 * f, 300, 40, 16, 7.0 * sign, score=0.9)]
    write_sequence(tmp_path / "gt", "a", _track_frames(9, gt))  # 9 frames: 8 changes, balanced signs
    write_sequence(tmp_path / "det", "a", _track_frames(9, det))
    write_sequence(tmp_path / "gt", "b", _track_frames(4, lambda f: gt(f)[:1]))
    write_sequence(tmp_path / "det", "b", _track_frames(4, lambda f: det(f)[:1] if f != 2 else []))
    result, _ = evaluate_folders(tmp_path / "gt", tmp_path / "det")
    jitter = result.angles["a"]["angle_jitter"]
    assert result.per_sequence["a"]["all"]["CLR_TP"] == 36
    assert jitter["tracks"] == 3 and jitter["tracks_short"] == 0
    assert jitter["median_deg"] == pytest.approx(2.0, abs=1e-9)
    assert jitter["mean_deg"] == pytest.approx(8.0 / 3.0, abs=1e-9)
    # sequence b: matched in frames 0, 1, 3 -> angles 32, 28, 28 -> changes -4, 0 -> std 2; one track
    assert result.angles["b"]["angle_jitter"] == {"tracks": 1, "tracks_short": 0, "median_deg": pytest.approx(2.0),
                                                  "mean_deg": pytest.approx(2.0)}
    total = result.angles["COMBINED"]["angle_jitter"]
    assert total["tracks"] == 4 and total["median_deg"] == pytest.approx(2.0)
    assert total["mean_deg"] == pytest.approx(10.0 / 4.0)


def test_heading_accuracy_counts(tmp_path):
    """GT moving with heading 180 - 10 = -170 deg (long side at 10 deg); detection headings: 178 (12 off across
    the wrap), -150 (20 off), 20 (170 off), none (wrong), -165 (5 off, at speed exactly 1: moving). A slower frame, one
    without GT heading and a parked car are not counted."""
    det_headings = [178.0, -150.0, 20.0, None, -165.0, 10.0, 10.0]
    speeds = [3.0, 3.0, 3.0, 3.0, 1.0, 0.5, 3.0]

    def gt(f):
        moving = obj("car", 1, 100 + 3 * f, 100, 40, 16, 10.0, speed=speeds[f])
        if f != 6:
            moving["heading"] = -170.0
        return [moving, obj("car", 2, 400, 100, 40, 16, 10.0, parked=True, speed=0.0, heading=10.0)]

    def det(f):
        moving = obj("car", 5, 100 + 3 * f, 100, 40, 16, 10.0, score=0.9)
        if det_headings[f] is not None:
            moving["heading"] = det_headings[f]
        return [moving, obj("car", 6, 400, 100, 40, 16, 10.0, score=0.9, heading=-170.0)]
    write_sequence(tmp_path / "gt", "a", _track_frames(7, gt))
    write_sequence(tmp_path / "det", "a", _track_frames(7, det))
    result, _ = evaluate_folders(tmp_path / "gt", tmp_path / "det")
    heading = result.angles["a"]["heading"]
    assert heading["count"] == 5 and heading["without_heading"] == 1
    assert heading["within_15"] == pytest.approx(2 / 5)
    assert heading["within_45"] == pytest.approx(3 / 5)
    assert result.angles["COMBINED"]["heading"] == heading


# ---------------------------------------------------------------------------------------------------
# Frames and sequences on one side only, bad input
# ---------------------------------------------------------------------------------------------------

def _simple(tmp_path, det_frames, seqs=("a",)):
    for seq in seqs:
        write_sequence(tmp_path / "gt", seq, _track_frames(6, lambda f: [obj("car", 1, 50 + 2 * f, 50, 40, 16, 0.0)]))
    write_sequence(tmp_path / "det", "a", {f: [obj("car", 4, 50 + 2 * f, 50, 40, 16, 0.0, score=0.9)]
                                           for f in det_frames})


def test_missing_detection_frames_warn_once_or_are_left_out(tmp_path):
    _simple(tmp_path, [0, 2, 4], seqs=("a",))
    result, warnings = evaluate_folders(tmp_path / "gt", tmp_path / "det")
    assert len(warnings) == 1 and warnings[0].startswith("3 of 6 ground-truth frames have no detection file")
    assert "000001.json" in warnings[0] and "--common-frames" in warnings[0]
    figures = result.per_sequence["a"]["all"]
    assert (figures["CLR_TP"], figures["CLR_FN"], figures["GT"]) == (3, 3, 6)
    result, warnings = evaluate_folders(tmp_path / "gt", tmp_path / "det", common_frames=True)
    assert warnings == []
    assert result.frames["a"] == {"evaluated": 3, "left_out": 3, "detections": True}
    assert result.per_sequence["a"]["all"]["MOTA"] == pytest.approx(1.0)


def test_missing_and_extra_sequences(tmp_path):
    _simple(tmp_path, range(6), seqs=("a", "b"))
    write_sequence(tmp_path / "det", "zzz", {0: []})
    write_sequence(tmp_path / "det", "a", {9: [obj("car", 4, 5, 5, 40, 16, 0.0, score=0.9)]})
    result, warnings = evaluate_folders(tmp_path / "gt", tmp_path / "det", common_frames=True)
    text = "\n".join(warnings)
    assert "no detection folder for sequence b" in text and "6 ground-truth objects all count as misses" in text
    assert "1 detection sequence folder(s) without ground truth not evaluated (e.g. zzz)" in text
    assert "1 detection frames have no ground-truth file" in text and "000009.json" in text
    b = result.per_sequence["b"]["all"]
    assert (b["CLR_TP"], b["CLR_FN"], b["MOTA"], b["HOTA"]) == (0, 6, 0.0, 0.0)
    assert result.frames["b"] == {"evaluated": 6, "left_out": 0, "detections": False}
    assert result.combined["all"]["CLR_TP"] == 6


@pytest.mark.parametrize("content, expect", [
    ("{not json", "000003.json"),
    (json.dumps({"objects": [obj("car", 1, 5, 5, 40, 16, 0.0), {"class": "car", "cx": 1, "cy": 1, "length": 4,
                                                                   "width": 2, "angle": 0}]}),
     "000003.json: object 1: needs an integer track_id >= 1"),
    (json.dumps({"objects": [obj("car", 1, 5, 5, 40, 16, 0.0, speed="fast")]}), "object 0: speed must be"),
    (json.dumps({"objects": [obj("car", 2, 5, 5, 40, 16, 0.0), obj("car", 2, 50, 5, 40, 16, 0.0)]}),
     "share track_id 2"),
])
def test_malformed_files_name_the_file(tmp_path, capsys, content, expect):
    _simple(tmp_path, range(6))
    (tmp_path / "gt" / "a" / "000003.json").write_text(content)
    code = main(["-gt", str(tmp_path / "gt"), "-det", str(tmp_path / "det")])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert expect in err and str(tmp_path / "gt" / "a") in err


def test_frame_names_must_be_numbers(tmp_path):
    _simple(tmp_path, range(6))
    (tmp_path / "gt" / "a" / "cover.json").write_text(json.dumps({"objects": []}))
    with pytest.raises(EvalInputError, match="cover.json: not a frame file"):
        load_sequences(tmp_path / "gt", tmp_path / "det", warnings=WarningLog())


def test_missing_trackeval_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "trackeval.metrics", None)  # makes the import fail
    with pytest.raises(EvalInputError, match=r"pip install --no-deps -r requirements-nodeps\.txt") as info:
        trackeval_metrics()
    assert info.value.exit_code == EXIT_INTERNAL and "opencv-python" in str(info.value)


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------

def test_cli_end_to_end(tmp_path):
    def gt(f):
        return [obj("car", 1, 100 + 4 * f, 100, 40, 16, 0.0, speed=4.0, heading=0.0),
                obj("car", 2, 300, 300, 40, 16, 60.0, parked=True, speed=0.0)]

    def det(f):
        return [obj("car", 1 if f < 5 else 8, 100 + 4 * f, 101, 40, 16, 1.0, score=0.9, heading=2.0),
                obj("car", 3, 300, 300, 40, 16, 60.0 + (f % 2), score=0.8)]
    for seq in ("seq000", "seq001"):
        write_sequence(tmp_path / "gt", seq, _track_frames(10, gt))
        write_sequence(tmp_path / "det", seq, _track_frames(10, det))
    out = tmp_path / "results"
    # as `python -m eval.tracking`, then: neither torch nor the tracker was imported
    code = ("import runpy, sys\ntry:\n    runpy.run_module('eval.tracking', run_name='__main__')\n"
            "finally:\n    print('imported:', 'torch' in sys.modules, 'obbdet.tracking' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, "-gt", str(tmp_path / "gt"), "-det", str(tmp_path / "det"),
                           "-sp", str(out)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pycocotools" not in proc.stdout + proc.stderr and "BURST" not in proc.stdout + proc.stderr
    assert "imported: False False" in proc.stdout
    lines = proc.stdout.splitlines()
    summary = next(line for line in lines if line.startswith("SUMMARY:"))
    assert "IDSW 2" in summary
    assert any(line.startswith("seq001 ") for line in lines) and any(line.startswith("COMBINED ") for line in lines)
    data = json.loads((out / "results.json").read_text())
    assert data["sequences"] == ["seq000", "seq001"]
    combined = data["combined"]["all"]
    assert combined["IDSW"] == 2 and combined["MOTA"] == pytest.approx((40 - 2) / 40)
    assert data["angles"]["COMBINED"]["heading"] == {"count": 20, "without_heading": 0, "within_15": 1.0,
                                                     "within_45": 1.0}
    assert data["angles"]["seq000"]["angle_jitter"]["median_deg"] == pytest.approx(math.sqrt(80 / 81))
    assert (out / "results.txt").read_text().startswith("Frames evaluated: seq000 10; seq001 10")
    assert (out / "tracking.png").stat().st_size > 0


def test_cli_classes_and_strict(tmp_path, capsys):
    _simple(tmp_path, range(6))
    code = main(["-gt", str(tmp_path / "gt"), "-det", str(tmp_path / "det"), "--classes", "car,bus", "-q"])
    out, err = capsys.readouterr()
    assert code == 0 and out.startswith("SUMMARY: HOTA 100.0000 MOTA 100.0000 IDF1 100.0000 IDSW 0")
    assert "--classes: bus found in neither ground truth nor detections" in err
    code = main(["-gt", str(tmp_path / "gt"), "-det", str(tmp_path / "det"), "--classes", "car,bus", "--strict"])
    assert code == EXIT_BAD_INPUT and "because of --strict" in capsys.readouterr().err
