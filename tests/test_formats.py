"""File formats: obb_json, DOTA, DOTA task1, YOLO-OBB and Object-Detection-Metrics text."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from obbdet.boxes import xywha_to_poly
from obbdet.formats import (
    OVERLAY_DIR, LabelFormatError, list_label_files, read_dota, read_dota_task1, read_label_folder, read_obb_json,
    read_obb_json_files, read_odm_text, read_yolo_obb, write_dota, write_obb_json, write_yolo_obb,
)
from obbdet.structures import ImageLabels


def _labels(n=3, scores=False, seed=0):
    rng = np.random.default_rng(seed)
    boxes = np.column_stack([rng.uniform(50, 500, n), rng.uniform(50, 500, n), rng.uniform(20, 40, n),
                             rng.uniform(8, 19, n), rng.uniform(-np.pi / 2, np.pi / 2, n)])
    return ImageLabels(image="img.png", width=640, height=480, boxes=boxes,
                       classes=[["car", "truck", "bus"][i % 3] for i in range(n)],
                       scores=rng.uniform(0, 1, n) if scores else None,
                       difficult=np.arange(n) % 2 == 1, ignore=np.zeros(n, bool))


def _same_polys(a, b, tol):
    return np.abs(xywha_to_poly(a) - xywha_to_poly(b)).max() < tol


# ---- obb_json ----------------------------------------------------------------------------------------

def test_obb_json_round_trip_keeps_every_field(tmp_path):
    labels = _labels(5, scores=True)
    labels.heading = np.array([0.5, np.nan, -3.0, 1.0, 2.0])
    labels.extras = [{"track_id": i} for i in range(5)]
    write_obb_json(tmp_path / "a.json", labels, include_poly=True)
    back = read_obb_json(tmp_path / "a.json", detections=True)
    assert back.classes == labels.classes and back.image == "img.png" and back.width == 640
    assert _same_polys(back.boxes, labels.boxes, 1e-9)
    np.testing.assert_allclose(back.scores, labels.scores)
    np.testing.assert_array_equal(back.difficult, labels.difficult)
    np.testing.assert_allclose(back.heading, labels.heading, equal_nan=True)
    assert back.extras[3] == {"track_id": 3}


def test_obb_json_angles_written_in_degrees_le90(tmp_path):
    labels = ImageLabels(boxes=np.array([[10, 10, 8, 20, 0.0]]), classes=["car"])
    write_obb_json(tmp_path / "a.json", labels)
    obj = json.loads((tmp_path / "a.json").read_text())["objects"][0]
    assert obj["length"] == 20 and obj["width"] == 8 and obj["angle"] == pytest.approx(-90.0)


def test_obb_json_reads_poly_objects_and_flags(tmp_path):
    doc = {"objects": [{"class": "truck", "poly": [[10, 10], [60, 10], [60, 30], [10, 30]], "difficult": True},
                       {"class": "car", "cx": 5, "cy": 6, "length": 4, "width": 2, "angle": 30, "ignore": True}]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    labels = read_obb_json(tmp_path / "a.json")
    np.testing.assert_allclose(labels.boxes[0], [35, 20, 50, 20, -np.pi / 2 + np.pi / 2], atol=1e-9)
    assert labels.difficult.tolist() == [True, False] and labels.ignore.tolist() == [False, True]
    assert labels.boxes[1, 4] == pytest.approx(math.radians(30))


@pytest.mark.parametrize("objects, message", [
    ([{"class": "car", "cx": 1, "cy": 1, "length": 3, "width": 2}], "missing angle"),
    ([{"class": "car", "cx": 1, "cy": 1, "length": -3, "width": 2, "angle": 0}], "must be > 0"),
    ([{"class": "car", "cx": 1, "cy": 1, "length": 3, "width": 0, "angle": 0}], "must be > 0"),
    ([{"class": "car", "cx": float("nan"), "cy": 1, "length": 3, "width": 2, "angle": 0}], "finite"),
    ([{"cx": 1, "cy": 1, "length": 3, "width": 2, "angle": 0}], "'class'"),
    ([{"class": "car", "poly": [[0, 0], [1, 1]]}], "'poly'"),
    ([{"class": "car", "poly": [[0, 0], [1, 1], [2, 2], [3, 3]]}], "zero area"),
])
def test_obb_json_bad_objects_name_file_and_object(tmp_path, objects, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"objects": [{"class": "car", "cx": 1, "cy": 1, "length": 3, "width": 2,
                                             "angle": 0}] + objects}))
    with pytest.raises(LabelFormatError) as info:
        read_obb_json(path)
    assert str(path) in str(info.value) and "object #1" in str(info.value) and message in str(info.value)
    assert "\n" not in str(info.value)


def test_obb_json_detection_needs_score(tmp_path):
    path = tmp_path / "det.json"
    path.write_text(json.dumps({"objects": [{"class": "car", "cx": 1, "cy": 1, "length": 3, "width": 2,
                                             "angle": 0}]}))
    with pytest.raises(LabelFormatError, match="score"):
        read_obb_json(path, detections=True)


def test_obb_json_malformed_json_names_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"objects": [\n{"class": "car",\n}]}')
    with pytest.raises(LabelFormatError, match=r"broken.json:3: malformed JSON"):
        read_obb_json(path)


# ---- DOTA -----------------------------------------------------------------------------------------

def test_dota_real_patch_with_zero_area_polygons(fixtures_dir):
    labels = read_dota(fixtures_dir / "dota" / "labelTxt" / "P1478__1__853___962.txt")
    assert len(labels) == 295
    assert labels.classes.count("small-vehicle") == 263 and labels.classes.count("large-vehicle") == 32
    zero = labels.boxes[:, 3] == 0
    assert zero.sum() == 2 and labels.difficult[zero].all()
    raw = [line.split() for line in (fixtures_dir / "dota" / "labelTxt" / "P1478__1__853___962.txt")
           .read_text().splitlines() if line.strip()]
    raw_difficult = np.array([tok[9] != "0" for tok in raw])
    np.testing.assert_array_equal(labels.difficult[~zero], raw_difficult[~zero])
    assert {tok[9] for tok in raw} == {"0", "1", "2"}


@pytest.mark.parametrize("name, count, n_difficult", [("P0003", 55, 13), ("P1888", 64, 0)])
def test_dota_real_files_with_headers(fixtures_dir, name, count, n_difficult):
    labels = read_dota(fixtures_dir / "dota" / "labelTxt" / f"{name}.txt")
    assert len(labels) == count and labels.difficult.sum() == n_difficult


def test_dota_missing_difficult_and_headers(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("imagesource:GoogleEarth\ngsd:null\n0 0 10 0 10 5 0 5 car\n0 0 10 0 10 5 0 5 car 2\n")
    labels = read_dota(path)
    assert labels.difficult.tolist() == [False, True]
    np.testing.assert_allclose(labels.boxes[0], [5, 2.5, 10, 5, 0], atol=1e-12)


@pytest.mark.parametrize("line, message", [
    ("0 0 10 0 car 0", "expected 8 coordinates"),
    ("0 0 10 0 10 5 0 x car 0", "numbers"),
    ("0 0 10 0 10 5 0 nan car 0", "finite"),
    ("0 0 10 0 10 5 0 5 car 7", "difficult"),
])
def test_dota_errors_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text(f"0 0 10 0 10 5 0 5 car 0\n{line}\n")
    with pytest.raises(LabelFormatError) as info:
        read_dota(path)
    assert f"{path}:2:" in str(info.value) and message in str(info.value) and line in str(info.value)


def test_dota_round_trip_keeps_polygons(tmp_path):
    labels = _labels(6)
    write_dota(tmp_path / "a.txt", labels)
    back = read_dota(tmp_path / "a.txt")
    assert _same_polys(back.boxes, labels.boxes, 1e-6) and back.classes == labels.classes
    np.testing.assert_array_equal(back.difficult, labels.difficult)


def test_dota_detections_and_task1(tmp_path):
    labels = _labels(4, scores=True)
    write_dota(tmp_path / "P1.txt", labels)
    back = read_dota(tmp_path / "P1.txt", detections=True)
    np.testing.assert_allclose(back.scores, labels.scores)
    task1 = tmp_path / "task1"
    task1.mkdir()
    (task1 / "Task1_car.txt").write_text("P1 0.9 0 0 10 0 10 5 0 5\nP2 0.5 0 0 4 0 4 2 0 2\n")
    (task1 / "Task1_bus.txt").write_text("P1 0.7 0 0 30 0 30 10 0 10\n")
    dets = read_dota_task1(task1)
    assert sorted(dets) == ["P1", "P2"] and sorted(dets["P1"].classes) == ["bus", "car"]
    (task1 / "Task1_van.txt").write_text("P1 0.7 0 0 30\n")
    with pytest.raises(LabelFormatError, match="Task1_van.txt:1"):
        read_dota_task1(task1)


# ---- YOLO OBB -------------------------------------------------------------------------------------

def test_yolo_obb_round_trip_and_errors(tmp_path):
    labels = _labels(5)
    names = ["car", "truck", "bus"]
    write_yolo_obb(tmp_path / "a.txt", labels, (640, 480), names)
    back = read_yolo_obb(tmp_path / "a.txt", (640, 480), names)
    assert _same_polys(back.boxes, labels.boxes, 1e-6) and back.classes == labels.classes
    (tmp_path / "b.txt").write_text("3 0.1 0.1 0.2 0.1 0.2 0.2 0.1 0.2\n")
    with pytest.raises(LabelFormatError, match=r"b.txt:1: class index"):
        read_yolo_obb(tmp_path / "b.txt", (640, 480), names)


# ---- Object-Detection-Metrics text ----------------------------------------------------------------

def test_odm_text_formats(tmp_path):
    (tmp_path / "gt.txt").write_text("person 10 20 30 40\n")
    (tmp_path / "det.txt").write_text("person 0.8 10 20 40 60\n")
    gt = read_odm_text(tmp_path / "gt.txt")
    det = read_odm_text(tmp_path / "det.txt", box_format="xyrb", detections=True)
    np.testing.assert_allclose(gt.aabb, [[10, 20, 40, 60]])
    np.testing.assert_allclose(det.aabb, gt.aabb)
    assert det.scores.tolist() == [0.8]
    np.testing.assert_allclose(gt.boxes, [[25, 40, 40, 30, -np.pi / 2]], atol=1e-12)
    (tmp_path / "rel.txt").write_text("person 0.5 0.5 0.1 0.2\n")
    rel = read_odm_text(tmp_path / "rel.txt", coords="rel", image_size=(200, 100))
    np.testing.assert_allclose(rel.aabb, [[90, 40, 110, 60]])


def test_odm_sample_folder(fixtures_dir):
    gt = read_label_folder(fixtures_dir / "odm_sample" / "groundtruths", "xywh")
    det = read_label_folder(fixtures_dir / "odm_sample" / "detections", "xywh", detections=True)
    assert sum(len(v) for v in gt.values()) == 15 and sum(len(v) for v in det.values()) == 24
    assert list(gt) == sorted(gt)


def test_unknown_format_lists_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="valid formats: obb_json, dota"):
        read_label_folder(tmp_path, "kitti")


def test_zero_area_dota_objects_survive_obb_json(tmp_path, fixtures_dir):
    labels = read_dota(fixtures_dir / "dota" / "labelTxt" / "P1478__1__853___962.txt")
    write_obb_json(tmp_path / "p.json", labels)
    back = read_obb_json(tmp_path / "p.json")
    assert len(back) == 295 and (back.boxes[:, 3] == 0).sum() == 2
    np.testing.assert_array_equal(back.difficult, labels.difficult)


def test_batched_obb_json_reader_equals_one_file_reader(tmp_path):
    rng = np.random.default_rng(8)
    paths = []
    for f in range(8):
        objects = [{"class": "car", "cx": float(rng.uniform(0, 900)), "cy": int(rng.integers(0, 900)),
                    "length": float(rng.uniform(5, 60)), "width": float(rng.uniform(5, 60)),
                    "angle": float(rng.uniform(-180, 180)), "score": float(rng.random()),
                    "difficult": bool(rng.random() < 0.3), "ignore": bool(rng.random() < 0.1)} for _ in range(f * 3)]
        if f == 2 and objects:  # some objects with a heading (one a non-number: unknown)
            objects[0]["heading"] = 95
            objects[-1]["heading"] = "north"
        if f == 3 and objects:  # unknown keys are kept
            objects[1]["track_id"] = 7
        if f == 4:  # polygon objects take the one-file reader
            objects.append({"class": "bus", "poly": [[0, 0], [10, 0], [10, 5], [0, 5]], "score": 0.5})
        if f == 5 and objects:  # zero size is valid on a difficult object only
            objects[0].update(width=0, difficult=True)
        path = tmp_path / f"{f}.json"
        text = json.dumps({"width": 1000, "objects": objects})
        path.write_text("\ufeff" + text if f == 6 else text, encoding="utf-8")  # a byte-order mark
        paths.append(path)
    fast = read_obb_json_files(paths, detections=True)
    for path, got in zip(paths, fast):
        slow = read_obb_json(path, detections=True)
        for name in ("boxes", "scores", "difficult", "ignore", "heading"):
            np.testing.assert_array_equal(getattr(got, name), getattr(slow, name), err_msg=f"{path.name}: {name}")
        assert got.classes == slow.classes and got.extras == slow.extras and got.width == 1000
    assert fast[2].heading is not None and np.isnan(fast[2].heading[-1]) and fast[3].extras[1] == {"track_id": 7}


def test_folder_listing_and_lenient_reading(tmp_path):
    objects = [{"class": "car", "cx": 10, "cy": 10, "length": 8, "width": 4, "angle": 0}]
    for name in ("b", "a", "c"):
        (tmp_path / f"{name}.json").write_text(json.dumps({"objects": objects}))
    (tmp_path / "d.json").write_text('{"objects": [{"class": "car", "cx": 1}]}')
    (tmp_path / "e.json").write_text('{"objects": [\n  oops]}')
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / ".hidden").write_text("")
    (tmp_path / OVERLAY_DIR).mkdir()
    listing = list_label_files(tmp_path, "obb_json")
    assert [stem for stem, _ in listing.files] == ["a", "b", "c", "d", "e"]
    assert listing.others == ["notes.txt"]
    with pytest.raises(LabelFormatError, match=r"d\.json: object #0: object needs"):
        read_label_folder(tmp_path, "obb_json")
    errors = []
    labels = read_label_folder(tmp_path, "obb_json", on_error=lambda path, exc: errors.append((path.name, str(exc))))
    assert list(labels) == ["a", "b", "c"]
    assert [name for name, _ in errors] == ["d.json", "e.json"] and "e.json:2: malformed JSON" in errors[1][1]
    (tmp_path / "f.txt").write_text("0 0.1 0.1 0.2 0.1 0.2 0.2 0.1 0.2\n")
    sizes = read_label_folder(tmp_path, "yolo_obb", image_size=lambda path: (100, 50), class_names=["car"])
    assert list(sizes) == ["f", "notes"] and (sizes["f"].width, sizes["f"].height) == (100, 50)
    with pytest.raises(FileNotFoundError):
        list_label_files(tmp_path / "missing", "dota")
