"""Self-describing checkpoints: everything needed to rebuild the detector, resume training, and run inference.

A checkpoint is a ``torch.save``'d dict, written atomically, loadable with ``weights_only=True``:

- ``format``: ``"obbdet-checkpoint"``; ``format_version``: 1; ``obbdet_version``: ``obbdet.__version__``.
- ``model``: the network spec, ``{"variant", "image_size", "effdet_config" (full effdet model config dict),
  "class_names", "heading"}``; :func:`build_detector_from_checkpoint` needs nothing else.
- ``state_dict``: model weights; ``ema_state_dict``: EMA weights or None.
- ``vehicle_width``: median short side (px) of ``main_class`` boxes as the network saw them in training (after
  augmentation), used by ``infer.py`` to rescale images; None when no such box was seen. ``main_class``.
- ``calibration``: ``{"width_scale", "length_scale", "dataset", "date", "table"}`` (factors None = not
  calibrated; see :func:`set_calibration`); ``nms_iou``: the NMS IoU
  used for validation; ``pre_nms_topk``: candidate locations per class decoded before NMS (inference uses
  both unless told otherwise).
- resume state: ``epoch`` (completed epochs), ``global_step``, ``optimizer``, ``scheduler``, ``scaler``,
  ``sampler`` (training sampler state), ``rng`` (python / numpy / torch / cuda generator states), ``best``
  (``{"metric", "value", "epoch"}``), ``width_samples`` (short sides seen so far).
- ``operating_point``: ``{"iou", "source", "scores": {class: score threshold of best F1 or None}}``, from
  the validation of the saved epoch or from calibration (``infer.py --score auto`` and ``--draw`` use it).
- ``metrics``: the last validation mAP table (``"0.50"`` .. ``"0.95"``, ``"50-95"``) and losses.
- ``config``: the full resolved run config (``obbdet.config.config_to_dict``); ``run``: ``{"name", "seed"}``.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from obbdet.io_utils import atomic_torch_save

FORMAT = "obbdet-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a usable obbdet checkpoint (one-line message naming the file)."""


def save_checkpoint(payload: dict, path) -> None:
    """Write ``payload`` (see the module docstring) atomically: a kill mid-write leaves the old file."""
    payload = dict(payload)
    payload.setdefault("format", FORMAT)
    payload.setdefault("format_version", FORMAT_VERSION)
    if "obbdet_version" not in payload:
        import obbdet

        payload["obbdet_version"] = obbdet.__version__
    atomic_torch_save(payload, path)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load an obbdet checkpoint (safely, ``weights_only=True``); raises CheckpointError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any file can be passed here; each failure becomes one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not an obbdet checkpoint (cannot be loaded: {reason[:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an obbdet checkpoint (no '{FORMAT}' format marker)")
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {ckpt['format_version']} is newer than this "
                              f"obbdet supports ({FORMAT_VERSION}); upgrade obbdet")
    for key in ("model", "state_dict"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: obbdet checkpoint without '{key}' (truncated or hand-edited?)")
    return ckpt


def build_detector_from_checkpoint(ckpt: dict, device="cpu", use_ema: bool = True):
    """The Detector stored in a loaded checkpoint (EMA weights when present and ``use_ema``), in eval mode."""
    from obbdet.model.detector import Detector

    detector = Detector(ckpt["model"])
    state = ckpt.get("ema_state_dict") if use_ema and ckpt.get("ema_state_dict") is not None else ckpt["state_dict"]
    try:
        detector.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit its model spec: {str(exc).splitlines()[0]}") from None
    detector.postprocess.nms_iou = float(ckpt.get("nms_iou") or detector.postprocess.nms_iou)
    detector.postprocess.pre_nms_topk = int(ckpt.get("pre_nms_topk") or detector.postprocess.pre_nms_topk)
    return detector.to(device).eval()


def checkpoint_inference_meta(ckpt: dict) -> dict:
    """What inference needs besides the weights: ``class_names``, ``vehicle_width``, ``width_scale``,
    ``length_scale`` (None when uncalibrated), ``nms_iou``, ``pre_nms_topk`` and ``operating_point`` (per class
    score thresholds of best F1) (None when not stored)."""
    calibration = ckpt.get("calibration") or {}
    return {"class_names": list(ckpt["model"]["class_names"]), "vehicle_width": ckpt.get("vehicle_width"),
            "width_scale": calibration.get("width_scale"), "length_scale": calibration.get("length_scale"),
            "nms_iou": ckpt.get("nms_iou"), "pre_nms_topk": ckpt.get("pre_nms_topk"),
            "operating_point": (ckpt.get("operating_point") or {}).get("scores")}


def operating_point_record(scores: dict, source: str, iou: str = "0.50") -> dict:
    """``ckpt["operating_point"]``: per class the score threshold with the best F1 at IoU ``iou`` (None where
    unknown), and where it was measured (``source``)."""
    return {"iou": iou, "source": source,
            "scores": {str(k): (None if v is None else float(v)) for k, v in scores.items()}}


def set_calibration(path, width_scale: float | None, length_scale: float | None = None, *,
                    dataset: str | None = None, table: list | dict | None = None,
                    operating_point: dict | None = None) -> dict:
    """Store calibration factors in a checkpoint file, atomically, and return what was stored.

    ``ckpt["calibration"]`` becomes ``{"width_scale", "length_scale", "dataset", "date", "table"}``: the
    factors inference applies to every box's short / long side (None: not calibrated, 1.0 is used), the name
    of the data they were measured on, when (ISO 8601, UTC) and the sweep they were picked from (rows of
    plain numbers and strings, so the file still loads with ``weights_only=True``). A shipped checkpoint thus
    says where its factors come from. Any earlier calibration is replaced, not combined: factors are
    measured on detections made without one. ``operating_point`` (:func:`operating_point_record`), when
    given, replaces the checkpoint's per-class score thresholds.
    """
    from datetime import datetime, timezone

    factors = {}
    for name, value in (("width_scale", width_scale), ("length_scale", length_scale)):
        if value is not None:
            value = float(value)
            if not (value > 0 and value < float("inf")):
                raise ValueError(f"{name} must be a positive number, got {value}")
        factors[name] = value
    ckpt = load_checkpoint(path)
    ckpt["calibration"] = {**factors, "dataset": None if dataset is None else str(dataset),
                           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "table": table}
    if operating_point is not None:  # measured with the factors applied: it replaces the validation one
        ckpt["operating_point"] = operating_point
    save_checkpoint(ckpt, path)
    return dict(ckpt["calibration"])


# ---------------------------------------------------------------------------------------------------
# Random generator states (stored without numpy objects so that weights_only loading works)
# ---------------------------------------------------------------------------------------------------

def capture_rng_state() -> dict:
    """Python, numpy, torch (and CUDA) generator states."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
