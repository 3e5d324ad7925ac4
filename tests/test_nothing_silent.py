"""Wrong results never pass silently: each test reproduces a probe that once gave a plausible-looking answer
(exit 0, no warning) or a traceback, and checks the clear refusal or the correct result that replaced it.

Detectors are stand-ins (``tests/infer_support.py``); infer.py loads them through a replaced loader, so no
checkpoint is trained here.
"""
from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from obbdet import inference
from obbdet.cli import infer as infer_cli
from obbdet.formats import write_obb_json
from obbdet.imageio import read_image_rgb
from obbdet.inference import InferenceOptions, Predictor, discover_images, run_inference
from obbdet.io_utils import atomic_write_text, remove_stale_temporaries
from obbdet.pairs import aabb_overlap_pairs
from obbdet.structures import ImageLabels
from obbdet.eval.errors import EXIT_BAD_INPUT, EXIT_USAGE
from obbdet.eval.pascalvoc import main as eval_main
from obbdet.tools import convert
from tests.infer_support import BrightRectDetector, grid_boxes, write_good


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------------
# Detections in the padding
# ---------------------------------------------------------------------------------------------------

class EverywhereDetector:
    """Predicts a small box every 10 px over its whole input, padding included (what an untrained or confused
    network can do): centres at 5, 15, 25, ... in both directions."""

    stride = 128

    def predict(self, images, score_threshold=0.05, max_det_per_image=1000, nms_iou=0.5, pre_nms_topk=None,
                vote_iou=0.0, tta="none"):
        assert tta == "none"
        height, width = images.shape[2:]
        ys, xs = np.mgrid[5:height:10, 5:width:10]
        n = xs.size
        boxes = np.column_stack([xs.ravel(), ys.ravel(), np.full(n, 4.0), np.full(n, 2.0), np.zeros(n)])
        out = {"boxes": torch.as_tensor(boxes, dtype=torch.float32), "scores": torch.full((n,), 0.9),
               "labels": torch.zeros(n, dtype=torch.int64)}
        return [out for _ in range(len(images))]


@pytest.mark.parametrize("width,height,inside", [(1, 1, 0), (60, 40, 6 * 4)])
def test_padding_never_yields_a_detection(width, height, inside):
    image = np.full((height, width, 3), 30, np.uint8)
    predictor = Predictor(EverywhereDetector(), ["car"], options=InferenceOptions(tile=256, overlap=64))
    det = predictor.predict(image)
    assert len(det) == inside  # one per 10 px cell of the image itself, none from the padding
    assert ((det.boxes[:, 0] >= 0) & (det.boxes[:, 0] <= width)).all()
    assert ((det.boxes[:, 1] >= 0) & (det.boxes[:, 1] <= height)).all()
    assert det.outside == 13 * 13 - inside  # the dropped ones are counted (one 128 x 128 padded tile)


def test_padding_drop_is_counted_in_the_run_summary(tmp_path, caplog):
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "tiny.png"), np.full((40, 60, 3), 30, np.uint8))
    predictor = Predictor(EverywhereDetector(), ["car"], options=InferenceOptions(tile=256, overlap=64))
    with caplog.at_level(logging.DEBUG, logger="obbdet.inference.pipeline"):
        summary = run_inference(predictor, discover_images(folder), folder, tmp_path / "out", progress=False)
    assert summary.detections == 24 and summary.outside > 0
    assert f"{summary.outside} centred outside their image dropped" in summary.format()
    assert any("centred outside the image" in r.getMessage() for r in caplog.records)
    doc = json.loads((tmp_path / "out" / "tiny.json").read_text())
    assert all(0 <= o["cx"] <= 60 and 0 <= o["cy"] <= 40 for o in doc["objects"])


# ---------------------------------------------------------------------------------------------------
# Bounds on infer.py's numbers
# ---------------------------------------------------------------------------------------------------

@pytest.fixture
def fake_loader(monkeypatch):
    """infer.py loads ``BrightRectDetector`` with a training vehicle width of 16 px."""
    info = inference.CheckpointInfo(["car", "truck"], 16.0, None, None, 0.4)

    def loader(checkpoint, device, use_ema=True):
        return BrightRectDetector(), info

    original = inference.prepare_run
    monkeypatch.setattr(inference, "prepare_run", lambda *a, **k: original(*a, detector_loader=loader, **k))
    return info


@pytest.fixture
def frames(tmp_path) -> tuple[Path, Path]:
    folder = tmp_path / "frames"
    write_good(folder / "f1.png", grid_boxes(2, 2, 100.0, origin=(60.0, 60.0)), size=(400, 300))
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"fake")
    return folder, ckpt


def _infer(capsys, argv) -> tuple[int, str]:
    """infer.py's exit code (argument errors raise SystemExit, as argparse does) and its stderr."""
    try:
        code = infer_cli.main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("width,expected", [
    ("inf", "must be finite"), ("nan", "must be finite"), ("0", "> 0"),
    ("0.1", "GB"),  # x160: the message names the size and memory the largest image would take
    ("1e-9", "outside the allowed range"),
])
def test_vehicle_width_out_of_bounds_is_refused_in_one_line(tmp_path, fake_loader, frames, capsys, width,
                                                             expected):
    folder, ckpt = frames
    code, err = _infer(capsys, [folder, width, ckpt, "obb", "--device", "cpu", "--quiet"])
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "frames_det").exists()


def test_rescale_range_message_names_the_largest_image(fake_loader, frames, capsys):
    folder, ckpt = frames
    code, err = _infer(capsys, [folder, "0.1", ckpt, "obb", "--device", "cpu"])
    assert code == 2 and "x160" in err and "400x300 px" in err and "64000x48000 px" in err and "9.22 GB" in err
    # a narrower range refuses what the default accepts (x4 here), and a wider one would accept x160
    code, err = _infer(capsys, [folder, "4", ckpt, "obb", "--device", "cpu", "--rescale-range", "0.5,2"])
    assert code == 2 and "x0.5..x2" in err and len(err.strip().splitlines()) == 1
    predictor = Predictor(BrightRectDetector(), ["car"], train_vehicle_width=16.0,
                          options=InferenceOptions(min_rescale=0.5, max_rescale=200.0))
    assert predictor.scale_for(0.1) == pytest.approx(160.0)
    with pytest.raises(inference.RescaleRangeError, match="outside the allowed range"):
        Predictor(BrightRectDetector(), ["car"], train_vehicle_width=16.0).scale_for(0.1)


@pytest.mark.parametrize("option,value", [
    ("--tile", "0"), ("--tile", "100000"), ("--overlap", "-1"), ("--batch", "0"), ("--score", "2"),
    ("--score", "nan"), ("--nms-iou", "0"), ("--nms-iou", "nan"), ("--max-det", "0"), ("--width-scale", "inf"),
    ("--length-scale", "0"), ("--pre-nms-topk", "0"), ("--rescale-range", "8,0.05"), ("--rescale-range", "0,8"),
])
def test_numeric_options_out_of_range_are_refused_in_one_line(fake_loader, frames, capsys, option, value):
    folder, ckpt = frames
    code, err = _infer(capsys, [folder, "16", ckpt, "obb", "--device", "cpu", option, value])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert option in err or "expected" in err or "must" in err


# ---------------------------------------------------------------------------------------------------
# Absurd numbers in evaluation
# ---------------------------------------------------------------------------------------------------

def _car(cx, cy, **extra):
    return {"class": "car", "cx": cx, "cy": cy, "length": 40.0, "width": 18.0, "angle": 30.0, **extra}


def _eval_sets(tmp_path, absurd: dict) -> tuple[Path, Path]:
    """20 images of real detections (a grid of cars each), image i07 with one extra ``absurd`` detection."""
    gt, det = tmp_path / "gt", tmp_path / "det"
    gt.mkdir()
    det.mkdir()
    points = [(x, y) for x in range(50, 1000, 60) for y in range(50, 1000, 60)]
    for i in range(20):
        (gt / f"i{i:02d}.json").write_text(json.dumps({"objects": [_car(x, y) for x, y in points]}))
        objects = [_car(x + 1, y, score=0.9) for x, y in points] + ([absurd] if i == 7 else [])
        (det / f"i{i:02d}.json").write_text(json.dumps({"objects": objects}))
    return gt, det


@pytest.mark.parametrize("absurd,expected", [
    (_car(1e308, 100.0, score=0.5), "beyond"), (_car(100.0, -3e7, score=0.5), "beyond"),
    ({**_car(100.0, 100.0, score=0.5), "length": 1e300}, "beyond"),
    (_car(float("nan"), 100.0, score=0.5), "object #256"),
])
def test_absurd_detection_is_bad_input_naming_file_and_object(tmp_path, capsys, absurd, expected):
    gt, det = _eval_sets(tmp_path, absurd)
    code = eval_main(["-gt", str(gt), "-det", str(det), "-q"])
    out, err = capsys.readouterr()
    assert code == EXIT_BAD_INPUT == 4, out + err
    assert "SUMMARY" not in out
    assert "i07.json" in err and "object #256" in err and expected in err


def test_pair_search_keys_survive_extreme_coordinates():
    """Bounds at both ends of float64 made the grid's span inf and every cell index NaN (a traceback); the
    ordinary pairs must come out the same with them present."""
    rng = np.random.default_rng(0)
    boxes = np.column_stack([rng.uniform(0, 2000, 3000), rng.uniform(0, 2000, 3000)])
    aabb = np.column_stack([boxes - 10, boxes + 10])
    groups = np.repeat(np.arange(20), 150)
    base = aabb_overlap_pairs(aabb, aabb + 1, groups, groups, touching=True)
    extreme = np.array([[1.7e308, 0, 1.75e308, 10], [-1.75e308, 0, -1.7e308, 10]])
    with np.errstate(all="raise"):
        i, j = aabb_overlap_pairs(aabb, np.vstack([aabb + 1, extreme]), groups, np.r_[groups, 7, 7],
                                  touching=True)
    assert sorted(zip(i.tolist(), j.tolist())) == sorted(zip(base[0].tolist(), base[1].tolist()))


# ---------------------------------------------------------------------------------------------------
# Temporary files and permissions
# ---------------------------------------------------------------------------------------------------

def test_stale_temporaries_are_removed_when_infer_starts(fake_loader, frames, tmp_path, caplog):
    folder, ckpt = frames
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    stale = [out / ".f1.json.k3j_x9q.tmp", out / "sub" / ".f2.json.abcd1234.tmp"]
    for path in stale:
        path.write_text("half a file")
    keep = [out / "notes.tmp", out / ".hidden", out / "other.json"]
    for path in keep:
        path.write_text("mine")
    with caplog.at_level(logging.INFO, logger="obbdet.inference.runner"):
        assert infer_cli.main([str(folder), "16", str(ckpt), "obb", "--out", str(out), "--device", "cpu",
                               "--quiet"]) == 0
    assert not any(p.exists() for p in stale) and all(p.exists() for p in keep)
    assert any("removed 2 temporary file(s)" in r.getMessage() for r in caplog.records)


def test_stale_temporaries_are_removed_when_a_training_run_starts(tmp_path, caplog):
    from obbdet.run_outputs import RunOutputs

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".last.pt.a1b2c3d4.tmp").write_bytes(b"\0" * 16)
    (run_dir / ".log.jsonl.zz_9.tmp").write_text("{")
    (run_dir / "best.pt").write_bytes(b"kept")
    with caplog.at_level(logging.INFO, logger="obbdet.run_outputs"):
        outputs = RunOutputs(run_dir, enabled=True)
    if outputs.writer is not None:
        outputs.writer.close()
    assert sorted(p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")) == []
    assert (run_dir / "best.pt").exists()
    assert any("removed 2 temporary file(s)" in r.getMessage() for r in caplog.records)
    assert remove_stale_temporaries(tmp_path / "missing") == 0


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_outputs_follow_the_umask(umask_022, fake_loader, frames, tmp_path):
    atomic_write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o644
    folder, ckpt = frames
    out = tmp_path / "out"
    assert infer_cli.main([str(folder), "16", str(ckpt), "obb", "--out", str(out), "--device", "cpu", "--quiet",
                           "--draw"]) == 0
    for path in (out / "f1.json", out / "overlays" / "f1.jpg"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644, path
    os.umask(0o077)  # a stricter umask is honoured too
    atomic_write_text(tmp_path / "b.txt", "x")
    assert stat.S_IMODE(os.stat(tmp_path / "b.txt").st_mode) == 0o600


# ---------------------------------------------------------------------------------------------------
# Output folders that overlap the inputs
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("where,expected", [("same", "is the input folder"), ("inside", "inside the input")])
def test_infer_out_equal_to_or_inside_the_input_is_refused(fake_loader, frames, capsys, where, expected):
    folder, ckpt = frames
    out = folder if where == "same" else folder / "det"
    code, err = _infer(capsys, [folder, "16", ckpt, "obb", "--out", out, "--device", "cpu", "--quiet"])
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in folder.iterdir()) == ["f1.png"]  # nothing written there


@pytest.mark.parametrize("where", ["gt", "det", "inside gt"])
def test_eval_savepath_equal_to_or_inside_an_input_is_refused(tmp_path, capsys, where):
    gt, det = tmp_path / "gt", tmp_path / "det"
    for folder in (gt, det):
        folder.mkdir()
    (gt / "a.json").write_text(json.dumps({"objects": [_car(100, 100)]}))
    (det / "a.json").write_text(json.dumps({"objects": [_car(100, 100, score=0.9)]}))
    savepath = {"gt": gt, "det": det, "inside gt": gt / "results"}[where]
    code = eval_main(["-gt", str(gt), "-det", str(det), "-sp", str(savepath), "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE == 2 and "--savepath" in err, err
    assert sorted(p.name for p in gt.iterdir()) == ["a.json"] and sorted(p.name for p in det.iterdir()) == ["a.json"]
    # the evaluation still runs with a separate folder
    assert eval_main(["-gt", str(gt), "-det", str(det), "-sp", str(tmp_path / "results"), "-q", "-np"]) == 0


# ---------------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------------

def test_float32_tiff_is_read_with_depth_scaling(tmp_path):
    path = tmp_path / "float.tif"
    data = np.random.default_rng(0).uniform(-3.0, 1000.0, (30, 40, 3)).astype(np.float32)
    assert cv2.imwrite(str(path), data)
    image = read_image_rgb(path)
    assert image.dtype == np.uint8 and image.shape == (30, 40, 3)
    assert image.min() == 0 and image.max() == 255  # the percentile stretch, not a "corrupt file" error


def test_yolo_obb_conversion_summary_lists_dropped_fields(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    n = 5
    boxes = np.column_stack([np.linspace(50, 400, n), np.full(n, 100.0), np.full(n, 40.0), np.full(n, 16.0),
                             np.zeros(n)])
    heading = np.array([0.5, np.nan, 1.0, np.nan, -2.0])
    write_obb_json(src / "a.json", ImageLabels(image="a.png", width=640, height=480, boxes=boxes,
                                               classes=["car"] * n, difficult=np.array([1, 1, 0, 0, 0], bool),
                                               ignore=np.zeros(n, bool), heading=heading))
    assert convert.main([str(src), str(tmp_path / "yolo"), "--from", "obb_json", "--to", "yolo_obb",
                         "--classes", "car"]) == 0
    summary = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("converted"))
    assert "dropped: difficult (2 objects), heading (3 objects)" in summary
