"""The Predictor gives what infer.py writes: same checkpoint, same image, same options -> same detections."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from obbdet import Predictor
from obbdet.checkpoint import load_checkpoint, save_checkpoint, set_calibration
from obbdet.cli import infer as infer_cli
from obbdet.formats import obb_json_dict
from obbdet.imageio import read_image_rgb
from obbdet.inference import InferenceSetupError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def calibrated_checkpoint(tiny_checkpoint, tmp_path) -> Path:
    """The tiny checkpoint with calibration factors, a non-default NMS IoU and candidate cap."""
    ckpt_path = tmp_path / "calibrated.pt"
    ckpt = load_checkpoint(tiny_checkpoint)
    ckpt.update(nms_iou=0.25, pre_nms_topk=300)
    save_checkpoint(ckpt, ckpt_path)
    set_calibration(ckpt_path, 0.93, 1.04)
    return ckpt_path


def _scene(folder: Path, fixtures: Path | None) -> Path:
    """A real DOTA fixture image when the fixtures are there, else a synthetic scene."""
    folder.mkdir(parents=True)
    if fixtures is not None:
        image = sorted((fixtures / "dota" / "images").glob("*.png"))[0]
        return Path(shutil.copy(image, folder / image.name))
    from obbdet.datasets_registry.synthetic import generate_synthetic_dataset

    generate_synthetic_dataset(folder.parent / "synthetic", 1, seed=5)
    image = sorted((folder.parent / "synthetic").rglob("*.png"))[0]
    return Path(shutil.copy(image, folder / image.name))


def _fixtures_or_none(request) -> Path | None:
    try:
        return request.getfixturevalue("fixtures_dir")
    except pytest.skip.Exception:
        return None


def test_predictor_matches_infer_cli(calibrated_checkpoint, tmp_path, request):
    image = _scene(tmp_path / "in", _fixtures_or_none(request))
    out = tmp_path / "out"
    rc = infer_cli.main([str(image.parent), "20", str(calibrated_checkpoint), "obb", "--out", str(out),
                         "--device", "cpu", "--score", "0.001", "--tile", "256", "--overlap", "64", "--quiet"])
    assert rc == 0
    written = json.loads((out / f"{image.stem}.json").read_text())

    predictor = Predictor.from_checkpoint(calibrated_checkpoint, device="cpu", score_threshold=0.001, tile=256,
                                          overlap=64)
    assert predictor.options.nms_iou == 0.25 and predictor.options.pre_nms_topk == 300
    assert (predictor.options.width_scale, predictor.options.length_scale) == (0.93, 1.04)
    from_path = predictor.predict(image, vehicle_width=20)
    from_array = predictor(read_image_rgb(image), vehicle_width=20)
    assert len(from_path) > 0, "the tiny model should find something at score 0.001"
    for det in (from_path, from_array):
        assert obb_json_dict(det.to_labels(image=image.name)) == written
    assert from_path.boxes.shape == (len(from_path), 5) and from_path.labels.dtype == np.int64
    assert set(from_path.classes) <= set(predictor.class_names)

    # the stored calibration reached the boxes: the same run without it has wider, shorter boxes
    plain = Predictor.from_checkpoint(calibrated_checkpoint, device="cpu", score_threshold=0.001, tile=256,
                                      overlap=64, width_scale=1.0, length_scale=1.0).predict(image, vehicle_width=20)
    np.testing.assert_allclose(from_path.boxes[:, 3], plain.boxes[:, 3] * 0.93, rtol=1e-9)
    np.testing.assert_allclose(from_path.boxes[:, 2], plain.boxes[:, 2] * 1.04, rtol=1e-9)


def test_predictor_options_and_errors(calibrated_checkpoint, tmp_path):
    predictor = Predictor.from_checkpoint(calibrated_checkpoint, device="cpu", nms_iou=0.5, pre_nms_topk=50)
    assert predictor.options.nms_iou == 0.5 and predictor.options.pre_nms_topk == 50
    assert predictor.option_sources == {"width": "checkpoint calibration", "length": "checkpoint calibration"}
    with pytest.raises(InferenceSetupError, match="pre_nms_topk must be >= 1"):
        Predictor.from_checkpoint(calibrated_checkpoint, device="cpu", pre_nms_topk=0)
    with pytest.raises(InferenceSetupError, match="not found"):
        Predictor.from_checkpoint(tmp_path / "missing.pt", device="cpu")
    with pytest.raises(ValueError, match="uint8 RGB"):
        predictor(np.zeros((8, 8), np.uint8))
    empty = predictor(np.full((64, 96, 3), 114, np.uint8))
    assert empty.image_size == (96, 64) and empty.boxes.shape[1] == 5


def test_infer_cli_pre_nms_topk_reaches_the_detector(calibrated_checkpoint, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    from obbdet.imageio import write_image_rgb

    write_image_rgb(folder / "grey.png", np.full((128, 128, 3), 114, np.uint8))
    rc = infer_cli.main([str(folder), "-1", str(calibrated_checkpoint), "obb", "--device", "cpu", "--quiet",
                         "--pre-nms-topk", "77"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "77 candidates per class before NMS" in printed and "NMS IoU 0.25" in printed
    assert "width scale 0.93 (checkpoint calibration)" in printed


class _RecordingDetector:
    """Records its inputs and detects nothing."""

    stride = 32

    def __init__(self):
        self.inputs = []

    def predict(self, images, **kwargs):
        self.inputs.append(images.clone())
        empty = {"boxes": torch.zeros((0, 5)), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
        return [empty for _ in images]


def test_padding_is_the_training_grey(tmp_path):
    """Tiles and whole images are padded with the grey training pads batches and warps with, not black."""
    from obbdet.data import collate_detections
    from obbdet.imageio import PAD_GREY

    detector = _RecordingDetector()
    image = np.full((50, 70, 3), 7, np.uint8)
    Predictor(detector, ["car"]).predict(image)
    x = detector.inputs[0][0]  # [3, 64, 96]
    assert tuple(x.shape) == (3, 64, 96)
    assert torch.all(x[:, :50, :70] == 7 / 255.0) and torch.all(x[:, 50:, :] == PAD_GREY / 255.0)
    assert torch.all(x[:, :, 70:] == PAD_GREY / 255.0)
    images, _ = collate_detections([(torch.full((3, 50, 70), 7, dtype=torch.uint8), {})], stride=32)
    assert torch.all(images[0, :, 50:, :] == PAD_GREY) and torch.all(images[0, :, :50, :70] == 7)
