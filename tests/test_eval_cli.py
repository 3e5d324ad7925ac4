"""``python -m eval.pascalvoc``: reference numbers, formats, outputs, bad input and exit codes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from obbdet.formats import read_dota, write_dota, write_yolo_obb
from obbdet.structures import ImageLabels

from obbdet.eval.errors import EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_OUTPUT, EXIT_USAGE
from obbdet.eval.pascalvoc import main

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def summary(out: str) -> float:
    return float(next(line for line in out.splitlines() if line.startswith("SUMMARY:")).split()[1])


def write_set(folder: Path, records: dict[str, list[dict]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, objects in records.items():
        (folder / f"{stem}.json").write_text(json.dumps({"image": f"{stem}.jpg", "objects": objects}))
    return folder


def car(cx, cy, length=40.0, width=18.0, angle=30.0, **extra):
    return {"class": "car", "cx": cx, "cy": cy, "length": length, "width": width, "angle": angle, **extra}


@pytest.fixture
def small_set(tmp_path):
    gt = write_set(tmp_path / "gt", {"a": [car(100, 100), car(300, 100)], "b": [car(100, 300)]})
    det = write_set(tmp_path / "det", {"a": [car(100, 100, score=0.9), car(302, 101, score=0.8)],
                                       "b": [car(500, 500, score=0.7)]})
    return gt, det


# ---- reference numbers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("threshold, ap, expected", [
    ("0.3", "voc", "SUMMARY: 24.5687"), ("0.5", "voc", "SUMMARY: 2.2222"), ("0.3", "voc07", "SUMMARY: 26.8398")])
def test_object_detection_metrics_sample(fixtures_dir, capsys, threshold, ap, expected):
    sample = fixtures_dir / "odm_sample"
    code, out, _ = run(capsys, "-gt", sample / "groundtruths", "-det", sample / "detections", "-gtformat", "xywh",
                       "-detformat", "xywh", "--compat", "odm", "-t", threshold, "--ap", ap)
    assert code == 0 and expected in out
    if threshold == "0.3":
        row = next(line for line in out.splitlines() if line.startswith("person"))
        assert row.split()[2:6] == ["7", "17", "15", "24"]  # TP FP GT DET


def test_dota_fixture_against_itself(fixtures_dir, tmp_path, capsys):
    """Real DOTA labels as detections of themselves: every non-difficult object is found (AP 100%).

    The splitter's zero-area polygons stay in the ground truth as difficult boxes; as detections they could
    match nothing (false positives), so they are left out of the detections."""
    labels_dir = fixtures_dir / "dota" / "labelTxt"
    det_dir = tmp_path / "det"
    det_dir.mkdir()
    task1: dict[str, list[str]] = {}
    for path in sorted(labels_dir.glob("*.txt")):
        gt = read_dota(path)
        gt = ImageLabels(boxes=gt.boxes[gt.boxes[:, 3] > 0], classes=[c for c, h in zip(gt.classes, gt.boxes[:, 3])
                                                                       if h > 0])
        scores = np.linspace(1.0, 0.5, len(gt))
        write_dota(det_dir / path.name, ImageLabels(boxes=gt.boxes, classes=gt.classes, scores=scores))
        for poly_line, cls, score in zip(_dota_polys(gt), gt.classes, scores):
            task1.setdefault(cls, []).append(f"{path.stem} {score} {poly_line}")
    code, out, err = run(capsys, "-gt", labels_dir, "-det", det_dir, "-gtformat", "dota", "-detformat", "dota",
                         "--compat", "dota", "--no-per-class")
    assert code == 0 and summary(out) == 100.0
    assert "zero-area" in err  # the splitter's degenerate polygons are reported (kept as difficult)
    task1_dir = tmp_path / "task1"
    task1_dir.mkdir()
    for cls, lines in task1.items():
        (task1_dir / f"Task1_{cls}.txt").write_text("\n".join(lines) + "\n")
    code, out, _ = run(capsys, "-gt", labels_dir, "-det", task1_dir, "-gtformat", "dota", "-detformat",
                       "dota_task1", "--compat", "dota", "-t", "0.5")
    assert code == 0 and summary(out) == 100.0


def _dota_polys(labels):
    from obbdet.boxes import xywha_to_poly

    return [" ".join(repr(float(v)) for v in poly.reshape(-1)) for poly in xywha_to_poly(labels.boxes)]


def test_yolo_obb_and_xyrb_formats(tmp_path, capsys):
    boxes = np.array([[100.0, 80.0, 40.0, 16.0, 0.3], [300.0, 200.0, 60.0, 20.0, -1.0]])
    gt = ImageLabels(boxes=boxes, classes=["car", "bus"])
    det = ImageLabels(boxes=boxes, classes=["car", "bus"], scores=np.array([0.9, 0.8]))
    (tmp_path / "gt").mkdir()
    (tmp_path / "det").mkdir()
    write_yolo_obb(tmp_path / "gt" / "x.txt", gt, (640, 480), ["car", "bus"])
    write_yolo_obb(tmp_path / "det" / "x.txt", det, (640, 480), ["car", "bus"])
    code, out, _ = run(capsys, "-gt", tmp_path / "gt", "-det", tmp_path / "det", "-gtformat", "yolo_obb",
                       "-detformat", "yolo_obb", "--classes", "car,bus", "-imgsize", "640,480")
    assert code == 0 and summary(out) == 100.0
    code, _, err = run(capsys, "-gt", tmp_path / "gt", "-det", tmp_path / "det", "-gtformat", "yolo_obb",
                       "-detformat", "yolo_obb", "-imgsize", "640,480")
    assert code == EXIT_USAGE and "--classes" in err
    # xyrb: left top right bottom; IoU 0.5 exactly passes at -t 0.5
    for sub, text in (("gt2", "car 0 0 10 10\n"), ("det2", "car 0.9 0 0 10 5\n")):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "x.txt").write_text(text)
    code, out, _ = run(capsys, "-gt", tmp_path / "gt2", "-det", tmp_path / "det2", "-gtformat", "xyrb",
                       "-detformat", "xyrb", "-t", "0.5")
    assert code == 0 and summary(out) == 100.0


# ---- outputs ------------------------------------------------------------------------------------------

def test_tables_results_files_and_plots(small_set, tmp_path, capsys):
    gt, det = small_set
    save = tmp_path / "results"
    code, out, err = run(capsys, "-gt", gt, "-det", det, "--width-scales", "1.0,0.9", "-sp", save)
    assert code == 0
    assert "50-95%" in out and "w=0.900" in out and "IoU 0.50 (w=1.000)" in out and "AR@1000" in out
    assert "Evaluation time:" in out and "1 detection(s) in" not in err
    data = json.loads((save / "results.json").read_text())
    assert set(data) >= {"iou_thresholds", "map", "per_class", "settings", "coco", "best_setting"}
    assert len(data["iou_thresholds"]) == 10 and data["map"]["50-95"] == pytest.approx(summary(out) / 100, abs=5e-7)
    car = dict(data["per_class"]["car"]["0.50"])
    f1, f1_score = car.pop("f1"), car.pop("f1_score")
    assert car == {"ap": pytest.approx(2 / 3), "tp": 2, "fp": 1, "gt": 3, "det": 3}
    assert f1 == pytest.approx(0.8) and f1_score == pytest.approx(0.8)  # keep 0.9 and 0.8: P 1, R 2/3
    assert "F1%" in out and "@score" in out
    assert [s["width_scale"] for s in data["settings"]] == [1.0, 0.9]
    assert all(0.0 <= v <= 1.0 for v in data["map"].values())
    assert (save / "results.txt").read_text().count("SUMMARY:") == 1
    assert (save / "pr_car.png").stat().st_size > 1000
    # never deletes: a second run into the same folder keeps foreign files
    (save / "notes.txt").write_text("mine")
    assert run(capsys, "-gt", gt, "-det", det, "-sp", save, "-np")[0] == 0
    assert (save / "notes.txt").read_text() == "mine"


def test_quiet_prints_only_summary(small_set, capsys):
    gt, det = small_set
    code, out, _ = run(capsys, "-gt", gt, "-det", det, "-q")
    assert code == 0 and out.strip().startswith("SUMMARY:") and len(out.strip().splitlines()) == 1


def test_help_documents_exit_codes(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "exit codes:" in out and "malformed input" in out


# ---- bad input --------------------------------------------------------------------------------------

def _expect_error(capsys, code_expected, *argv, contains=()):
    code, out, err = run(capsys, *argv)
    assert code == code_expected, (code, err)
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for text in contains:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("content, contains", [
    ('{"objects": [', ["b.json:1", "malformed JSON"]),
    ('{"objects": [{"class": "car", "cx": 1, "cy": 2, "length": 3, "angle": 0}]}', ["b.json", "object #0", "width"]),
    ('{"objects": [{"class": "car", "cx": NaN, "cy": 2, "length": 3, "width": 2, "angle": 0}]}',
     ["b.json", "object #0", "finite"]),
    ('{"objects": [{"class": "car", "cx": 1, "cy": 2, "length": -3, "width": 2, "angle": 0}]}',
     ["b.json", "object #0", "> 0"]),
    ('{"objects": [{"class": "car", "cx": 1, "cy": 2, "length": 3, "width": 0, "angle": 0}]}',
     ["b.json", "object #0", "> 0"]),
])
def test_malformed_ground_truth(small_set, capsys, content, contains):
    gt, det = small_set
    (gt / "b.json").write_text(content)
    _expect_error(capsys, EXIT_BAD_INPUT, "-gt", gt, "-det", det, contains=contains)


def test_malformed_detections_and_text_lines(small_set, tmp_path, capsys):
    gt, det = small_set
    (det / "b.json").write_text('{"objects": [{"class": "car", "cx": 1, "cy": 2, "length": 3, "width": 2, '
                                '"angle": 0}]}')
    _expect_error(capsys, EXIT_BAD_INPUT, "-gt", gt, "-det", det, contains=["b.json", "object #0", "score"])
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "x.txt").write_text("car 1 2 3 4\ncar 1 2 three 4\n")
    _expect_error(capsys, EXIT_BAD_INPUT, "-gt", tmp_path / "t", "-det", tmp_path / "t", "-gtformat", "xywh",
                  "-detformat", "xywh", contains=["x.txt:2"])


def test_missing_folder_unknown_format_and_conflicts(small_set, tmp_path, capsys):
    gt, det = small_set
    _expect_error(capsys, EXIT_NOT_FOUND, "-gt", tmp_path / "nope", "-det", det, contains=["nope", "does not exist"])
    code, _, err = run(capsys, "-gt", gt, "-det", det, "-gtformat", "pascal")
    assert code == EXIT_USAGE and "invalid choice" in err and "Traceback" not in err
    _expect_error(capsys, EXIT_USAGE, "-gt", gt, "-det", det, "-t", "0.5", "--iou-thresholds", "0.5,0.7")
    _expect_error(capsys, EXIT_USAGE, "-gt", gt, "-det", det, "--iou-thresholds", "0.5,1.5")
    _expect_error(capsys, EXIT_USAGE, "-gt", gt, "-det", det, "-detformat", "dota_task1", "-gtformat", "dota_task1")
    _expect_error(capsys, EXIT_USAGE, "-gt", gt, "-det", det, "--compat", "odm", contains=["axis-aligned"])
    _expect_error(capsys, EXIT_USAGE, "-gt", gt, "-det", det, "-gtformat", "dota", contains=["wrong format"])
    (tmp_path / "file").write_text("x")
    _expect_error(capsys, EXIT_OUTPUT, "-gt", gt, "-det", det, "-sp", tmp_path / "file", contains=["not a folder"])


def test_class_only_in_detections_warns_or_fails_with_strict(small_set, capsys):
    gt, det = small_set
    objects = [car(100, 300, score=0.7), {**car(10, 10, score=0.5), "class": "plane"}]
    (det / "b.json").write_text(json.dumps({"objects": objects}))
    code, out, err = run(capsys, "-gt", gt, "-det", det)
    assert code == 0 and "'plane' occurs only in detections" in err and "b.json: object #1" in err
    assert "(not in mAP)" in out
    _expect_error(capsys, EXIT_BAD_INPUT, "-gt", gt, "-det", det, "--strict", contains=["plane", "b.json"])


def test_other_entries_are_reported_but_not_infer_overlays(small_set, capsys):
    gt, det = small_set
    (det / "overlays").mkdir()  # infer.py --draw output: expected beside the detections
    (det / "overlays" / "a.jpg").write_bytes(b"jpeg")
    code, out, err = run(capsys, "-gt", gt, "-det", det)
    assert code == 0 and "without the .json extension" not in err
    (det / "notes.txt").write_text("x")
    code, out, err = run(capsys, "-gt", gt, "-det", det)
    assert code == 0 and "1 entries without the .json extension skipped (e.g. notes.txt)" in err


def test_empty_folders(tmp_path, capsys):
    (tmp_path / "gt").mkdir()
    (tmp_path / "det").mkdir()
    code, out, err = run(capsys, "-gt", tmp_path / "gt", "-det", tmp_path / "det")
    assert code == 0 and summary(out) == 0.0 and "no ground-truth files" in err


# ---- no torch ----------------------------------------------------------------------------------------

def test_cli_never_imports_torch(small_set, capsys):
    gt, det = small_set
    torch_before = "torch" in sys.modules
    assert run(capsys, "-gt", gt, "-det", det, "-q")[0] == 0
    if not torch_before:  # in-process check is only meaningful when nothing else loaded torch
        assert "torch" not in sys.modules
    code = ("import sys; from eval.pascalvoc import main; "
            f"rc = main(['-gt', {str(gt)!r}, '-det', {str(det)!r}, '-q']); "
            "heavy = [m for m in ('torch', 'matplotlib', 'shapely', 'scipy') if m in sys.modules]; "
            "print('HEAVY', heavy); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "eval.pascalvoc", "-gt", str(gt), "-det", str(det), "-q"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("SUMMARY:")


def test_rename_maps_ground_truth_classes_onto_the_detectors(fixtures_dir, tmp_path, capsys):
    """DOTA labels scored against detections with unified class names (car, truck)."""
    labels_dir = fixtures_dir / "dota" / "labelTxt"
    det_dir = tmp_path / "det"
    det_dir.mkdir()
    names = {"small-vehicle": "car", "large-vehicle": "truck"}
    for path in sorted(labels_dir.glob("*.txt")):
        gt = read_dota(path)
        keep = [i for i, (c, h) in enumerate(zip(gt.classes, gt.boxes[:, 3])) if h > 0 and c in names]
        write_dota(det_dir / path.name, ImageLabels(boxes=gt.boxes[keep], classes=[names[gt.classes[i]] for i in keep],
                                                    scores=np.linspace(1.0, 0.5, len(keep))))
    code, out, _ = run(capsys, "-gt", labels_dir, "-det", det_dir, "-gtformat", "dota", "-detformat", "dota",
                       "--rename", "small-vehicle=car,large-vehicle=truck", "--classes", "car,truck", "--no-per-class")
    assert code == 0 and summary(out) == 100.0
    code, _, err = run(capsys, "-gt", labels_dir, "-det", det_dir, "--rename", "small-vehicle")
    assert code == 2 and "SRC=DST" in err
