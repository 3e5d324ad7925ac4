"""Registry integrity: the same image twice (train/val leaks), labels with several image files, class map
typos and classes emptied by ``ignore``, unknown importer options, empty virtual epochs, and ``--check``."""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import yaml

from obbdet.datasets_registry import (
    ImportSummary, LabelFormatError, RegistryConfigError, build_registry, load_dataset, load_registry_config,
)
from obbdet.datasets_registry.__main__ import main as registry_cli
from tests.registry_files import write_dota, write_image, write_text

N_IMAGES = 10


def _dota(root: Path, n: int = N_IMAGES) -> Path:
    for i in range(n):
        write_dota(root, f"P{i:04d}", [f"{10 + i} 10 30 10 30 20 {10 + i} 20 small-vehicle 0",
                                       "40 40 70 40 70 55 40 55 large-vehicle 0", "5 60 25 60 25 80 5 80 plane 0"],
                   size=(96, 96))
    return root


def _write_config(tmp_path: Path, datasets: list[dict], **top) -> Path:
    config = {"seed": 0, "cache": str(tmp_path / "cache"), "datasets": datasets, **top}
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _twice(tmp_path: Path, second_root: str, strict: bool) -> Path:
    return _write_config(tmp_path, [{"name": "first", "type": "dota", "root": "dota", "val_fraction": 0.5},
                                    {"name": "second", "type": "dota", "root": second_root, "val_fraction": 0.5}],
                         strict=strict)


def _real(sample) -> str:
    return os.path.realpath(sample.image_path)


# ---- 1. the same image through two entries (or a copy in another folder): train/val leakage ----------------

@pytest.mark.parametrize("copy", [False, True], ids=["same-folder-twice", "byte-identical-copy"])
def test_duplicate_images_strict_error_names_both_paths_and_entries(tmp_path, copy):
    _dota(tmp_path / "dota")
    if copy:
        shutil.copytree(tmp_path / "dota", tmp_path / "mirror")
    path = _twice(tmp_path, "mirror" if copy else "dota", strict=True)
    with pytest.raises(RegistryConfigError) as info:
        build_registry(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "'second'" in message and "'first'" in message and "train/val leak" in message
    second = tmp_path / ("mirror" if copy else "dota") / "images"
    assert f"{second}/P00" in message and f"{tmp_path / 'dota' / 'images'}/P00" in message


@pytest.mark.parametrize("copy", [False, True], ids=["same-folder-twice", "byte-identical-copy"])
def test_duplicate_images_lenient_warns_and_keeps_one_copy(tmp_path, copy, caplog):
    _dota(tmp_path / "dota")
    if copy:
        shutil.copytree(tmp_path / "dota", tmp_path / "mirror")
    with caplog.at_level(logging.WARNING):
        registry = build_registry(_twice(tmp_path, "mirror" if copy else "dota", strict=False))
    fingerprints = lambda samples: [s.meta["fingerprint"] for s in samples]  # noqa: E731
    train, val = fingerprints(registry.train), fingerprints(registry.val)
    assert not set(train) & set(val)  # no image both trained and validated on
    assert len(train) + len(val) == len(set(train + val)) == N_IMAGES  # one copy of each
    assert [r.train_images + r.val_images for r in registry.reports] == [N_IMAGES, 0]  # the first listing wins
    assert "train/val leak" in caplog.text and "'second'" in caplog.text
    table = registry.summary_table()
    assert "warnings:" in table and "the copy is dropped" in table and "more duplicate images" in table


def test_fingerprints_come_from_the_cache_on_a_warm_start(tmp_path, monkeypatch):
    from obbdet.datasets_registry import common

    _dota(tmp_path / "dota")
    path = _write_config(tmp_path, [{"name": "d", "type": "dota", "root": "dota", "val_fraction": 0.3}])
    cold = build_registry(path)
    calls = []
    original = common.image_fingerprint
    monkeypatch.setattr(common, "image_fingerprint", lambda p: calls.append(p) or original(p))
    warm = build_registry(path)
    assert not calls  # the images are not read again
    assert [s.meta["fingerprint"] for s in warm.train] == [s.meta["fingerprint"] for s in cold.train]


# ---- 2. a label stem with several image files ---------------------------------------------------------------

def _p1888(tmp_path: Path, fixtures_dir: Path) -> Path:
    root = tmp_path / "dota"
    (root / "images").mkdir(parents=True)
    shutil.copy(fixtures_dir / "dota" / "images" / "P1888.png", root / "images")
    write_text(root / "labelTxt" / "P1888.txt", (fixtures_dir / "dota" / "labelTxt" / "P1888.txt").read_text())
    write_image(root / "images" / "P1888.jpg", 100, 100)  # a thumbnail beside the 712x557 original
    return root


def test_label_with_two_image_files_is_an_error_naming_both(tmp_path, fixtures_dir):
    root = _p1888(tmp_path, fixtures_dir)
    with pytest.raises(LabelFormatError, match=r"P1888\.txt.*P1888\.jpg, P1888\.png"):
        load_dataset("dota", root)
    summary = ImportSummary()
    assert load_dataset("dota", root, strict=False, summary=summary) == []  # lenient: skipped, counted
    assert summary.skipped == {"labels with several image files": 1}
    path = _write_config(tmp_path, [{"name": "d", "type": "dota", "root": "dota", "strict": False}])
    with pytest.raises(RegistryConfigError, match="empty"):  # its only image was skipped
        build_registry(path)


def test_yolo_obb_stem_with_two_image_files(tmp_path):
    root = tmp_path / "yolo"
    write_image(root / "images" / "train" / "a.png", 64, 64)
    write_image(root / "images" / "train" / "a.jpg", 32, 32)
    write_text(root / "labels" / "train" / "a.txt", "0 0.1 0.1 0.3 0.1 0.3 0.2 0.1 0.2\n")
    with pytest.raises(LabelFormatError, match=r"a\.jpg, a\.png"):
        load_dataset("yolo_obb", root, class_names=["car"])


# ---- 3. class maps ------------------------------------------------------------------------------------------

def test_class_map_typo_is_an_error_naming_the_real_classes(tmp_path):
    _dota(tmp_path / "dota")
    path = _write_config(tmp_path, [{"name": "d", "type": "dota", "root": "dota", "val_fraction": 0.2,
                                     "class_map": {"small-vehikle": "car", "large-vehicle": "truck", "*": "ignore"}}])
    with pytest.raises(RegistryConfigError) as info:
        build_registry(path)
    message = str(info.value)
    assert "'small-vehikle'" in message and "did you mean 'small-vehicle'?" in message
    assert "plane, baseball-diamond" in message and str(path) in message and "\n" not in message


def test_class_left_empty_by_ignore_is_a_warning_in_the_table(tmp_path):
    _dota(tmp_path / "dota")
    maps = {"cars": {"small-vehicle": "ignore", "large-vehicle": "truck", "*": "ignore"}, "nothing": {"*": "ignore"}}
    path = _write_config(tmp_path, [{"name": name, "type": "dota", "root": "dota", "val_fraction": 0.2,
                                     "class_map": class_map} for name, class_map in maps.items()], strict=False)
    table = build_registry(path).summary_table()
    assert "warnings:" in table
    assert "dataset 'cars': class 'car' receives no object while 20 are mapped to ignore" in table
    assert "dataset 'nothing': all 30 objects are mapped to ignore" in table


# ---- 4. sentences instead of tracebacks ---------------------------------------------------------------------

def test_unknown_importer_option_is_one_line(tmp_path, capsys):
    _dota(tmp_path / "dota", 2)
    path = _write_config(tmp_path, [{"name": "d", "type": "dota", "root": "dota", "options": {"splitt": "train"}}])
    with pytest.raises(RegistryConfigError) as info:
        load_registry_config(path)
    message = str(info.value)
    assert "\n" not in message and "datasets[0] (d)" in message and "'splitt'" in message
    assert "valid options: split, labels_dir, images_dir" in message
    assert registry_cli([str(path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"


@pytest.mark.parametrize("entry", [{"quota": 0}, {"role": "val"}], ids=["quota-0", "no-training-images"])
def test_empty_virtual_epoch_is_an_error_of_the_registry(tmp_path, entry):
    _dota(tmp_path / "dota", 3)
    path = _write_config(tmp_path, [{"name": "d", "type": "dota", "root": "dota", **entry}])
    with pytest.raises(RegistryConfigError, match=r"the virtual epoch is empty \(d: 0 of \d training images\)"):
        build_registry(path)
    assert registry_cli([str(path)]) == 2


def _train(tmp_path: Path, registry: Path, capsys) -> tuple[int, str]:
    from obbdet.cli import train

    capsys.readouterr()
    rc = train.main(["bad", "0", "--config", "tiny", "--no-progress", f"data.registry={registry}",
                     f"train.out_dir={tmp_path / 'runs'}", "train.threads=1"])
    return rc, capsys.readouterr().err


PROBLEMS = {
    "empty-epoch": ([{"name": "d", "type": "dota", "root": "dota", "quota": 0}], {}, "the virtual epoch is empty"),
    "duplicates": ([{"name": "a", "type": "dota", "root": "dota", "val_fraction": 0.5},
                    {"name": "b", "type": "dota", "root": "dota", "val_fraction": 0.5}], {}, "more than once"),
    "class-map": ([{"name": "d", "type": "dota", "root": "dota", "class_map": {"small-vehikle": "car"}}], {},
                  "did you mean 'small-vehicle'"),
    "option": ([{"name": "d", "type": "dota", "root": "dota", "options": {"splitt": "x"}}], {}, "unknown option"),
    "stem": ([{"name": "d", "type": "dota", "root": "dota"}], {"extra_image": True}, "several image files"),
}


@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_train_exits_2_with_one_line_naming_the_file(tmp_path, capsys, problem):
    datasets, extra, expected = PROBLEMS[problem]
    _dota(tmp_path / "dota", 4)
    if extra.get("extra_image"):
        write_image(tmp_path / "dota" / "images" / "P0001.jpg", 20, 20)
    path = _write_config(tmp_path, datasets)
    rc, err = _train(tmp_path, path, capsys)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: ") and str(path) in lines[0] and expected in lines[0]
    assert not (tmp_path / "runs" / "bad").exists()


# ---- --check ------------------------------------------------------------------------------------------------

def test_check_exit_codes(tmp_path, capsys):
    _dota(tmp_path / "dota", 6)
    clean = _write_config(tmp_path, [{"name": "d", "type": "dota", "root": "dota", "val_fraction": 0.3}])
    assert registry_cli([str(clean), "--check"]) == 0
    assert "0 error(s), 0 warning(s)" in capsys.readouterr().out

    strict = _twice(tmp_path, "dota", strict=True)
    assert registry_cli([str(strict), "--check"]) == 1
    captured = capsys.readouterr()
    assert "1 error" not in captured.out and "6 error(s)" in captured.out
    assert "train/val leak" in captured.err and "'second'" in captured.err

    lenient = _twice(tmp_path, "dota", strict=False)
    assert registry_cli([str(lenient), "--check"]) == 0
    assert "0 error(s), 6 warning(s)" in capsys.readouterr().out

    write_image(tmp_path / "dota" / "images" / "P0002.jpg", 20, 20)  # every problem is listed, not the first only
    typo = _write_config(tmp_path, [{"name": "d", "type": "dota", "root": "dota",
                                     "class_map": {"small-vehikle": "car", "*": "ignore"}}])
    assert registry_cli([str(typo), "--check"]) == 1
    err = capsys.readouterr().err
    assert "P0002.jpg, P0002.png" in err and "did you mean 'small-vehicle'" in err
