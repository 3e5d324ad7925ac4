"""Broken checkpoints are refused with one sentence naming the file and what is wrong (exit 2 from infer.py and
train.py --resume), never with a traceback."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from obbdet.checkpoint import (  # noqa: E402
    CheckpointError, build_detector_from_checkpoint, load_checkpoint, save_checkpoint,
)

ANGLE_PW = "angle_predict.conv_pw.weight"


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    import cv2

    folder = tmp_path_factory.mktemp("images")
    cv2.imwrite(str(folder / "scene.png"), np.full((64, 64, 3), 100, np.uint8))
    return folder


def _broken(tiny_checkpoint, path: Path, edit) -> Path:
    """A copy of the tiny checkpoint at ``path`` after ``edit(ckpt)``."""
    ckpt = load_checkpoint(tiny_checkpoint)
    edit(ckpt)
    save_checkpoint(ckpt, path)
    return path


def _infer(folder: Path, ckpt: Path, tmp_path: Path, capsys) -> tuple[int, str]:
    from obbdet.cli import infer

    rc = infer.main([str(folder), "-1", str(ckpt), "obb", "--out", str(tmp_path / "det"), "--quiet",
                     "--device", "cpu"])
    err = capsys.readouterr().err
    return rc, err


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _both_weights(ckpt: dict, edit) -> None:
    for key in ("state_dict", "ema_state_dict"):
        if ckpt.get(key) is not None:
            edit(ckpt[key])


@pytest.mark.parametrize("names", [["car", "truck", "bus"], ["car", "truck", "bus", "van", "tank"]])
def test_class_list_disagreeing_with_the_class_head(tiny_checkpoint, tmp_path, image_folder, capsys, names):
    path = _broken(tiny_checkpoint, tmp_path / "classes.pt", lambda c: c["model"].update(class_names=names))
    sentence = f"its class list has {len(names)} names but the class head has 4 outputs"
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: {sentence}")):
        load_checkpoint(path)
    rc, err = _infer(image_folder, path, tmp_path, capsys)
    assert rc == 2
    line = _one_line_error(err)
    assert str(path) in line and sentence in line


def test_class_list_disagreeing_with_num_classes(tiny_checkpoint, tmp_path):
    path = _broken(tiny_checkpoint, tmp_path / "num_classes.pt",
                   lambda c: c["model"]["effdet_config"].update(num_classes=3))
    with pytest.raises(CheckpointError, match=r"class list has 4 names but 'model.effdet_config.num_classes' is 3"):
        load_checkpoint(path)


def test_missing_effdet_config(tiny_checkpoint, tmp_path, image_folder, capsys):
    path = _broken(tiny_checkpoint, tmp_path / "no_config.pt", lambda c: c["model"].pop("effdet_config"))
    ckpt = load_checkpoint(path)  # the class list and the metadata are still readable
    assert ckpt["model"]["class_names"] == ["car", "truck", "bus", "van"]
    with pytest.raises(CheckpointError, match=re.escape(f"checkpoint {path}: no 'model.effdet_config' in its "
                                                        "model spec")):
        build_detector_from_checkpoint(ckpt, source=path)
    rc, err = _infer(image_folder, path, tmp_path, capsys)
    assert rc == 2
    line = _one_line_error(err)
    assert str(path) in line and "no 'model.effdet_config'" in line and "cannot be rebuilt" in line


def test_effdet_config_missing_a_key(tiny_checkpoint, tmp_path):
    path = _broken(tiny_checkpoint, tmp_path / "no_level.pt", lambda c: c["model"]["effdet_config"].pop("min_level"))
    with pytest.raises(CheckpointError, match=re.escape(f"checkpoint {path}: 'model.effdet_config'")) as info:
        build_detector_from_checkpoint(load_checkpoint(path), source=path)
    assert "min_level" in str(info.value) and "\n" not in str(info.value)


def _mismatch(state: dict) -> None:
    state.pop("angle_predict.conv_pw.bias")
    state["net.extra_layer.weight"] = torch.zeros(2)
    state[ANGLE_PW] = state[ANGLE_PW][:3]


def test_state_dict_mismatch_summarised_in_one_line(tiny_checkpoint, tmp_path, image_folder, capsys):
    path = _broken(tiny_checkpoint, tmp_path / "weights.pt", lambda c: _both_weights(c, _mismatch))
    shape = list(load_checkpoint(tiny_checkpoint)["state_dict"][ANGLE_PW].shape)
    summary = (f"1 missing keys (first: angle_predict.conv_pw.bias), 1 unexpected (first: net.extra_layer.weight), "
               f"1 shape mismatches (first: {ANGLE_PW} [3, {', '.join(map(str, shape[1:]))}] in the checkpoint vs "
               f"[{', '.join(map(str, shape))}] in the model)")
    for use_ema, what in ((True, "EMA weights ('ema_state_dict')"), (False, "weights ('state_dict')")):
        with pytest.raises(CheckpointError) as info:
            build_detector_from_checkpoint(load_checkpoint(path), use_ema=use_ema, source=path)
        assert str(info.value) == f"checkpoint {path}: its {what} do not fit the model: {summary}"
    rc, err = _infer(image_folder, path, tmp_path, capsys)
    assert rc == 2
    line = _one_line_error(err)
    assert str(path) in line and summary in line


def _resume_args(out_dir: Path, cache: Path):
    return ["tiny", "0", "--resume", "--config", "tiny", "--no-progress", f"train.out_dir={out_dir}",
            f"data.synthetic_cache={cache}", "train.threads=1"]


def test_resume_refuses_a_broken_checkpoint(tiny_checkpoint, tmp_path, capsys):
    from obbdet.cli import train

    cache = tiny_checkpoint.parents[2] / "infer_tiny_cache"  # the fixture's rendered scenes
    run = tmp_path / "tiny"
    run.mkdir()
    last = run / "last.pt"
    # a class list that disagrees with the weights: refused while reading the checkpoint
    _broken(tiny_checkpoint, last, lambda c: c["model"].update(class_names=["car", "truck", "bus"]))
    assert train.main(_resume_args(tmp_path, cache)) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert str(last) in line and "its class list has 3 names but the class head has 4 outputs" in line
    # weights that do not fit the run's model: refused when they are restored, before the run folder is written
    _broken(tiny_checkpoint, last, lambda c: _both_weights(c, _mismatch))
    assert train.main(_resume_args(tmp_path, cache)) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert line.startswith(f"error: {last}: its weights ('state_dict') do not fit the model: 1 missing keys")
    assert sorted(p.name for p in run.iterdir()) == ["last.pt"]
    shutil.rmtree(run)
