"""Running an exported ``.onnx`` detector with ONNX Runtime, behind the interface the pipeline expects.

``tools/export.py`` writes the graph of :class:`obbdet.model.export_graph.ExportGraph` (network, normalization,
anchors for the input's size, per-class top-k candidates and their decoding to le90 xywha boxes) and, in the
model's ``metadata_props``, what inference needs from the checkpoint (:func:`read_metadata`). An
:class:`OnnxDetector` has the ``predict`` / ``stride`` / ``device`` of an obbdet ``Detector``: the score threshold
and the exact rotated NMS run after the graph with the same code as the PyTorch path
(``PostProcessor.candidates_from_top`` and ``suppress``), so ``Predictor``, ``infer.py`` and the folder runner work
unchanged.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from obbdet.inference.options import InferenceSetupError

logger = logging.getLogger(__name__)

METADATA_KEY = "obbdet"  # metadata_props entry holding the JSON record below
FORMAT = "obbdet-onnx"
FORMAT_VERSION = 1
INPUT_NAME = "images"
# keys of the JSON record, beside "format", "format_version" and "obbdet_version"
INFO_KEYS = ("class_names", "vehicle_width", "width_scale", "length_scale", "nms_iou", "pre_nms_topk",
             "operating_point")
MODEL_KEYS = ("stride", "heading", "anchors", "variant", "weights")


class OnnxModelError(ValueError):
    """A file that is not a usable obbdet ONNX export (one line naming the file)."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text or type(exc).__name__)[:200]


def providers_for(device: str) -> list:
    """ONNX Runtime execution providers for a device string (``cpu``, ``cuda``, ``cuda:N``)."""
    import onnxruntime as ort

    kind, _, index = str(device).partition(":")
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise InferenceSetupError(f"device {device}: this onnxruntime has no CUDA provider (available: "
                                      f"{', '.join(ort.get_available_providers())}); use --device cpu")
        return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"]
    raise InferenceSetupError(f"device {device!r}: the onnxruntime backend runs on cpu or cuda[:N]")


def default_device() -> str:
    """``cuda`` when this onnxruntime has the CUDA provider and torch sees a GPU, else ``cpu`` (the plain
    ``onnxruntime`` package is CPU-only: a GPU machine still runs the export on its CPU by default)."""
    import onnxruntime as ort

    return "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available() \
        else "cpu"


def open_session(path, device: str = "cpu", threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` of ``path``; raises OnnxModelError (one line) for a missing, truncated
    or corrupt file. ``threads``: intra-op threads (default: torch's, which ``infer.py --threads`` sets)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"{path}: ONNX model file not found")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the exporter's unused-initializer notes are noise
    try:
        return ort.InferenceSession(str(path), options, providers=providers_for(device))
    except InferenceSetupError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own classes for every kind of bad file
        raise OnnxModelError(f"{path}: not a readable ONNX model ({_one_line(exc)})") from None


def read_metadata(session, source) -> dict:
    """The obbdet record stored in a session's model metadata; OnnxModelError when absent or malformed."""
    from obbdet.checkpoint import check_format

    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise OnnxModelError(f"{source}: an ONNX model without obbdet metadata (not written by tools/export.py)")
    try:
        meta = json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise OnnxModelError(f"{source}: its obbdet metadata is not valid JSON ({exc})") from None
    check_format(meta, FORMAT, FORMAT_VERSION, source, "its obbdet metadata is not an obbdet ONNX record",
                 "obbdet ONNX", OnnxModelError)
    missing = [key for key in INFO_KEYS + MODEL_KEYS if key not in meta]
    if missing:
        raise OnnxModelError(f"{source}: its obbdet metadata lacks {', '.join(missing)}")
    return meta


class OnnxDetector:
    """An exported detector run by ONNX Runtime, with ``predict``, ``stride``, ``device`` and ``class_names`` as
    an obbdet ``Detector``.

    ``pre_nms_topk`` is fixed in the graph (the export's ``--pre-nms-topk``): a smaller value per call keeps the
    first candidates of each class (the graph sorts them), a larger one raises ValueError.
    """

    def __init__(self, path, device: str = "cpu", threads: int | None = None):
        from obbdet.model.anchors import AnchorGenerator
        from obbdet.model.postprocess import PostProcessor

        self.path = Path(path)
        self.session = open_session(self.path, device, threads)
        self.meta = read_metadata(self.session, self.path)
        self.class_names = list(self.meta["class_names"])
        self.num_classes = len(self.class_names)
        self.has_heading = bool(self.meta["heading"])
        self.exported_topk = int(self.meta["pre_nms_topk"])
        self.anchors = AnchorGenerator(**self.meta["anchors"])
        self.postprocess = PostProcessor(nms_iou=float(self.meta["nms_iou"] or 0.4),
                                         pre_nms_topk=self.exported_topk,
                                         anchors_per_location=self.anchors.num_anchors)
        self.device = "cpu" if self.session.get_providers()[0] == "CPUExecutionProvider" else str(device)
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        expected = ["scores", "boxes"] + (["heading"] if self.has_heading else [])
        if inputs != [INPUT_NAME] or outputs != expected:
            raise OnnxModelError(f"{self.path}: graph inputs {inputs} / outputs {outputs} are not those of an obbdet "
                                 f"export ([{INPUT_NAME!r}] / {expected})")

    @property
    def stride(self) -> int:
        """Input sides must be multiples of this."""
        return int(self.meta["stride"])

    def eval(self):  # the Predictor puts detectors in eval mode; a graph has no training mode
        return self

    def __repr__(self) -> str:
        return f"OnnxDetector({self.path}, {self.meta['variant']}, providers {self.session.get_providers()})"

    def check_topk(self, pre_nms_topk: int | None) -> int:
        """The candidates per class to use for ``pre_nms_topk`` (None: the export's); ValueError above it."""
        if pre_nms_topk is None:
            return self.exported_topk
        if pre_nms_topk > self.exported_topk:
            raise ValueError(f"{self.path} was exported with pre_nms_topk={self.exported_topk} candidates per class; "
                             f"{pre_nms_topk} asked: export again with tools/export.py --pre-nms-topk {pre_nms_topk}")
        return int(pre_nms_topk)

    def raw(self, images: torch.Tensor) -> list[np.ndarray]:
        """The graph's outputs (``scores [B, k, C]``, ``boxes [B, k, C, 5]``, ``heading [B, k, C]``) for images
        ``[B, 3, H, W]`` float32 RGB in ``[0, 1]``."""
        self.anchors.check_size(images.shape[-2], images.shape[-1])
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        return self.session.run(None, {INPUT_NAME: array})

    def predict(self, images: torch.Tensor, score_threshold: float = 0.05, max_det_per_image: int = 1000,
                nms_iou: float | None = None, pre_nms_topk: int | None = None, vote_iou: float | None = None,
                tta: str = "none") -> list[dict]:
        """Detections for images ``[B, 3, H, W]`` float32 RGB in ``[0, 1]`` (H, W multiples of ``stride``), as
        ``Detector.predict``: per image ``boxes [K, 5]`` float32 xywha (le90, radians, input pixels), ``scores
        [K]``, ``labels [K]`` int64, ``heading [K]`` with a heading head; sorted by score. ``vote_iou`` and
        ``tta`` as there (the views run through the graph one after another)."""
        from obbdet.model.tta import predict_views

        k = self.check_topk(pre_nms_topk)
        nms_iou, max_det, vote_iou = self.postprocess.settings(nms_iou, max_det_per_image, vote_iou)

        def candidates_of(views: torch.Tensor) -> list[dict]:
            fh_fw = self.anchors.feature_sizes(views.shape[-2], views.shape[-1])
            num_locations = sum(h * w for h, w in fh_fw)
            outputs = [torch.from_numpy(array) for array in self.raw(views)]
            scores, boxes = outputs[0][:, :k], outputs[1][:, :k]
            heading = outputs[2][:, :k] if self.has_heading else None
            return [self.postprocess.candidates_from_top(scores[b], boxes[b], None if heading is None else heading[b],
                                                         num_locations=num_locations,
                                                         score_threshold=score_threshold, pre_nms_topk=k)
                    for b in range(scores.shape[0])]

        return predict_views(candidates_of, images, tta, nms_iou=nms_iou, max_det=max_det, vote_iou=vote_iou,
                             score_threshold=score_threshold)


def load_onnx_detector(path, device: str = "cpu", use_ema: bool = True) -> OnnxDetector:
    """An :class:`OnnxDetector` of an exported ``.onnx`` file; raises InferenceSetupError (one line).

    ``use_ema=False`` (``--no-ema``) is refused for a file holding the EMA weights: an export holds one set."""
    try:
        detector = OnnxDetector(path, device)
    except OnnxModelError as exc:
        raise InferenceSetupError(str(exc)) from None
    if not use_ema and detector.meta["weights"] == "ema":
        raise InferenceSetupError(f"{path} holds the checkpoint's EMA weights; for the raw weights export again "
                                  "with tools/export.py --no-ema")
    return detector
