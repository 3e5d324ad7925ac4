"""Importers: every native format with its quirks and malformed input (strict raises, lenient skips and counts)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from obbdet.datasets_registry import ImportSummary, LabelFormatError, UnknownDatasetError, available, load_dataset
from obbdet.boxes import xywha_to_poly
from tests.registry_files import (
    dv_bndbox, dv_point, dv_polygon, ro_object, rolabelimg_xml, vedai_line14, vedai_line15,
    voc_xml, write_dota, write_dronevehicle, write_image, write_text,
)

RECT = [(200, 150), (260, 150), (260, 180), (200, 180)]  # 60 x 30, axis-aligned, centre (230, 165)


def names(sample):
    return [sample.meta["classes"][i] for i in sample.labels]


def assert_box(box, expected, tol=1e-4):
    """Same rectangle (corner sets equal up to order), so le90 ambiguities do not matter."""
    got = np.sort(xywha_to_poly(np.asarray(box, np.float64)).reshape(-1, 2), axis=0)
    want = np.sort(xywha_to_poly(np.asarray(expected, np.float64)).reshape(-1, 2), axis=0)
    np.testing.assert_allclose(got, want, atol=tol)


# ---- registry table ------------------------------------------------------------------------------------

def test_available_and_unknown_kind_lists_valid_names():
    kinds = available()
    for kind in ("dota", "dronevehicle", "vedai", "uav_rod", "vaid", "dlr3k", "yolo_obb", "obb_json", "carpk",
                 "synthetic"):
        assert kind in kinds
    with pytest.raises(UnknownDatasetError, match="valid kinds: .*dota.*vedai"):
        load_dataset("dotaa", "/nowhere")


# ---- DOTA -------------------------------------------------------------------------------------------------

def test_dota_real_fixtures(fixtures_dir):
    summary = ImportSummary()
    samples = {s.image_path.split("/")[-1]: s for s in load_dataset("dota", fixtures_dir / "dota", summary=summary)}
    assert sorted(samples) == ["P0003.png", "P1478__1__853___962.png", "P1888.png"]
    patch = samples["P1478__1__853___962.png"]
    assert len(patch) == 295 and (patch.width, patch.height) == (1024, 1024)  # no header lines
    assert names(patch).count("small-vehicle") == 263 and names(patch).count("large-vehicle") == 32
    assert patch.difficult.sum() >= 2  # difficult 1/2 and the two zero-area polygons
    assert (patch.boxes[:, 3] == 0).sum() == 2
    p1888 = samples["P1888.png"]  # header lines, integer coordinates
    assert (p1888.width, p1888.height) == (712, 557) and len(p1888) == 64
    assert names(p1888).count("small-vehicle") == 14 and names(p1888).count("large-vehicle") == 50
    p0003 = samples["P0003.png"]
    assert len(p0003) == 55 and int(p0003.difficult.sum()) == 13
    assert patch.boxes.dtype == np.float32 and patch.labels.dtype == np.int64
    assert np.all(patch.boxes[:, 2] >= patch.boxes[:, 3])
    assert np.all((patch.boxes[:, 4] >= -math.pi / 2) & (patch.boxes[:, 4] < math.pi / 2))
    assert summary.images == 3 and summary.objects == 414 and not summary.skipped


def test_dota_fixture_mapped_to_unified_classes(fixtures_dir):
    samples = load_dataset("dota", fixtures_dir / "dota", classes=["car", "truck", "bus", "van", "other_vehicle"])
    patch = next(s for s in samples if "P1478" in s.image_path)
    assert np.bincount(patch.labels, minlength=5).tolist() == [263, 32, 0, 0, 0]
    assert patch.meta["classes"][0] == "car" and patch.meta["native_classes"][4] == "small-vehicle"


def test_dota_geometry_header_and_missing_difficult(tmp_path):
    write_dota(tmp_path, "a", ["imagesource:GoogleEarth", "gsd:null",
                               "200 150 260 150 260 180 200 180 small-vehicle 0",
                               "10 10 30 10 30 20 10 20 large-vehicle"])  # difficult missing -> 0
    (sample,) = load_dataset("dota", tmp_path)
    assert (sample.width, sample.height) == (200, 100)
    assert_box(sample.boxes[0], [230, 165, 60, 30, 0])
    assert names(sample) == ["small-vehicle", "large-vehicle"] and sample.difficult.tolist() == [False, False]


def test_dota_malformed_strict_names_file_and_line(tmp_path):
    label = write_dota(tmp_path, "a", ["10 10 30 10 30 20 10 20 small-vehicle 0", "10 10 30 x 30 20 10 20 car 0"])
    with pytest.raises(LabelFormatError) as info:
        load_dataset("dota", tmp_path)
    assert f"{label}:2:" in str(info.value)


def test_dota_lenient_skips_only_bad_lines_and_counts(tmp_path):
    write_dota(tmp_path, "a", ["10 10 30 10 30 20 10 20 small-vehicle 0", "10 10 30 x 30 20 10 20 car 0",
                               "50 50 70 50 70 60 50 60 large-vehicle 1", "1 2 3", "40 40 60 40 60 50 40 50 plane 7"])
    summary = ImportSummary()
    (sample,) = load_dataset("dota", tmp_path, strict=False, summary=summary)
    assert names(sample) == ["small-vehicle", "large-vehicle"] and sample.difficult.tolist() == [False, True]
    assert summary.skipped["malformed"] == 3
    assert any(":2:" in m for m in summary.messages) and any(":5:" in m for m in summary.messages)
    assert all(str(tmp_path / "labelTxt" / "a.txt") in m for m in summary.messages)


def test_dota_missing_image_is_reported(tmp_path):
    write_text(tmp_path / "labelTxt" / "b.txt", "10 10 30 10 30 20 10 20 small-vehicle 0\n")
    (tmp_path / "images").mkdir()
    with pytest.raises(LabelFormatError, match="no image 'b"):
        load_dataset("dota", tmp_path)
    summary = ImportSummary()
    assert load_dataset("dota", tmp_path, strict=False, summary=summary) == []
    assert summary.skipped["files without image"] == 1


def test_vsai_layout(tmp_path):
    write_dota(tmp_path / "train", "p1", ["10 10 30 10 30 20 10 20 small-vehicle 0"], size=(64, 64),
               labels_dir="annfiles")
    write_dota(tmp_path / "val", "p2", ["10 10 30 10 30 20 10 20 large-vehicle 0"], size=(64, 64),
               labels_dir="annfiles")
    train = load_dataset("vsai", tmp_path, split="train")
    val = load_dataset("dota", tmp_path, split="val")  # the DOTA importer finds annfiles too
    assert [names(s) for s in train] == [["small-vehicle"]] and [names(s) for s in val] == [["large-vehicle"]]
    assert train[0].source == "vsai"


# ---- DroneVehicle ----------------------------------------------------------------------------------------

def test_dronevehicle_crop_dirty_names_point_and_bndbox(tmp_path):
    objects = [dv_polygon("car", RECT), dv_polygon("feright car", RECT), dv_polygon("truvk", RECT),
               dv_point("car", 300, 300), dv_bndbox("freight car", 300, 200, 340, 220), dv_polygon("*", RECT),
               dv_polygon("Feright_Car", RECT, difficult=1),
               dv_polygon("car", [(10, 10), (50, 10), (50, 30), (10, 30)])]
    write_dronevehicle(tmp_path, "train", "00001", objects)
    summary = ImportSummary()
    (sample,) = load_dataset("dronevehicle", tmp_path, summary=summary)
    assert (sample.width, sample.height) == (640, 512) and sample.meta["crop"] == (100, 100, 740, 612)
    assert names(sample) == ["car", "freight_car", "truck", "freight_car", "freight_car"]
    assert_box(sample.boxes[0], [130, 65, 60, 30, 0])  # border subtracted
    assert_box(sample.boxes[3], [220, 110, 40, 20, 0])  # <bndbox> accepted
    assert sample.difficult.tolist() == [False, False, False, False, True]
    assert summary.skipped["<point> objects"] == 1 and summary.skipped["objects without a class ('*')"] == 1
    assert summary.skipped["objects inside the cropped border"] == 1  # all of it in the white border


def test_dronevehicle_without_crop_and_label_sets(tmp_path):
    write_dronevehicle(tmp_path, "val", "00002", [dv_polygon("car", RECT)],
                       ir_objects=[dv_polygon("car", RECT), dv_polygon("bus", [(400, 400), (500, 400), (500, 430),
                                                                               (400, 430)])])
    (rgb,) = load_dataset("dronevehicle", tmp_path, split="val", crop_border=False)
    assert (rgb.width, rgb.height) == (840, 712) and "crop" not in rgb.meta
    assert_box(rgb.boxes[0], [230, 165, 60, 30, 0])
    (ir_labels,) = load_dataset("dronevehicle", tmp_path, split="val", modality="rgb", label_set="infrared")
    assert names(ir_labels) == ["car", "bus"] and ir_labels.image_path.endswith("valimg/00002.jpg")
    (ir,) = load_dataset("dronevehicle", tmp_path, split="val", modality="infrared")
    assert names(ir) == ["car", "bus"] and ir.image_path.endswith("valimgr/00002.jpg")


def test_dronevehicle_malformed_element_names_file_line_and_object(tmp_path):
    bad = "  <object>\n    <name>car</name>\n    <polygon><x1>1</x1><y1>2</y1></polygon>\n  </object>\n"
    write_dronevehicle(tmp_path, "train", "00003", [dv_polygon("car", RECT), bad])
    label = tmp_path / "train" / "trainlabel" / "00003.xml"
    with pytest.raises(LabelFormatError) as info:
        load_dataset("dronevehicle", tmp_path)
    message = str(info.value)
    assert str(label) in message and "object #1" in message and "missing <x2>" in message
    line = info.value.line
    assert label.read_text().splitlines()[line - 1].strip().startswith("<polygon>")
    summary = ImportSummary()
    (sample,) = load_dataset("dronevehicle", tmp_path, strict=False, summary=summary)
    assert len(sample) == 1 and summary.skipped["malformed"] == 1


def test_dronevehicle_broken_xml_file(tmp_path):
    write_dronevehicle(tmp_path, "train", "00004", [dv_polygon("car", RECT)])
    write_text(tmp_path / "train" / "trainlabel" / "00004.xml", "<annotation>\n<object>\n</annotation>\n")
    with pytest.raises(LabelFormatError, match=r"00004.xml:3: malformed XML"):
        load_dataset("dronevehicle", tmp_path)
    summary = ImportSummary()
    assert load_dataset("dronevehicle", tmp_path, strict=False, summary=summary) == []
    assert summary.skipped["unreadable files"] == 1


# ---- VEDAI -----------------------------------------------------------------------------------------------

XS, YS = (10, 50, 50, 10), (20, 20, 40, 40)  # all four x, then all four y: a 40 x 20 box centred (30, 30)


def _vedai_root(tmp_path, res=1024):
    ann = tmp_path / f"Annotations{res}"
    for image_id in ("00000001", "00000002", "00000003"):
        write_image(tmp_path / f"Vehicules{res}" / f"{image_id}_co.png", 16, 16)
        write_image(tmp_path / f"Vehicules{res}" / f"{image_id}_ir.png", 16, 16)
    return ann


def test_vedai_per_image_14_columns_x_then_y_sparse_ids(tmp_path):
    ann = _vedai_root(tmp_path)
    write_text(ann / "00000001.txt", "\n".join([vedai_line14(30, 30, 0.1, 1, 1, 0, XS, YS),
                                                vedai_line14(30, 30, 0.1, 31, 1, 1, XS, YS),
                                                "30 30 11 1 0",  # 5 columns, no geometry
                                                vedai_line14(30, 30, 0.1, 12, 0, 0, XS, YS)]) + "\n")
    write_text(ann / "00000002.txt", vedai_line14(30, 30, 0.1, 11, 1, 0, XS, YS) + "\n")
    write_text(ann / "00000003.txt", "")
    write_text(ann / "annotation1024.txt", "ignored when per-image files exist\n")
    summary = ImportSummary()
    samples = load_dataset("vedai", tmp_path, summary=summary)
    assert [s.image_path.split("/")[-1] for s in samples] == ["00000001_co.png", "00000002_co.png", "00000003_co.png"]
    first = samples[0]
    assert names(first) == ["car", "plane", "class_12"] and names(samples[1]) == ["pickup"]
    assert_box(first.boxes[0], [30, 30, 40, 20, 0])
    assert (first.width, first.height) == (1024, 1024)
    assert first.meta["obj_occluded"].tolist() == [False, True, False] and not first.difficult.any()
    assert summary.skipped["lines without geometry"] == 1
    custom = load_dataset("vedai", tmp_path, class_ids={1: "auto", 31: "plane", 12: "thing", 11: "pickup"},
                          modality="ir", occluded_difficult=True)
    assert names(custom[0]) == ["auto", "plane", "thing"] and custom[0].difficult.tolist() == [False, True, False]
    assert custom[0].image_path.endswith("00000001_ir.png")


def test_vedai_combined_15_columns_512_and_folds(tmp_path):
    ann = _vedai_root(tmp_path, res=512)
    write_text(ann / "annotation512.txt", "\n".join([
        vedai_line15("00000001", 30, 30, 0.2, XS, YS, 2, 1, 0), vedai_line15(2, 30, 30, 0.2, XS, YS, 9, 1, 0),
        vedai_line15("00000001", 30, 30, 0.2, XS, YS, 8, 1, 0)]) + "\n")
    write_text(ann / "fold01.txt", "00000001\n00000003\n")
    write_text(ann / "fold01test.txt", "00000002\n")
    samples = load_dataset("vedai", tmp_path, resolution=512)
    assert [names(s) for s in samples] == [["truck", "bus"], ["van"]] and samples[0].width == 512
    train = load_dataset("vedai", tmp_path, resolution=512, fold=1)
    test = load_dataset("vedai", tmp_path, resolution=512, fold=1, fold_part="test")
    assert [names(s) for s in train] == [["truck", "bus"], []] and [names(s) for s in test] == [["van"]]
    assert_box(test[0].boxes[0], [30, 30, 40, 20, 0])


def test_vedai_malformed_line(tmp_path):
    ann = _vedai_root(tmp_path)
    write_text(ann / "00000001.txt", vedai_line14(30, 30, 0.1, 1, 1, 0, XS, YS) + "\n1 2 3 4 5 6 7\n")
    with pytest.raises(LabelFormatError, match=r"00000001.txt:2: expected 14 or 15 columns"):
        load_dataset("vedai", tmp_path)
    summary = ImportSummary()
    samples = load_dataset("vedai", tmp_path, strict=False, summary=summary)
    assert len(samples[0]) == 1 and summary.skipped["malformed"] == 1


# ---- UAV-ROD ---------------------------------------------------------------------------------------------

def _uav_rod(tmp_path, angles):
    for i, angle in enumerate(angles):
        stem = f"DJI_0006_{i:06d}"
        write_image(tmp_path / "train" / "images" / f"{stem}.jpg", 32, 24)
        write_text(tmp_path / "train" / "annotations" / f"{stem}.xml",
                   rolabelimg_xml([ro_object(100, 80, 40, 16, angle)]))


def test_uav_rod_radians_and_heading_beyond_pi(tmp_path):
    _uav_rod(tmp_path, [0.5, 4.0])
    samples = load_dataset("uav_rod", tmp_path)
    assert (samples[0].width, samples[0].height) == (320, 240)  # from <size>
    assert_box(samples[0].boxes[0], [100, 80, 40, 16, 0.5])
    assert_box(samples[1].boxes[0], [100, 80, 40, 16, 4.0])
    assert samples[1].boxes[0, 4] == pytest.approx(4.0 - math.pi, abs=1e-6)  # le90
    assert samples[1].heading[0] == pytest.approx(4.0 - 2 * math.pi, abs=1e-6)  # kept, wrapped to [-pi, pi)
    assert samples[0].heading[0] == pytest.approx(0.5, abs=1e-6)
    assert load_dataset("uav_rod", tmp_path, heading="never")[1].heading is None


def test_uav_rod_heading_auto_drops_when_all_below_pi(tmp_path):
    _uav_rod(tmp_path, [0.5, 2.0])
    assert all(s.heading is None for s in load_dataset("uav_rod", tmp_path))
    assert load_dataset("uav_rod", tmp_path, heading="always")[1].heading[0] == pytest.approx(2.0, abs=1e-6)


def test_uav_rod_malformed_angle(tmp_path):
    _uav_rod(tmp_path, [0.5])
    label = tmp_path / "train" / "annotations" / "DJI_0006_000000.xml"
    write_text(label, rolabelimg_xml([ro_object(100, 80, 40, 16, "abc"), ro_object(50, 50, 20, 10, 0.1)]))
    with pytest.raises(LabelFormatError, match=r"DJI_0006_000000.xml:\d+: object #0: <angle>: not a number"):
        load_dataset("uav_rod", tmp_path)
    (sample,) = load_dataset("uav_rod", tmp_path, strict=False)
    assert len(sample) == 1


# ---- VAID ------------------------------------------------------------------------------------------------

def test_vaid_aabb_only_digit_names(tmp_path):
    write_image(tmp_path / "JPEGImages" / "000001.jpg", 32, 16)
    write_text(tmp_path / "Annotations" / "000001.xml", voc_xml([("1", 10, 20, 50, 40, 0), ("5", 100, 100, 120, 160, 1),
                                                                 ("4", 5, 5, 15, 9, 0)]))
    (sample,) = load_dataset("vaid", tmp_path)
    assert sample.aabb_only and (sample.width, sample.height) == (1137, 640)
    assert names(sample) == ["sedan", "bus", "pickup_truck"] and sample.difficult.tolist() == [False, True, False]
    assert_box(sample.boxes[0], [30, 30, 40, 20, 0])
    assert_box(sample.boxes[1], [110, 130, 60, 20, math.pi / 2])  # taller than wide: le90 keeps w >= h
    np.testing.assert_allclose(sample.meta["obj_aabb"][1], [100, 100, 120, 160])
    mapped = load_dataset("vaid", tmp_path, classes=["car", "truck", "bus", "van", "other_vehicle"])
    assert [mapped[0].meta["classes"][i] for i in mapped[0].labels] == ["car", "bus", "car"]


def test_vaid_bad_box(tmp_path):
    write_image(tmp_path / "JPEGImages" / "000001.jpg", 32, 16)
    write_text(tmp_path / "Annotations" / "000001.xml", voc_xml([("1", 50, 20, 10, 40, 0), ("2", 1, 1, 9, 9, 0)]))
    with pytest.raises(LabelFormatError, match=r"000001.xml:\d+: object #0: <bndbox>: xmax/ymax below"):
        load_dataset("vaid", tmp_path)
    summary = ImportSummary()
    (sample,) = load_dataset("vaid", tmp_path, strict=False, summary=summary)
    assert names(sample) == ["minibus"] and summary.skipped["malformed"] == 1


# ---- DLR-3K ----------------------------------------------------------------------------------------------

def test_dlr3k_half_extents_angle_sign_and_dashed_lines(tmp_path):
    name = "2012-04-26-Muenchen-Tunnel_4K0G0010"
    write_image(tmp_path / "Train" / f"{name}.JPG", 64, 48)
    write_image(tmp_path / "Train" / "empty_image.JPG", 8, 8)
    write_text(tmp_path / "Train" / f"{name}_pkw.samp", "# header\n@IMAGE x\n1 16 500 300 20 8 30\n"
                                                          "2 110 10 10 50 1 0\n")
    write_text(tmp_path / "Train" / f"{name}_pkw_trail.samp", "@\n3 11 100 100 30 10 -90\n")
    summary = ImportSummary()
    samples = load_dataset("dlr3k", tmp_path, summary=summary)
    by_name = {s.image_path.split("/")[-1]: s for s in samples}
    sample = by_name[f"{name}.JPG"]
    assert (sample.width, sample.height) == (64, 48) and len(by_name["empty_image.JPG"]) == 0
    assert names(sample) == ["pkw", "pkw_trail"] and sample.meta["obj_type"].tolist() == [16, 11]
    assert_box(sample.boxes[0], [500, 300, 40, 16, -math.radians(30)])  # default: rotate by -angle
    assert_box(sample.boxes[1], [100, 100, 60, 20, math.radians(90)])
    assert summary.skipped["non-vehicle lines (type 110)"] == 1
    flipped = {s.image_path.split("/")[-1]: s for s in load_dataset("dlr3k", tmp_path, angle_sign=1)}
    assert_box(flipped[f"{name}.JPG"].boxes[0], [500, 300, 40, 16, math.radians(30)])


def test_dlr3k_malformed_line(tmp_path):
    write_image(tmp_path / "Train" / "img.JPG", 8, 8)
    write_text(tmp_path / "Train" / "img_bus.samp", "1 30 10 10 5 2 0\n1 30 10 10 5\n")
    with pytest.raises(LabelFormatError, match=r"img_bus.samp:2: expected 7 columns"):
        load_dataset("dlr3k", tmp_path)
    (sample,) = load_dataset("dlr3k", tmp_path, strict=False)
    assert names(sample) == ["bus"]


# ---- YOLO-OBB --------------------------------------------------------------------------------------------

def test_yolo_obb_normalized_corners_yaml_names_background(tmp_path):
    write_text(tmp_path / "data.yaml", "path: .\ntrain: images/train\nnames:\n  0: car\n  1: bus\n")
    write_image(tmp_path / "images" / "train" / "a.jpg", 200, 100)
    write_image(tmp_path / "images" / "train" / "b.jpg", 200, 100)
    write_text(tmp_path / "labels" / "train" / "a.txt", "1 0.5 0.5 0.6 0.5 0.6 0.7 0.5 0.7\n")
    samples = load_dataset("yolo_obb", tmp_path)
    assert [names(s) for s in samples] == [["bus"], []]
    assert_box(samples[0].boxes[0], [110, 60, 20, 20, 0])
    write_text(tmp_path / "labels" / "train" / "b.txt", "0 0.1 0.1 0.2 0.1 0.2 0.2\n7 0 0 1 0 1 1 0 1\n")
    with pytest.raises(LabelFormatError, match=r"b.txt:1: expected 9 tokens"):
        load_dataset("yolo_obb", tmp_path)
    summary = ImportSummary()
    samples = load_dataset("yolo_obb", tmp_path, strict=False, summary=summary)
    assert len(samples[1]) == 0 and summary.skipped["malformed"] == 2


# ---- obb_json --------------------------------------------------------------------------------------------

def test_obb_json_reads_both_geometries_ignore_and_bad_objects(tmp_path):
    write_image(tmp_path / "images" / "0001.jpg", 64, 32)
    doc = ('{"image": "0001.jpg", "objects": [{"class": "car", "cx": 30, "cy": 20, "length": 40, "width": 10, '
           '"angle": 30, "heading": 120}, {"class": "truck", "poly": [[10, 10], [60, 12], [59, 30], [9, 28]], '
           '"difficult": true}, {"class": "van", "cx": 1, "cy": 1, "length": 4, "width": 2, "angle": 0, '
           '"ignore": true}, {"class": "bus", "cx": 1}]}')
    write_text(tmp_path / "labels" / "0001.json", doc)
    with pytest.raises(LabelFormatError, match=r"0001.json: object #3"):
        load_dataset("obb_json", tmp_path)
    summary = ImportSummary()
    (sample,) = load_dataset("obb_json", tmp_path, strict=False, summary=summary)
    assert names(sample) == ["car", "truck"] and sample.difficult.tolist() == [False, True]
    assert (sample.width, sample.height) == (64, 32)  # from the image header
    assert_box(sample.boxes[0], [30, 20, 40, 10, math.radians(30)])
    assert sample.heading[0] == pytest.approx(math.radians(120), abs=1e-6) and np.isnan(sample.heading[1])
    assert summary.skipped["malformed"] == 1 and summary.notes["ignore-flagged objects dropped"] == 1
    assert "object #3" in summary.messages[0]


# ---- CARPK -----------------------------------------------------------------------------------------------

def test_carpk_axis_aligned(tmp_path):
    write_image(tmp_path / "Images" / "20160331_NTU_00001.png", 128, 72)
    write_text(tmp_path / "Annotations" / "20160331_NTU_00001.txt", "10 20 50 40 1\n60 60 70 90 1\n5 5 x 9 1\n")
    write_text(tmp_path / "ImageSets" / "train.txt", "20160331_NTU_00001\n")
    with pytest.raises(LabelFormatError, match=r"20160331_NTU_00001.txt:3:"):
        load_dataset("carpk", tmp_path)
    (sample,) = load_dataset("carpk", tmp_path, strict=False, image_set="train")
    assert sample.aabb_only and (sample.width, sample.height) == (128, 72) and names(sample) == ["car", "car"]
    assert_box(sample.boxes[0], [30, 30, 40, 20, 0])
    np.testing.assert_allclose(sample.meta["obj_aabb"], [[10, 20, 50, 40], [60, 60, 70, 90]])


def test_class_map_errors_name_unmapped_classes(tmp_path):
    write_dota(tmp_path, "a", ["10 10 30 10 30 20 10 20 small-vehicle 0", "40 40 60 40 60 50 40 50 plane 0"])
    with pytest.raises(ValueError, match=r"\['plane'\] are not mapped"):
        load_dataset("dota", tmp_path, class_map={"small-vehicle": "car"})
    (sample,) = load_dataset("dota", tmp_path, classes=["car"], class_map={"small-vehicle": "car", "*": "ignore"})
    assert sample.labels.tolist() == [0] and sample.meta["obj_native"].tolist() == [4]


def test_dota_heading_from_corner_order_is_an_option(tmp_path):
    # a car pointing up (-y): front-left corner first, clockwise on screen
    write_dota(tmp_path, "a", ["100 40 110 40 110 70 100 70 small-vehicle 0",  # front edge at the top
                               "40 70 30 70 30 40 40 40 small-vehicle 0",  # pointing down: front edge at the bottom
                               "70 20 40 20 40 10 70 10 small-vehicle 0",  # first edge along its long side
                               "1 2 3 x 5 6 7 8 small-vehicle 0"])
    (sample,) = load_dataset("dota", tmp_path, heading_from_corners=True, strict=False)
    # the third box's corner order points across the vehicle: no front can be read (not a flip onto its axis)
    np.testing.assert_allclose(sample.heading, [-math.pi / 2, math.pi / 2, np.nan], atol=1e-6)
    assert load_dataset("dota", tmp_path, strict=False)[0].heading is None
