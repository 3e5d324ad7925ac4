"""tools/convert.py: round trips between obb_json, DOTA, YOLO-OBB and COCO; real fixtures; bad input."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from obbdet.boxes import xywha_to_aabb, xywha_to_poly
from obbdet.formats import read_dota, read_obb_json, write_obb_json
from obbdet.structures import ImageLabels
from obbdet.tools import convert

CLASSES = ["car", "truck", "bus"]
SIZE = (640, 480)


def _random_labels(rng, n: int, *, detections: bool, heading: bool = False) -> ImageLabels:
    w = rng.uniform(12, 80, n)
    h = w * rng.uniform(0.2, 0.8, n)  # clearly not square: the le90 angle is unique
    boxes = np.stack([rng.uniform(60, 580, n), rng.uniform(60, 420, n), w, h,
                      rng.uniform(-math.pi / 2, math.pi / 2, n)], axis=1)
    return ImageLabels(
        image=None, width=SIZE[0], height=SIZE[1], boxes=boxes,
        classes=[CLASSES[k] for k in rng.integers(0, len(CLASSES), n)],
        scores=rng.uniform(0.01, 1.0, n) if detections else None,
        difficult=np.zeros(n, bool) if detections else rng.random(n) < 0.3,
        ignore=np.zeros(n, bool),
        heading=rng.uniform(-math.pi, math.pi, n) if heading else None)


def _write_set(folder, rng, n_images=3, **kwargs) -> dict[str, ImageLabels]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for k in range(n_images):
        labels = _random_labels(rng, 5 + 3 * k, **kwargs)
        labels.image = f"img{k}.png"
        write_obb_json(folder / f"img{k}.json", labels)
        out[f"img{k}"] = read_obb_json(folder / f"img{k}.json", detections=kwargs.get("detections", False))
    return out


def _poly_distance(poly_a: np.ndarray, poly_b: np.ndarray) -> float:
    """Largest corner distance between two quadrilaterals ``[4, 2]``, over cyclic corner orders."""
    return min(float(np.abs(np.roll(poly_b, shift, axis=0) - poly_a).max()) for shift in range(4))


def _assert_same_objects(a: ImageLabels, b: ImageLabels, tol: float, *, scores: bool, difficult: bool = True):
    assert a.classes == b.classes
    pa, pb = xywha_to_poly(a.boxes), xywha_to_poly(b.boxes)
    worst = max((_poly_distance(x, y) for x, y in zip(pa, pb)), default=0.0)
    assert worst <= tol, f"polygon moved by {worst}"
    if scores:
        np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-12)
    if difficult:
        np.testing.assert_array_equal(a.difficult, b.difficult)


@pytest.mark.parametrize("detections", [False, True])
def test_obb_json_dota_obb_json_keeps_polygons(tmp_path, detections):
    rng = np.random.default_rng(1 + detections)
    original = _write_set(tmp_path / "json", rng, detections=detections)
    assert convert.main([str(tmp_path / "json"), str(tmp_path / "dota"), "--from", "obb_json", "--to", "dota"]) == 0
    assert convert.main([str(tmp_path / "dota"), str(tmp_path / "back"), "--from", "dota", "--to", "obb_json"]) == 0
    for stem, labels in original.items():
        back = read_obb_json(tmp_path / "back" / f"{stem}.json", detections=detections)
        _assert_same_objects(labels, back, 1e-6, scores=detections)
        via_dota = read_dota(tmp_path / "dota" / f"{stem}.txt", detections=detections)
        assert len(via_dota) == len(labels)


@pytest.mark.parametrize("detections", [False, True])
def test_obb_json_coco_obb_json_round_trip(tmp_path, detections):
    rng = np.random.default_rng(7)
    original = _write_set(tmp_path / "json", rng, detections=detections, heading=True)
    coco_path = tmp_path / "coco" / "labels.json"
    assert convert.main([str(tmp_path / "json"), str(coco_path), "--from", "obb_json", "--to", "coco",
                         "--classes", ",".join(CLASSES)]) == 0
    doc = json.loads(coco_path.read_text())
    assert [c["name"] for c in doc["categories"]] == CLASSES
    assert {(im["file_name"], im["width"], im["height"]) for im in doc["images"]} == {
        (f"img{k}.png", *SIZE) for k in range(3)}
    ann = doc["annotations"][0]
    labels0 = original["img0"]
    x0, y0, x1, y1 = xywha_to_aabb(labels0.boxes[0])
    np.testing.assert_allclose(ann["bbox"], [x0, y0, x1 - x0, y1 - y0], atol=1e-9)
    np.testing.assert_allclose(np.reshape(ann["segmentation"][0], (4, 2)), xywha_to_poly(labels0.boxes[0]),
                               atol=1e-9)
    cx, cy, w, h, a = labels0.boxes[0]
    np.testing.assert_allclose(ann["rbox"], [cx, cy, w, h, math.degrees(a)], atol=1e-9)
    assert ("score" in ann) == detections
    assert convert.main([str(coco_path), str(tmp_path / "back"), "--from", "coco", "--to", "obb_json"]) == 0
    for stem, labels in original.items():
        back = read_obb_json(tmp_path / "back" / f"{stem}.json", detections=detections)
        _assert_same_objects(labels, back, 1e-6, scores=detections)
        np.testing.assert_allclose(back.heading, labels.heading, atol=1e-9)
        assert (back.width, back.height, back.image) == (*SIZE, f"{stem}.png")


def test_obb_json_yolo_obb_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    original = _write_set(tmp_path / "json", rng, detections=False)
    names = tmp_path / "classes.txt"
    names.write_text("# classes\ncar\ntruck\nbus\n")
    assert convert.main([str(tmp_path / "json"), str(tmp_path / "yolo"), "--from", "obb_json", "--to", "yolo_obb",
                         "--classes", str(names)]) == 0
    first = (tmp_path / "yolo" / "img0.txt").read_text().splitlines()[0].split()
    assert first[0] == str(CLASSES.index(original["img0"].classes[0])) and len(first) == 9
    assert convert.main([str(tmp_path / "yolo"), str(tmp_path / "back"), "--from", "yolo_obb", "--to", "obb_json",
                         "--classes", str(names), "--image-size", f"{SIZE[0]},{SIZE[1]}"]) == 0
    for stem, labels in original.items():
        back = read_obb_json(tmp_path / "back" / f"{stem}.json")
        # YOLO-OBB has no difficult flag; normalized corners cost a few ulps of the image size
        _assert_same_objects(labels, back, 1e-6, scores=False, difficult=False)


def test_coco_reads_polygon_and_bbox_only_annotations(tmp_path):
    doc = {"images": [{"id": 5, "file_name": "a.jpg", "width": 100, "height": 80}],
           "categories": [{"id": 3, "name": "car"}],
           "annotations": [
               {"id": 1, "image_id": 5, "category_id": 3, "segmentation": [[10, 10, 30, 10, 30, 20, 10, 20]]},
               {"id": 2, "image_id": 5, "category_id": 3, "bbox": [40, 40, 10, 20], "iscrowd": 1, "note": "x"}]}
    path = tmp_path / "in.json"
    path.write_text(json.dumps(doc))
    labels, names = convert.read_coco(path)
    assert names == ["car"] and list(labels) == ["a"]
    a = labels["a"]
    np.testing.assert_allclose(a.boxes[0, :4], [20, 15, 20, 10])
    np.testing.assert_allclose(a.boxes[1, :4], [45, 50, 20, 10])
    assert list(a.difficult) == [False, True]  # iscrowd reads as difficult
    assert a.extras[1] == {"note": "x"}


def test_dota_fixtures_convert_through_every_format(tmp_path, fixtures_dir):
    dota = fixtures_dir / "dota"
    images, names = str(dota / "images"), "small-vehicle,large-vehicle"
    assert convert.main([str(dota / "labelTxt"), str(tmp_path / "json"), "--from", "dota", "--to", "obb_json",
                         "--images", images]) == 0
    assert convert.main([str(tmp_path / "json"), str(tmp_path / "c.json"), "--from", "obb_json", "--to", "coco",
                         "--classes", names]) == 0
    assert convert.main([str(tmp_path / "c.json"), str(tmp_path / "yolo"), "--from", "coco", "--to", "yolo_obb",
                         "--classes", names]) == 0
    assert convert.main([str(tmp_path / "yolo"), str(tmp_path / "dota"), "--from", "yolo_obb", "--to", "dota",
                         "--classes", names, "--images", images]) == 0
    for source in sorted((dota / "labelTxt").glob("*.txt")):
        original = read_dota(source)
        as_json = read_obb_json(tmp_path / "json" / f"{source.stem}.json")
        assert as_json.image == f"{source.stem}.png" and as_json.width > 0
        _assert_same_objects(original, as_json, 1e-9, scores=False)  # zero-area objects kept as difficult
        keep = as_json.boxes[:, 3] > 0  # YOLO-OBB cannot hold the two zero-area splitter polygons
        kept = ImageLabels(boxes=as_json.boxes[keep], classes=[c for c, k in zip(as_json.classes, keep) if k])
        final = read_dota(tmp_path / "dota" / f"{source.stem}.txt")
        assert final.classes == kept.classes
        _assert_same_objects(kept, final, 1e-6, scores=False, difficult=False)


def test_bad_files_are_reported_and_skipped(tmp_path, capsys):
    src = tmp_path / "dota"
    src.mkdir()
    (src / "good.txt").write_text("0 0 10 0 10 5 0 5 car 0\n")
    (src / "bad.txt").write_text("0 0 10 0 10 5 0 5 car 0\n0 0 10 zero 10 5 0 5 car 0\n")
    status = convert.main([str(src), str(tmp_path / "out"), "--from", "dota", "--to", "obb_json"])
    err = capsys.readouterr().err
    assert status != 0
    assert f"{src / 'bad.txt'}:2:" in err and "Traceback" not in err
    assert (tmp_path / "out" / "good.json").is_file() and not (tmp_path / "out" / "bad.json").exists()


def test_bad_coco_and_missing_options_are_one_line_errors(tmp_path, capsys):
    coco = tmp_path / "c.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "car"}],
                                "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}]}))
    assert convert.main([str(coco), str(tmp_path / "o"), "--from", "coco", "--to", "dota"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(coco) in err and "annotations[0]" in err and "\n" not in err
    (tmp_path / "j").mkdir()
    labels = _random_labels(np.random.default_rng(0), 2, detections=False)
    labels.classes = ["car", "truck"]
    write_obb_json(tmp_path / "j" / "a.json", labels)
    assert convert.main([str(tmp_path / "j"), str(tmp_path / "y"), "--from", "obb_json", "--to", "yolo_obb"]) == 1
    assert "--classes" in capsys.readouterr().err
    assert convert.main([str(tmp_path / "j"), str(tmp_path / "c2.json"), "--from", "obb_json", "--to", "coco",
                         "--classes", "car"]) == 1
    err = capsys.readouterr().err
    assert "not in the class list" in err and "Traceback" not in err
    assert not (tmp_path / "c2.json").exists()
