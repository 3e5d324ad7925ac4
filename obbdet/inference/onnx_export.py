"""Exporting a checkpoint to ONNX: the graph of ``ExportGraph`` plus the checkpoint's inference metadata.

The ``.onnx`` file is self-describing like a checkpoint: ``infer.py model.onnx`` and
``Predictor.from_checkpoint("model.onnx")`` need nothing else (``obbdet.inference.onnx_backend`` reads it).

Exporter: torch's TorchScript-based ``torch.onnx.export(..., dynamo=False)``. The dynamo exporter needs
``onnxscript``, which obbdet does not depend on; the traced graph has dynamic batch, height and width (the
anchors are built from the input's shape in the graph) and is checked with ``onnx.checker``.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch

from obbdet.inference.onnx_backend import FORMAT, FORMAT_VERSION, INPUT_NAME, METADATA_KEY

DEFAULT_OPSET = 17
MIN_OPSET = 11  # TopK with a K input, Range, dynamic Resize


class ExportError(RuntimeError):
    """The export failed (one-line message)."""


def onnx_metadata(ckpt: dict, detector, use_ema: bool, pre_nms_topk: int, source) -> dict:
    """The JSON record stored under ``metadata_props["obbdet"]`` (see ``onnx_backend.read_metadata``)."""
    import obbdet
    from obbdet.checkpoint import checkpoint_inference_meta

    cfg = detector.spec["effdet_config"]
    calibration = ckpt.get("calibration") or {}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "obbdet_version": obbdet.__version__,
            **checkpoint_inference_meta(ckpt),
            "pre_nms_topk": int(pre_nms_topk), "stride": int(detector.stride), "heading": bool(detector.has_heading),
            "anchors": {"min_level": int(cfg["min_level"]), "max_level": int(cfg["max_level"]),
                        "num_scales": int(cfg["num_scales"]), "aspect_ratios": list(cfg["aspect_ratios"]),
                        "anchor_scale": float(cfg["anchor_scale"])},
            "variant": cfg.get("name"), "image_size": ckpt["model"].get("image_size"),
            "weights": "ema" if use_ema and ckpt.get("ema_state_dict") is not None else "raw",
            "checkpoint": Path(source).name, "checkpoint_obbdet_version": ckpt.get("obbdet_version"),
            "calibration_dataset": calibration.get("dataset"), "calibration_date": calibration.get("date"),
            "input": f"{INPUT_NAME} [B, 3, H, W] float32 RGB in [0, 1], H and W multiples of the stride"}
    json.dumps(meta)  # plain values only (fails loudly here rather than in the file)
    return meta


def export_onnx(checkpoint, out, *, opset: int = DEFAULT_OPSET, use_ema: bool = True,
                pre_nms_topk: int | None = None, sample_size: int | None = None) -> dict:
    """Write ``checkpoint``'s detector as an ONNX model at ``out`` (atomically) and return its metadata record.

    ``pre_nms_topk``: candidate locations per class kept in the graph (default: the checkpoint's, else 1000);
    ``sample_size``: side of the square trace input (default: the checkpoint's training image size, rounded to
    the stride; any multiple of the stride works at run time). Raises ExportError or ``CheckpointError`` (one
    line).
    """
    import onnx

    from obbdet.checkpoint import build_detector_from_checkpoint, load_checkpoint
    from obbdet.io_utils import atomic_write_bytes
    from obbdet.model.export_graph import ExportGraph

    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old for this graph; use {MIN_OPSET} or newer")
    ckpt = load_checkpoint(checkpoint)
    detector = build_detector_from_checkpoint(ckpt, device="cpu", use_ema=use_ema, source=checkpoint)
    topk = int(pre_nms_topk or detector.postprocess.pre_nms_topk)
    graph = ExportGraph(detector, topk)
    stride = detector.stride
    side = int(sample_size or ckpt["model"].get("image_size") or 4 * stride)
    side = max(stride, -(-side // stride) * stride)
    sample = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    names = graph.output_names
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # the tracer warns about Python values taken from shapes (the size checks); they do not enter the graph
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, (sample,), buffer, dynamo=False, opset_version=int(opset),
                              input_names=[INPUT_NAME], output_names=names,
                              dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                                            **{name: {0: "batch"} for name in names}})
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds; report one line
        raise ExportError(f"torch.onnx.export failed for {checkpoint} at opset {opset}: "
                          f"{' '.join(str(exc).split())[:300]}") from None
    model = onnx.load_from_string(buffer.getvalue())
    meta = onnx_metadata(ckpt, detector, use_ema, topk, checkpoint)
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(meta), "obbdet_version": meta["obbdet_version"]})
    model.doc_string = (f"obbdet {meta['variant']} oriented-box detector: {meta['input']} -> scores [B, k, C], "
                        "boxes [B, k, C, 5] le90 xywha (radians, pixels)"
                        + (", heading [B, k, C] radians" if meta["heading"] else "")
                        + f"; k = {topk} best locations per class; apply the score threshold and rotated NMS after")
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported graph fails onnx.checker: {' '.join(str(exc).split())[:300]}") from None
    atomic_write_bytes(out, model.SerializeToString())
    return meta
