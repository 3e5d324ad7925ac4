"""Registry config: validation, class mapping, reproducible grouped splits, quotas and the start-up table."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from obbdet.datasets_registry import RegistryConfigError, build_registry, load_registry_config
from obbdet.datasets_registry.__main__ import main as registry_cli
from obbdet.datasets_registry.config import split_train_val
from tests.registry_files import dv_polygon, write_dota, write_dronevehicle, write_text

PROJECT = Path(__file__).resolve().parents[1]
RECT = [(200, 150), (260, 150), (260, 180), (200, 180)]
BUS = [(300, 300), (400, 300), (400, 330), (300, 330)]


def _make_data(tmp_path):
    dota = tmp_path / "dota"
    for scene in range(6):
        for patch in range(3):
            write_dota(dota, f"P{scene:04d}__1__{patch * 100}___0", [
                "10 10 30 10 30 20 10 20 small-vehicle 0", "50 50 70 50 70 60 50 60 large-vehicle 0",
                "40 40 60 40 60 50 40 50 plane 0"], size=(32, 32))
    dv = tmp_path / "DroneVehicle"
    for i in range(1, 9):
        write_dronevehicle(dv, "train", f"{i:05d}", [dv_polygon("car", RECT), dv_polygon("feright car", BUS)])
    return dota, dv


def _config(tmp_path, **overrides):
    dota, dv = _make_data(tmp_path)
    config = {
        "seed": 7, "cache": str(tmp_path / "cache"),
        "datasets": [
            {"name": "0024_DroneVehicle", "type": "dronevehicle", "root": str(dv), "quota": 8, "val_fraction": 0.25},
            {"name": "dota", "type": "dota", "root": "dota", "weight": 1.0, "val_fraction": 0.34,
             "group_by": r"^(P\d+)__"},
        ],
        "samples_per_epoch": 20,
    }
    config.update(overrides)
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _as_dict(path):
    """The YAML of ``path`` as a dict whose roots are absolute (dict configs resolve against the cwd)."""
    data = yaml.safe_load(path.read_text())
    for entry in data["datasets"]:
        entry["root"] = str(path.parent / entry["root"])
    return data


def test_build_registry_maps_splits_and_prints_the_table(tmp_path):
    registry = build_registry(_config(tmp_path))
    assert registry.classes == ("car", "truck", "bus", "van", "other_vehicle")
    assert registry.train_sizes == [6, 12] and len(registry.val) == 2 + 6
    assert registry.quotas == [8, 12] and registry.samples_per_epoch == 20
    dv = [s for s in registry.train if s.source == "0024_DroneVehicle"]
    assert [dv[0].meta["classes"][i] for i in dv[0].labels] == ["car", "truck"]  # freight_car -> truck (default)
    dota = [s for s in registry.train + registry.val if s.source == "dota"]
    assert all(s.labels.tolist() == [0, 1] for s in dota)  # plane dropped by the default '*': ignore
    report = registry.reports[1]
    assert report.mapping.ignored == {"plane": 18} and report.mapping.routes[("small-vehicle", "car")] == 18
    table = registry.summary_table()
    print(table)
    assert re.search(r"^\s*8/6\s+0024_DroneVehicle\s+dronevehicle\s+2\s+8\s+8\s+0\s+0\s+0\s+0\s+0$", table, re.M)
    assert re.search(r"^\s*12/12\s+dota\s+dota\s+6\s+18\s+18\s+0\s+0\s+0\s+18\s+0$", table, re.M)
    assert re.search(r"^\s*20/18\s+training total\s+18\s+18\s+0\s+0\s+0$", table, re.M)
    assert re.search(r"^\s+validation total\s+8\s+8\s+8\s+0\s+0\s+0$", table, re.M)
    assert "plane -> ignore: 18" in table and "freight_car -> truck: 8" in table


def test_group_by_keeps_scenes_on_one_side_and_split_is_reproducible(tmp_path):
    registry = build_registry(_config(tmp_path))
    scene = lambda s: Path(s.image_path).name.split("__")[0]  # noqa: E731
    train_scenes = {scene(s) for s in registry.train if s.source == "dota"}
    val_scenes = {scene(s) for s in registry.val if s.source == "dota"}
    assert len(val_scenes) == 2 and not train_scenes & val_scenes
    again = build_registry(_config(tmp_path))
    assert [s.image_path for s in again.val] == [s.image_path for s in registry.val]
    other_seed = build_registry(_config(tmp_path, seed=8))
    assert [s.image_path for s in other_seed.val] != [s.image_path for s in registry.val]


def test_split_train_val_fraction_and_unmatched_names(tmp_path, caplog):
    from obbdet.structures import Sample

    samples = [Sample(f"/x/img{i:03d}.jpg", 8, 8, np.zeros((0, 5), np.float32), np.zeros(0, np.int64),
                      np.zeros(0, bool)) for i in range(100)]
    train, val = split_train_val(samples, 0.2, None, 0, "d")
    assert len(val) == 20 and len(train) == 80 and not {s.image_path for s in train} & {s.image_path for s in val}
    train, val = split_train_val(samples, 0.2, r"^(nomatch)", 0, "d")
    assert len(val) == 20 and "matched no group in 100 image names" in caplog.text


def test_roles_and_sampler_from_registry(tmp_path):
    path = _config(tmp_path)
    data = _as_dict(path)
    data["datasets"][0].update(role="val", quota=None)
    data["datasets"][1].update(role="train", weight=None, quota=5)
    data.pop("samples_per_epoch")
    registry = build_registry(data)
    assert registry.train_sizes == [0, 18] and len(registry.val) == 8 and registry.quotas == [0, 5]
    sampler = registry.sampler(num_replicas=2, rank=1)
    sampler.set_epoch(0)
    indices = list(sampler)
    assert len(indices) == 3 and all(registry.train[i].source == "dota" for i in indices)


@pytest.mark.parametrize("change, message", [
    ({"datasets": [{"type": "dota", "root": ".", "qouta": 3}]}, r"unknown key\(s\) \['qouta'\]"),
    ({"datasets": [{"type": "nope", "root": "."}]}, r"type 'nope' is not one of .*dota"),
    ({"datasets": [{"type": "dota", "quota": 3, "weight": 1.0}]}, "quota or weight, not both"),
    ({"datasets": [{"type": "dota"}, {"type": "dota"}]}, "names must be unique"),
    ({"datasets": [{"type": "dota", "val_fraction": 1.5}]}, "val_fraction"),
    ({"datasets": [{"type": "dota", "group_by": "("}]}, "group_by is not a valid regex"),
    ({"classes": ["car", "ignore"], "datasets": [{"type": "dota"}]}, "classes must be unique and not 'ignore'"),
    ({"datasets": []}, "non-empty list"),
])
def test_config_errors_name_the_key(change, message):
    with pytest.raises(RegistryConfigError, match=message):
        load_registry_config(change)


def test_unmapped_class_is_an_error_naming_it(tmp_path):
    path = _config(tmp_path)
    data = _as_dict(path)
    data["datasets"][1]["class_map"] = {"small-vehicle": "car", "large-vehicle": "truck"}
    with pytest.raises(RegistryConfigError, match=r"dota: classes \['plane'\] are not mapped"):
        build_registry(data)
    data["datasets"][1]["class_map"] = {"small-vehicle": "sedan"}
    with pytest.raises(RegistryConfigError, match="'sedan', which is not one of the classes"):
        build_registry(data)


def test_relative_roots_resolve_against_the_yaml_and_example_loads(tmp_path, monkeypatch):
    config = load_registry_config(_config(tmp_path))
    assert config.datasets[1].root == str((tmp_path / "dota").resolve())
    monkeypatch.delenv("DATA", raising=False)
    with pytest.raises(RegistryConfigError, match=r"root '\$DATA/DroneVehicle' uses an environment variable"):
        load_registry_config(PROJECT / "configs" / "registry_example.yaml")
    monkeypatch.setenv("DATA", str(tmp_path))
    example = load_registry_config(PROJECT / "configs" / "registry_example.yaml")
    assert example.datasets[0].root == str(tmp_path / "DroneVehicle")
    assert len(example.datasets) >= 8 and {d.type for d in example.datasets} >= {"dronevehicle", "dota", "vedai"}


def test_cli_prints_table(tmp_path, capsys):
    assert registry_cli([str(_config(tmp_path)), "--epochs", "2", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "0024_DroneVehicle" in out and "epoch 1: 0024_DroneVehicle 8, dota 12" in out


def test_registry_strict_default_and_lenient_dataset(tmp_path):
    path = _config(tmp_path)
    write_text(tmp_path / "dota" / "labelTxt" / "P0000__1__0___0.txt", "1 2 3 x 5 6 7 8 small-vehicle 0\n")
    with pytest.raises(ValueError, match=r"P0000__1__0___0.txt:1"):
        build_registry(path)
    data = _as_dict(path)
    data["datasets"][1]["strict"] = False
    registry = build_registry(data)
    assert registry.reports[1].summary.skipped["malformed"] == 1
    assert "dota: 18 images, 51 objects; skipped 1 malformed" in registry.summary_table()


def test_synthetic_scenes_join_a_registry(tmp_path):
    pytest.importorskip("obbdet.datasets_registry.synthetic")
    dota, _ = _make_data(tmp_path)
    config = {"seed": 1, "cache": False, "datasets": [
        {"name": "synthetic", "type": "synthetic", "root": str(tmp_path / "synthetic"), "quota": 4,
         "options": {"n_train": 3, "n_val": 1, "width": 192, "height": 192, "progress": False}},
        {"type": "dota", "root": str(dota), "quota": 2}]}
    registry = build_registry(config)
    assert registry.train_sizes == [4, 18] and registry.quotas == [4, 2]
    synthetic = [s for s in registry.train if s.source == "synthetic"]
    assert all(s.meta["classes"] == registry.classes for s in synthetic)
    assert sum(registry.reports[0].train_objects.values()) == sum(len(s) for s in synthetic) > 0
