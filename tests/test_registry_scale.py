"""Per-dataset scale in the registry: car widths given, from a gsd or measured, resampling to a common training
width when samples are read, box tightening, reading options (depth, bands), errors and the start-up table."""
from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import yaml

import obbdet.boxes
import obbdet.imageio
from obbdet.config import ConfigError, resolve_config
from obbdet.data import DetectionDataset, load_image_rgb, load_sample
from obbdet.datasets_registry import RegistryConfigError, build_registry, load_registry_config
from obbdet.datasets_registry.__main__ import main as registry_cli
from obbdet.datasets_registry.scale import CAR_WIDTH_M
from obbdet.engine import WidthTracker
from tests.registry_files import write_dota


def _car(cx, cy, length, width) -> str:
    """A DOTA line: an axis-aligned small-vehicle (-> car) ``length`` x ``width`` px centred on (cx, cy)."""
    x0, x1, y0, y1 = cx - length / 2, cx + length / 2, cy - width / 2, cy + width / 2
    return f"{x0:g} {y0:g} {x1:g} {y0:g} {x1:g} {y1:g} {x0:g} {y1:g} small-vehicle 0"


def _dataset(root, car_width: float, side: int, images: int = 2):
    """DOTA images ``side`` px square with two cars ``car_width`` px wide and 2.5 times as long."""
    for i in range(images):
        write_dota(root, f"img{i}", [_car(side * 0.3, side * 0.3, 2.5 * car_width, car_width),
                                     _car(side * 0.6, side * 0.7, 2.5 * car_width, car_width)], size=(side, side))
    return root


def _config(tmp_path, small: dict | None = None, large: dict | None = None, name="registry.yaml"):
    """Dataset ``small`` (cars 8 px wide, 64 px images) and ``large`` (cars 24 px wide, 192 px images)."""
    _dataset(tmp_path / "small", 8, 64)
    _dataset(tmp_path / "large", 24, 192)
    config = {"cache": False, "datasets": [
        {"name": "small", "type": "dota", "root": "small", **(small or {})},
        {"name": "large", "type": "dota", "root": "large", **(large or {})}]}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def _by_source(registry, name):
    return [s for s in registry.train if s.source == name]


def test_both_datasets_reach_the_common_width_when_read(tmp_path):
    registry = build_registry(_config(tmp_path, large={"vehicle_width": 24}), vehicle_width=16)
    small, large = _by_source(registry, "small"), _by_source(registry, "large")
    assert all(s.meta["scale"] == pytest.approx(2.0) for s in small)  # measured: 8 px
    assert all(s.meta["scale"] == pytest.approx(16 / 24) for s in large)  # given: 24 px
    dataset = DetectionDataset(registry.train)  # no augmentation
    tracker = WidthTracker(class_index=registry.classes.index("car"))
    for index, sample in enumerate(registry.train):
        image, target = dataset[index]
        assert tuple(image.shape) == (3, 128, 128)  # 64 * 2 and 192 * 2/3
        np.testing.assert_allclose(target["boxes"][:, 3].numpy(), 16, atol=1e-4)  # short side: car width
        np.testing.assert_allclose(target["boxes"][:, 2].numpy(), 40, atol=1e-4)  # long side likewise
        np.testing.assert_allclose(target["boxes"][:, :2].numpy(), sample.boxes[:, :2] * sample.meta["scale"],
                                   atol=1e-3)  # centres move with the image
        tracker.update([target])
    assert tracker.median() == pytest.approx(16)  # the checkpoint's vehicle_width is the common width
    image, target = load_sample(small[0])
    assert load_image_rgb(small[0]).shape == image.shape == (128, 128, 3)
    np.testing.assert_allclose(target["boxes"][:, 3], 16, atol=1e-4)
    np.testing.assert_allclose(small[0].boxes[:, 3], 8)  # the sample keeps its dataset's pixels


def test_without_a_common_width_nothing_is_resampled(tmp_path):
    registry = build_registry(_config(tmp_path, large={"vehicle_width": 24}))
    assert all("scale" not in s.meta for s in registry.train)
    image, target = load_sample(_by_source(registry, "large")[0])
    assert image.shape == (192, 192, 3)
    np.testing.assert_allclose(target["boxes"][:, 3], 24, atol=1e-4)
    table = registry.summary_table()
    assert "data.vehicle_width not set: images not resampled" in table
    assert re.search(r"^  small: 8 measured \(4 boxes\) -> 8 \(not resampled\)$", table, re.M)


def test_table_shows_width_before_and_after(tmp_path):
    registry = build_registry(_config(tmp_path, large={"vehicle_width": 24}), vehicle_width=16)
    table = registry.summary_table()
    print(table)
    assert "images resampled to data.vehicle_width 16" in table
    assert re.search(r"^  small: 8 measured \(4 boxes\) -> 16 \(images x2\)$", table, re.M)
    assert re.search(r"^  large: 24 given \(labels 24\) -> 16 \(images x0\.6667\)$", table, re.M)
    report = registry.reports[0].width
    assert (report.before, report.after, report.source) == (8, 16, "measured")


def test_gsd_converts_with_the_car_width(tmp_path):
    gsd = 0.075
    registry = build_registry(_config(tmp_path, large={"gsd": gsd}), vehicle_width=16)
    assert CAR_WIDTH_M == 1.8
    assert registry.reports[1].width.before == pytest.approx(CAR_WIDTH_M / gsd)  # 24 px
    assert all(s.meta["scale"] == pytest.approx(16 / 24) for s in _by_source(registry, "large"))
    assert re.search(r"^  large: 24 from gsd 0\.075 m \(labels 24\) -> 16 \(images x0\.6667\)$",
                     registry.summary_table(), re.M)


def test_box_scale_tightens_boxes_before_the_width_is_measured(tmp_path):
    registry = build_registry(_config(tmp_path, small={"box_scale": {"width": 0.75, "length": 0.5}}),
                              vehicle_width=16)
    small = _by_source(registry, "small")
    np.testing.assert_allclose(small[0].boxes[:, 3], 6)  # 8 * 0.75
    np.testing.assert_allclose(small[0].boxes[:, 2], 10)  # 20 * 0.5
    assert registry.reports[0].width.before == pytest.approx(6)
    assert small[0].meta["scale"] == pytest.approx(16 / 6)
    _, target = load_sample(small[0])
    np.testing.assert_allclose(target["boxes"][:, 3], 16, rtol=1e-2)  # rounding of the 171-px image
    large = _by_source(registry, "large")
    np.testing.assert_allclose(large[0].boxes[:, 3], 24)  # other datasets untouched


def test_measured_width_uses_the_main_class(tmp_path):
    path = _config(tmp_path)
    registry = build_registry(path, vehicle_width=16, main_class="truck")  # no trucks: width unknown
    assert all("scale" not in s.meta for s in registry.train)
    assert "small: unknown (no truck boxes to measure, none given) -> not resampled" in registry.summary_table()


def _write_16bit(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", image[:, :, ::-1])  # RGB -> the file's BGR order
    assert ok
    path.write_bytes(data.tobytes())


def test_16_bit_dataset_reads_with_its_depth_and_bands(tmp_path):
    root = _dataset(tmp_path / "deep", 8, 32, images=1)
    image = np.zeros((32, 32, 3), np.uint16)
    image[..., 0], image[..., 1], image[..., 2] = 4095, 2048, 1000  # 12-bit values: R, G, B
    image[:16, :, 0] = 0
    _write_16bit(root / "images" / "img0.png", image)
    config = {"cache": False, "datasets": [
        {"name": "deep", "type": "dota", "root": str(root), "depth": "bits:12", "vehicle_width": 8}]}
    registry = build_registry(config, vehicle_width=16)
    sample = registry.train[0]
    assert sample.meta["depth"] == "bits:12" and sample.meta["scale"] == 2
    rgb = load_image_rgb(sample)
    assert rgb.shape == (64, 64, 3)
    np.testing.assert_array_equal(rgb[40, 10], [255, round(2048 * 255 / 4095), round(1000 * 255 / 4095)])
    assert rgb[5, 10, 0] == 0
    config["datasets"][0].update(bands=[2, 1, 0], vehicle_width=None)
    registry = build_registry(config, vehicle_width=None)
    swapped = load_image_rgb(registry.train[0])
    assert swapped.shape == (32, 32, 3) and registry.train[0].meta["bands"] == (2, 1, 0)
    np.testing.assert_array_equal(swapped[20, 10], [round(1000 * 255 / 4095), round(2048 * 255 / 4095), 255])
    default = load_image_rgb(registry.train[0].image_path)  # percentile stretch: 4095 is not 255 after bits:12
    assert default[20, 10, 0] == 255 and default[5, 10, 0] == 0


@pytest.mark.parametrize("entry, message", [
    ({"vehicle_width": -3}, r"vehicle_width must be a number > 0 .*got -3"),
    ({"vehicle_width": 12, "gsd": 0.1}, "give vehicle_width .* or gsd .*, not both"),
    ({"gsd": 0}, r"gsd must be a number > 0"),
    ({"box_scale": {"wdith": 0.9}}, r"box_scale has unknown key\(s\) \['wdith'\]; valid keys: width, length"),
    ({"box_scale": {"width": -1}}, r"box_scale.width must be a number > 0"),
    ({"box_scale": 0.9}, "box_scale must be a mapping"),
    ({"depth": "bitz:12"}, r"depth: bad depth scaling 'bitz:12'"),
    ({"depth": "percentile:99,1"}, r"depth: bad depth scaling 'percentile:99,1'"),
    ({"bands": [0, 1]}, r"bands must be three 0-based band indices"),
])
def test_bad_values_name_the_file_and_the_entry(tmp_path, entry, message):
    path = _config(tmp_path, large=entry, name="bad.yaml")
    with pytest.raises(RegistryConfigError, match=message) as info:
        load_registry_config(path)
    assert str(path) in str(info.value) and "datasets[1] (large)" in str(info.value)


def test_cli_prints_widths_before_and_after(tmp_path, capsys):
    path = _config(tmp_path, large={"gsd": 0.075})
    assert registry_cli([str(path), "--vehicle-width", "16", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "small: 8 measured (4 boxes) -> 16 (images x2)" in out and "large: 24 from gsd 0.075 m" in out


def test_run_config_vehicle_width():
    assert resolve_config(overrides=["data.vehicle_width=16"]).data.vehicle_width == 16
    assert resolve_config().data.vehicle_width is None
    with pytest.raises(ConfigError, match="data.vehicle_width must be > 0"):
        resolve_config(overrides=["data.vehicle_width=-2"])
    with pytest.raises(ConfigError, match="not both"):
        resolve_config(overrides=["data.vehicle_width=16", "data.scale=0.5"])


def test_training_sources_are_resampled(tmp_path, capsys):
    from obbdet.training import build_sources

    path = _config(tmp_path, large={"vehicle_width": 24})
    cfg = resolve_config(overrides=[f"data.registry={path}", "data.vehicle_width=16"])
    sources = build_sources(cfg)
    assert sorted({round(s.meta["scale"], 4) for s in sources.train}) == [0.6667, 2.0]
    assert "large: 24 given (labels 24) -> 16 (images x0.6667)" in capsys.readouterr().out


def test_one_resize_implementation():
    from obbdet.inference import rescale

    assert rescale.resize_image is obbdet.imageio.resize_image
    assert rescale.scale_xywha is obbdet.boxes.scale_xywha and rescale.scale_heading is obbdet.boxes.scale_heading


def test_unequal_axis_factors_map_boxes_and_headings():
    from obbdet.data import scale_target

    target = {"boxes": np.array([[10, 10, 8, 4, 0.0]], np.float32), "heading": np.array([0.5], np.float32),
              "labels": np.zeros(1, np.int64)}
    out = scale_target(target, 2.0, 1.0)
    np.testing.assert_allclose(out["boxes"], [[20, 10, 16, 4, 0.0]], atol=1e-5)
    assert out["heading"][0] == pytest.approx(np.arctan2(np.sin(0.5), 2 * np.cos(0.5)), abs=1e-6)
    assert scale_target(target, 1.0, 1.0) is target
