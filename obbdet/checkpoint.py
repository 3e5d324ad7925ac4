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
    check_format(ckpt, FORMAT, FORMAT_VERSION, path, "not an obbdet checkpoint", "checkpoint")
    for key in ("model", "state_dict"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: obbdet checkpoint without '{key}' (truncated or hand-edited?)")
    check_model_spec(ckpt, path, complete=False)  # the network is rebuilt (and needs all of it) elsewhere
    return ckpt


def check_format(record, marker: str, version: int, source, refusal: str, kind: str,
                 error: type[Exception] = CheckpointError) -> None:
    """Raise ``error`` (one line starting with ``source``) unless ``record`` is a dict whose ``format`` is
    ``marker`` and whose ``format_version`` is at most ``version`` (what this obbdet reads): ``"{source}:
    {refusal} (no '{marker}' format marker)"`` or ``"{source}: {kind} format version N is newer ..."``."""
    if not isinstance(record, dict) or record.get("format") != marker:
        raise error(f"{source}: {refusal} (no '{marker}' format marker)")
    if int(record.get("format_version", 0)) > version:
        raise error(f"{source}: {kind} format version {record['format_version']} is newer than this obbdet "
                    f"supports ({version}); upgrade obbdet")


# the last layer of effdet's class head: its output channels are anchors per cell x classes
_CLASS_HEAD_PREFIX = "net.class_net.predict."


def _class_head_outputs(state: dict, anchors_per_cell: int) -> int | None:
    """Classes the class head of ``state`` predicts (None when the state does not tell)."""
    weights = [v for k, v in state.items()
               if k.startswith(_CLASS_HEAD_PREFIX) and k.endswith(".weight") and getattr(v, "ndim", 0) == 4]
    if not weights or anchors_per_cell <= 0 or weights[-1].shape[0] % anchors_per_cell:
        return None
    return weights[-1].shape[0] // anchors_per_cell  # the pointwise conv (after the depthwise one) when separable


def check_model_spec(ckpt: dict, source="checkpoint", complete: bool = True) -> None:
    """Raise CheckpointError (one line naming ``source``) when the model spec of ``ckpt`` disagrees with its own
    weights (a class list whose length is not the class head's number of outputs: inference would index past
    the list), lacks its class list, or, with ``complete``, lacks the ``model.effdet_config`` that rebuilding
    the network needs."""
    spec = ckpt.get("model")
    if not isinstance(spec, dict):
        raise CheckpointError(f"{source}: its 'model' entry is not a model spec (a dict), got {type(spec).__name__}")
    for key, kind in (("class_names", (list, tuple)), ("effdet_config", dict)):
        if key not in spec:
            if key == "effdet_config" and not complete:
                return  # nothing to compare the class list with
            raise CheckpointError(f"{source}: no 'model.{key}' in its model spec (which has "
                                  f"{', '.join(map(repr, sorted(spec))) or 'no entries'}): the network cannot be "
                                  "rebuilt without it")
        if not isinstance(spec[key], kind):
            raise CheckpointError(f"{source}: 'model.{key}' is a {type(spec[key]).__name__}, not a "
                                  f"{'dict' if kind is dict else 'list'}")
    names, config = list(spec["class_names"]), spec["effdet_config"]
    try:
        anchors_per_cell = int(config["num_scales"]) * len(config["aspect_ratios"])
    except (KeyError, TypeError, ValueError):
        anchors_per_cell = 0  # building the network names what is missing
    for key in ("state_dict", "ema_state_dict"):
        state = ckpt.get(key)
        outputs = _class_head_outputs(state, anchors_per_cell) if isinstance(state, dict) else None
        if outputs is not None and outputs != len(names):
            raise CheckpointError(f"{source}: its class list has {len(names)} names but the class head has "
                                  f"{outputs} outputs (in '{key}'): the class list does not belong to these "
                                  "weights")
    num_classes = config.get("num_classes")
    if isinstance(num_classes, int) and num_classes != len(names):
        raise CheckpointError(f"{source}: its class list has {len(names)} names but 'model.effdet_config."
                              f"num_classes' is {num_classes}")


def _shape(tensor) -> str:
    return "[" + ", ".join(str(n) for n in getattr(tensor, "shape", ())) + "]"


def state_dict_mismatch(expected: dict, given: dict) -> str | None:
    """One line summarising how the weights ``given`` differ from a model's ``expected`` state dict (names
    and shapes), or None when they fit: missing keys, unexpected keys and shape mismatches, each counted
    with its first instance."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [k for k in expected if k in given and tuple(getattr(given[k], "shape", ())) != tuple(expected[k].shape)]
    if not (missing or unexpected or shapes):
        return None
    parts = [f"{len(missing)} missing keys" + (f" (first: {missing[0]})" if missing else ""),
             f"{len(unexpected)} unexpected" + (f" (first: {unexpected[0]})" if unexpected else ""),
             f"{len(shapes)} shape mismatches" + (f" (first: {shapes[0]} {_shape(given[shapes[0]])} in the "
                                                  f"checkpoint vs {_shape(expected[shapes[0]])} in the model)"
                                                  if shapes else "")]
    return ", ".join(parts)


def load_weights(module: torch.nn.Module, state: dict, source="checkpoint", what: str = "weights") -> None:
    """``module.load_state_dict(state)`` (strict), raising CheckpointError with one line naming ``source`` and
    summarising every difference instead of torch's multi-line RuntimeError."""
    problem = state_dict_mismatch(module.state_dict(), state)
    if problem is not None:
        raise CheckpointError(f"{source}: its {what} do not fit the model: {problem}")
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:  # e.g. a value that cannot be copied; keep the first lines, joined
        reason = " ".join(line.strip() for line in str(exc).strip().splitlines()[:3])
        raise CheckpointError(f"{source}: its {what} do not load: {reason[:300]}") from None


def build_detector_from_checkpoint(ckpt: dict, device="cpu", use_ema: bool = True, source=None):
    """The Detector stored in a loaded checkpoint (EMA weights when present and ``use_ema``), in eval mode.

    Raises CheckpointError (one line starting with ``source``, e.g. the file) when the spec is incomplete or the
    weights do not fit it."""
    from obbdet.model.detector import Detector

    source = "checkpoint" if source is None else f"checkpoint {source}"
    check_model_spec(ckpt, source)
    try:
        detector = Detector(ckpt["model"])
    except KeyError as exc:
        raise CheckpointError(f"{source}: 'model.effdet_config' lacks {exc}; it cannot rebuild the network") from None
    except Exception as exc:  # noqa: BLE001 - a hand-edited config can fail anywhere in the build: one line
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise CheckpointError(f"{source}: 'model.effdet_config' does not build a network: {reason}") from None
    use_ema = use_ema and ckpt.get("ema_state_dict") is not None
    load_weights(detector, ckpt["ema_state_dict"] if use_ema else ckpt["state_dict"], source,
                 "EMA weights ('ema_state_dict')" if use_ema else "weights ('state_dict')")
    detector.postprocess.nms_iou = float(ckpt.get("nms_iou") or detector.postprocess.nms_iou)
    detector.postprocess.pre_nms_topk = int(ckpt.get("pre_nms_topk") or detector.postprocess.pre_nms_topk)
    if ckpt.get("vote_iou") is not None:  # checkpoints written before box voting keep its default
        detector.postprocess.vote_iou = float(ckpt["vote_iou"])
    return detector.to(device).eval()


def checkpoint_inference_meta(ckpt: dict) -> dict:
    """What inference needs besides the weights: ``class_names``, ``vehicle_width``, ``width_scale``,
    ``length_scale`` (None when uncalibrated), ``nms_iou``, ``vote_iou`` (box voting), ``pre_nms_topk`` and
    ``operating_point`` (per class score thresholds of best F1) (None when not stored)."""
    calibration = ckpt.get("calibration") or {}
    return {"class_names": list(ckpt["model"]["class_names"]), "vehicle_width": ckpt.get("vehicle_width"),
            "width_scale": calibration.get("width_scale"), "length_scale": calibration.get("length_scale"),
            "nms_iou": ckpt.get("nms_iou"), "vote_iou": ckpt.get("vote_iou"), "pre_nms_topk": ckpt.get("pre_nms_topk"),
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
