"""ONNX export (tools/export.py) and the ONNX Runtime backend against the PyTorch path, on the tiny checkpoint.

Boxes are le90 xywha ``[cx, cy, w, h, a]`` (radians). The tiny model is barely trained: its scores all lie near
0.011, a few 1e-7 apart, which is the size of the difference between two runtimes' float32 arithmetic. So the
candidates (threshold 0) are compared as sets, and the keep sets after NMS at a threshold that lies in a wide
gap of the scores (:func:`separated_threshold`): where two candidates' order is decided by rounding noise, no
runtime can promise the same NMS outcome.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from obbdet.inference import InferenceSetupError, Predictor  # noqa: E402
from obbdet.inference.onnx_backend import METADATA_KEY, OnnxDetector  # noqa: E402
from obbdet.tools import export  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def onnx_model(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "tiny.onnx"
    assert export.main([str(tiny_checkpoint), "--format", "onnx", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def torch_predictor(tiny_checkpoint):
    return Predictor.from_checkpoint(tiny_checkpoint, "cpu", score_threshold=0.0, channels_last=False)


def match(a: dict, b: dict, tol: float = 1e-3) -> float:
    """Largest box-parameter difference between two detection sets that pair one to one with equal labels
    (angles compared modulo pi); fails when they do not."""
    boxes_a, boxes_b = a["boxes"].double().numpy(), b["boxes"].double().numpy()
    assert len(boxes_a) == len(boxes_b), f"{len(boxes_a)} vs {len(boxes_b)} detections"
    diff = np.abs(boxes_a[:, None, :] - boxes_b[None, :, :])  # (N, N, 5)
    diff[..., 4] = np.minimum(diff[..., 4], math.pi - diff[..., 4])
    worst = diff.max(-1)
    worst[a["labels"].numpy()[:, None] != b["labels"].numpy()[None, :]] = np.inf
    partner = worst.argmin(1)
    assert len(set(partner.tolist())) == len(partner), "detections do not pair one to one"
    best = worst[np.arange(len(partner)), partner]
    assert (best <= tol).all(), f"box parameters differ by up to {best.max():.3g}"
    np.testing.assert_allclose(a["scores"].numpy(), b["scores"][partner].numpy(), atol=1e-5)
    return float(best.max(initial=0.0))


def separated_threshold(scores: np.ndarray, around: int = 40) -> float:
    """A score threshold keeping about ``around`` of ``scores``, in the middle of the widest gap between
    consecutive scores ranked ``around / 2`` to ``2 * around``."""
    ranked = np.sort(np.asarray(scores, np.float64))[::-1]
    low, high = around // 2, min(2 * around, len(ranked) - 1)
    gaps = ranked[low:high] - ranked[low + 1:high + 1]
    i = low + int(np.argmax(gaps))
    assert gaps.max() > 1e-6, "no score gap wide enough for a stable threshold"
    return float((ranked[i] + ranked[i + 1]) / 2)


def scenes(batch: int, height: int, width: int) -> torch.Tensor:
    """``[batch, 3, height, width]`` synthetic aerial scenes (cars on roads), float RGB in [0, 1]."""
    from obbdet.datasets_registry.synthetic import render_scene

    images = [render_scene(seed, width, height, vehicle_width=16.0)[0] for seed in range(batch)]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255.0)


@pytest.mark.parametrize("size", [(128, 160), (96, 64)])
@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_eager(onnx_model, torch_predictor, size, batch):
    detector = OnnxDetector(onnx_model)
    images = scenes(batch, *size)
    with torch.inference_mode():
        eager = torch_predictor.detector.predict(images, score_threshold=0.0, nms_iou=1.0, vote_iou=0.0)
    exported = detector.predict(images, score_threshold=0.0, nms_iou=1.0, vote_iou=0.0)
    assert len(exported) == batch
    for a, b in zip(eager, exported):  # every location's best candidate of each class, decoded: the same set
        assert len(a["boxes"]) > 100
        match(a, b)
    for b, image in enumerate(images):  # after the threshold and the NMS: the same detections
        threshold = separated_threshold(eager[b]["scores"].numpy(), around=100)
        with torch.inference_mode():
            kept_eager = torch_predictor.detector.predict(image[None], score_threshold=threshold)[0]
        kept_onnx = detector.predict(image[None], score_threshold=threshold)[0]
        assert 5 < len(kept_eager["boxes"]) < (eager[b]["scores"] > threshold).sum()  # NMS removed some
        match(kept_eager, kept_onnx)
        torch.testing.assert_close(kept_eager["labels"], kept_onnx["labels"])  # same order, too


def test_predictor_gives_the_same_detections_from_the_onnx_file(onnx_model, tiny_checkpoint, torch_predictor):
    """The whole pipeline (tiles in batches of 3, some tiles smaller, cross-tile merging) with either backend."""
    from obbdet.datasets_registry.synthetic import render_scene

    image = render_scene(7, 300, 200, vehicle_width=16.0)[0]
    every = torch_predictor.predict(image, -1).scores  # one 768 tile holds the whole image: the threshold's gap
    kwargs = dict(score_threshold=separated_threshold(every, around=30), tile=128, overlap=32, batch=3)
    from_onnx = Predictor.from_checkpoint(onnx_model, "cpu", **kwargs)
    from_torch = Predictor.from_checkpoint(tiny_checkpoint, "cpu", channels_last=False, **kwargs)
    assert isinstance(from_onnx.detector, OnnxDetector) and from_onnx.detector.stride == 32
    a, b = from_torch.predict(image, -1), from_onnx.predict(image, -1)
    assert len(a) > 5
    as_dict = lambda d: {name: torch.from_numpy(getattr(d, name)) for name in ("boxes", "labels", "scores")}  # noqa: E731
    match(as_dict(a), as_dict(b))


def test_test_time_augmentation_runs_the_same_views_on_both_backends(onnx_model, torch_predictor):
    """The views of ``tta="rot4"`` (quarter turns transpose a non-square input) go through the graph as through
    the eager network, and are fused the same way: every candidate of every view kept (NMS IoU 1) and voted
    with its neighbours, which depends on no score order."""
    detector = OnnxDetector(onnx_model)
    image = scenes(1, 96, 160)
    settings = dict(score_threshold=0.0, nms_iou=1.0, vote_iou=0.6, tta="rot4", max_det_per_image=10 ** 5,
                    pre_nms_topk=40)
    with torch.inference_mode():
        eager = torch_predictor.detector.predict(image, **settings)[0]
    exported = detector.predict(image, **settings)[0]
    assert len(eager["boxes"]) == len(exported["boxes"]) == 4 * 40 * 4  # views x candidates x classes
    for a, b in ((eager, exported), (exported, eager)):  # each fused box has its twin (views fuse to duplicates)
        rows_a = torch.cat([a["boxes"], a["scores"][:, None], a["labels"][:, None].float()], 1).double().numpy()
        rows_b = torch.cat([b["boxes"], b["scores"][:, None], b["labels"][:, None].float()], 1).double().numpy()
        diff = np.abs(rows_a[:, None, :] - rows_b[None, :, :])
        diff[..., 4] = np.minimum(diff[..., 4], math.pi - diff[..., 4])
        assert diff.max(-1).min(1).max() < 1e-3


def test_heading_head_is_exported(tmp_path):
    """A model with a heading head: ``heading [B, k, C]`` in the graph, on the long axis of each box."""
    from obbdet.checkpoint import save_checkpoint
    from obbdet.config import ModelConfig
    from obbdet.model.detector import build_detector

    torch.manual_seed(0)
    detector = build_detector(ModelConfig(variant="obbdet_micro", image_size=64), ["car", "bus"], heading=True,
                              verbose=False).eval()
    ckpt = tmp_path / "heading.pt"
    save_checkpoint({"model": {"variant": "obbdet_micro", "image_size": 64, **detector.spec},
                     "state_dict": detector.state_dict(), "ema_state_dict": None}, ckpt)
    out = tmp_path / "heading.onnx"
    assert export.main([str(ckpt), "--out", str(out), "--pre-nms-topk", "30"]) == 0
    onnx_detector = OnnxDetector(out)
    assert onnx_detector.has_heading and onnx_detector.meta["weights"] == "raw"
    images = scenes(2, 64, 96)
    with torch.inference_mode():
        eager = detector.predict(images, score_threshold=0.0, nms_iou=1.0, vote_iou=0.0, pre_nms_topk=30)
    exported = onnx_detector.predict(images, score_threshold=0.0, nms_iou=1.0, vote_iou=0.0)
    for a, b in zip(eager, exported):
        assert len(a["heading"]) == len(a["boxes"]) > 10
        offset = np.remainder(b["heading"].numpy() - b["boxes"][:, 4].numpy() + 0.1, math.pi)
        assert (offset < 0.2).all()  # heading = a or a + pi
        match({**a, "boxes": torch.cat([a["boxes"], a["heading"][:, None]], 1)},
              {**b, "boxes": torch.cat([b["boxes"], b["heading"][:, None]], 1)})


def test_metadata_round_trip(onnx_model, tiny_checkpoint):
    from obbdet.checkpoint import checkpoint_inference_meta, load_checkpoint

    model = onnx.load(str(onnx_model))
    onnx.checker.check_model(model)
    stored = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    ckpt = load_checkpoint(tiny_checkpoint)
    expected = checkpoint_inference_meta(ckpt)
    for key in ("class_names", "vehicle_width", "width_scale", "length_scale", "nms_iou", "operating_point"):
        assert stored[key] == expected[key], key
    assert stored["pre_nms_topk"] == (ckpt.get("pre_nms_topk") or 1000)
    assert stored["stride"] == 32 and stored["weights"] == "ema" and stored["heading"] is False
    import obbdet

    assert stored["obbdet_version"] == obbdet.__version__
    # what the Predictor takes from the file alone
    predictor = Predictor.from_checkpoint(onnx_model, "cpu")
    torch_info = Predictor.from_checkpoint(tiny_checkpoint, "cpu")
    assert predictor.class_names == torch_info.class_names
    assert predictor.train_vehicle_width == pytest.approx(torch_info.train_vehicle_width)
    assert predictor.options.nms_iou == torch_info.options.nms_iou
    assert predictor.operating_point == torch_info.operating_point
    # dynamic axes: batch, height and width
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]


def test_bad_files_are_refused_in_one_line_naming_the_file(onnx_model, tmp_path):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(onnx_model.read_bytes()[:5000])
    text = tmp_path / "notes.onnx"
    text.write_text("not a model\n")
    bare = tmp_path / "bare.onnx"  # a valid ONNX model without obbdet's metadata
    model = onnx.load(str(onnx_model))
    del model.metadata_props[:]
    onnx.save(model, str(bare))
    for path, words in ((truncated, "not a readable ONNX model"), (text, "not a readable ONNX model"),
                        (bare, "without obbdet metadata"), (tmp_path / "missing.onnx", "not found")):
        with pytest.raises(InferenceSetupError) as err:
            Predictor.from_checkpoint(path, "cpu")
        assert str(path) in str(err.value) and words in str(err.value) and "\n" not in str(err.value)


def test_options_the_export_cannot_honour_are_refused(onnx_model, tiny_checkpoint, tmp_path):
    with pytest.raises(InferenceSetupError, match="pre_nms_topk=1000"):
        Predictor.from_checkpoint(onnx_model, "cpu", pre_nms_topk=5000)
    with pytest.raises(InferenceSetupError, match="EMA weights"):
        Predictor.from_checkpoint(onnx_model, "cpu", use_ema=False)
    with pytest.raises(InferenceSetupError, match="torch backend"):
        Predictor.from_checkpoint(onnx_model, "cpu", precision="bf16")
    with pytest.raises(ValueError, match="not a multiple of the network stride"):
        OnnxDetector(onnx_model).predict(torch.rand(1, 3, 100, 64))
    # fewer candidates than exported: the first ones of each class
    detector = OnnxDetector(onnx_model)
    few = detector.predict(torch.rand(1, 3, 64, 64), score_threshold=0.0, pre_nms_topk=5)[0]
    assert 0 < len(few["boxes"]) <= 5 * len(detector.class_names)
    # the raw weights, on request
    raw = tmp_path / "raw.onnx"
    assert export.main([str(tiny_checkpoint), "--no-ema", "--out", str(raw), "--pre-nms-topk", "50"]) == 0
    predictor = Predictor.from_checkpoint(raw, "cpu", use_ema=False)
    assert predictor.detector.meta["weights"] == "raw" and predictor.options.pre_nms_topk == 50


def test_export_cli_errors(tmp_path, capsys):
    assert export.main([str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
