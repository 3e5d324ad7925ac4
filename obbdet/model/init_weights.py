"""Starting weights of a new detector from earlier ones (``model.init``).

``model.init`` names one of:

- ``effdet-coco``: effdet's COCO-trained checkpoint of the same variant, fetched (and cached) by effdet itself
  (``effdet.create_model(variant, pretrained=True)``);
- an obbdet checkpoint (``last.pt``, ``best-checkpoint-*.pt``): its EMA weights when it has them;
- an effdet state_dict file (e.g. the COCO file downloaded by hand, or an effdet training checkpoint: its EMA
  weights when it has them);
- a bare obbdet ``Detector.state_dict()`` file (no class names: its class head is not used).

Tensors are matched by name and shape: each one whose shape fits is copied; the class head of an obbdet
checkpoint is matched by class *name* (the rows of classes present in both are copied whatever their order, new
classes keep their fresh initialization). An effdet state_dict carries no class names, so its class head is
never used; its box head is used with its rows reordered from effdet's ``(ty, tx, th, tw)`` to obbdet's
``(tx, ty, tw, th)`` (both lay anchors out the same way: scale outer, aspect ratio inner). The obbdet-only
heads (angle, heading) come only from obbdet checkpoints.

:func:`apply_init` returns an :class:`InitReport` whose :meth:`~InitReport.table` says what was loaded,
reshaped (class-matched), left new and skipped (shape mismatch).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

EFFDET_COCO = "effdet-coco"
# the marker of obbdet.checkpoint.FORMAT, spelled out here: obbdet.checkpoint imports the detector module,
# which imports this one
_CHECKPOINT_FORMAT = "obbdet-checkpoint"
_EFFDET_PREFIXES = ("backbone.", "fpn.", "class_net.", "box_net.")
_EFFDET_BOX_ORDER = (1, 0, 3, 2)  # effdet (ty, tx, th, tw) -> obbdet (tx, ty, tw, th)


class PretrainedWeightsError(RuntimeError):
    """Starting weights (``model.pretrained``, ``model.backbone_weights``, ``model.init``) that cannot be loaded;
    the message is one line and names the setting that gives a local file."""


def one_line_reason(exc: BaseException) -> str:
    """``TypeName: first line of the message`` (at most 200 characters of it)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


@dataclass
class InitSource:
    """Weights to start from: ``state`` keyed as ``Detector.state_dict()``; ``class_names`` None when unknown."""

    description: str
    state: dict
    class_names: list[str] | None
    effdet_layout: bool = False  # box-head rows in effdet's (ty, tx, th, tw) order


@dataclass
class InitReport:
    """What :func:`apply_init` did, tensor by tensor (names as in ``Detector.state_dict()``)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    class_matched: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    skipped: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (name, source shape, model shape)
    unused: list[str] = field(default_factory=list)  # source tensors the model has no place for
    matched_classes: list[str] = field(default_factory=list)
    new_classes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self, max_names: int = 6) -> str:
        def names(items):
            items = list(items)
            shown = ", ".join(items[:max_names])
            return shown + (f", ... (+{len(items) - max_names})" if len(items) > max_names else "")

        if self.matched_classes:
            head = f"class head rows of {names(self.matched_classes)} copied"
            head += f"; new: {names(self.new_classes)}" if self.new_classes else ""
        else:
            head = ""
        rows = [("loaded", len(self.loaded), ""),
                ("reshaped (class-matched)", len(self.class_matched), head),
                ("new (left at init)", len(self.new), names(self.new)),
                ("skipped (shape mismatch)", len(self.skipped),
                 names(f"{n} {tuple(s)} -> {tuple(m)}" for n, s, m in self.skipped))]
        lines = [f"model.init: {self.source}", f"  {'tensors':<26}{'count':>6}"]
        lines += [f"  {label:<26}{count:>6}  {detail}".rstrip() for label, count, detail in rows]
        if self.unused:
            lines.append(f"  ({len(self.unused)} source tensors have no counterpart in the model: "
                         f"{names(self.unused)})")
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Reading the source
# ---------------------------------------------------------------------------------------------------

def effdet_coco_source(variant: str) -> InitSource:
    """effdet's COCO checkpoint of ``variant``, loaded by effdet (downloaded once into torch's hub cache)."""
    from effdet import create_model, get_efficientdet_config

    url = get_efficientdet_config(variant).get("url") or ""
    if not url:
        raise PretrainedWeightsError(f"model.init=effdet-coco: effdet has no COCO weights for "
                                     f"model.variant={variant}")
    try:
        net = create_model(variant, pretrained=True, pretrained_backbone=False)
    except Exception as exc:  # noqa: BLE001 - offline, proxy, HTTP or cache errors all end the same way
        raise PretrainedWeightsError(
            f"model.init=effdet-coco: cannot get effdet's COCO weights for {variant} ({one_line_reason(exc)}); "
            f"without network, fetch {url} elsewhere and pass the file: "
            f"model.init=/path/to/{url.rsplit('/', 1)[-1]}") from None
    return InitSource(f"effdet COCO weights of {variant} ({url.rsplit('/', 1)[-1]})",
                      {"net." + k: v for k, v in net.state_dict().items()}, None, effdet_layout=True)


def _tensors(state: dict) -> dict:
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _strip_prefix(state: dict, prefix: str) -> dict:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def file_source(path) -> InitSource:
    """An obbdet checkpoint, an effdet state_dict (or effdet/timm training checkpoint), or a Detector state_dict."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PretrainedWeightsError(f"model.init={path}: file not found")
    try:
        # timm/effdet training checkpoints also store their argparse arguments
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any file can be named here; each failure becomes one line
        raise PretrainedWeightsError(f"model.init={path}: cannot be loaded as weights "
                                     f"({one_line_reason(exc)})") from None
    if not isinstance(obj, dict):
        raise PretrainedWeightsError(f"model.init={path}: not a checkpoint or state_dict "
                                     f"(a {type(obj).__name__})")
    if obj.get("format") == _CHECKPOINT_FORMAT:
        if not isinstance(obj.get("state_dict"), dict) or not isinstance(obj.get("model"), dict):
            raise PretrainedWeightsError(f"model.init={path}: obbdet checkpoint without 'model' or 'state_dict'")
        ema = obj.get("ema_state_dict") is not None
        state = obj["ema_state_dict"] if ema else obj["state_dict"]
        names = list(obj["model"].get("class_names") or [])
        return InitSource(f"{path} (obbdet checkpoint, {'EMA' if ema else 'model'} weights, "
                          f"classes {', '.join(names)})", _tensors(state), names or None)
    kind = "state_dict"
    state = obj
    for key in ("state_dict_ema", "model_ema", "state_dict", "model"):  # EMA weights first
        if isinstance(obj.get(key), dict):
            state, kind = obj[key], ("EMA weights" if "ema" in key else "model weights")
            break
    state = _strip_prefix(_strip_prefix(_tensors(state), "module."), "model.")
    if state and all(k.startswith("net.") or k.startswith(("angle_predict.", "heading_predict.")) for k in state):
        return InitSource(f"{path} (obbdet state_dict without class names)", state, None)
    if state and all(k.startswith(_EFFDET_PREFIXES) for k in state):
        return InitSource(f"{path} (effdet {kind})", {"net." + k: v for k, v in state.items()}, None,
                          effdet_layout=True)
    first = ", ".join(list(state)[:3]) or "no tensors"
    raise PretrainedWeightsError(f"model.init={path}: neither an obbdet checkpoint nor an effdet state_dict "
                                 f"(keys: {first})")


def read_init_source(init: str, variant: str) -> InitSource:
    """The weights ``model.init`` names (see the module docstring)."""
    return effdet_coco_source(variant) if init == EFFDET_COCO else file_source(init)


# ---------------------------------------------------------------------------------------------------
# Loading into a detector
# ---------------------------------------------------------------------------------------------------

def _module_prefix(root: nn.Module, target: nn.Module) -> str:
    return next(name for name, module in root.named_modules() if module is target) + "."


def _prediction_conv(head_predict: nn.Module) -> nn.Module:
    """The output convolution of an effdet head's ``predict`` (separable: ``conv_pw``, else ``conv``)."""
    return head_predict.conv_pw if hasattr(head_predict, "conv_pw") else head_predict.conv


def _reorder_box_rows(value: torch.Tensor, anchors: int) -> torch.Tensor:
    shape = value.shape
    return value.reshape(anchors, 4, *shape[1:])[:, list(_EFFDET_BOX_ORDER)].reshape(shape)


@torch.no_grad()
def apply_init(detector: nn.Module, source: InitSource) -> InitReport:
    """Copy ``source`` into ``detector`` where names and shapes fit (class head by class name)."""
    report = InitReport(source.description)
    anchors = detector.anchors.num_anchors
    class_prefix = _module_prefix(detector, _prediction_conv(detector.net.class_net.predict))
    box_prefix = _module_prefix(detector, _prediction_conv(detector.net.box_net.predict))
    names = list(detector.class_names)
    src_names = source.class_names
    if src_names is None:
        report.notes.append("class head: the source has no class names, every class starts new")
    else:
        index = {name: i for i, name in enumerate(src_names)}
        pairs = [(j, index[name]) for j, name in enumerate(names) if name in index]
        report.matched_classes = [names[j] for j, _ in pairs]
        report.new_classes = [name for name in names if name not in index]
    target = detector.state_dict()
    new_state = {}
    for key, value in target.items():
        src = source.state.get(key)
        if key.startswith(class_prefix):
            if src is None or src_names is None or not report.matched_classes:
                report.new.append(key)
            elif src.shape[1:] != value.shape[1:] or src.shape[0] != anchors * len(src_names):
                report.skipped.append((key, tuple(src.shape), tuple(value.shape)))
            else:
                # rows are anchor-major: row a * num_classes + c is class c of anchor shape a
                out = value.clone().reshape(anchors, len(names), *value.shape[1:])
                src_rows = src.reshape(anchors, len(src_names), *src.shape[1:])
                for j, i in pairs:
                    out[:, j] = src_rows[:, i]
                new_state[key] = out.reshape(value.shape)
                report.class_matched.append(key)
            continue
        if src is None:
            report.new.append(key)
        elif src.shape != value.shape:
            report.skipped.append((key, tuple(src.shape), tuple(value.shape)))
        else:
            if source.effdet_layout and key.startswith(box_prefix) and src.shape[0] == anchors * 4:
                src = _reorder_box_rows(src, anchors)
            new_state[key] = src
            report.loaded.append(key)
    report.unused = [key for key in source.state if key not in target]
    if source.effdet_layout:
        report.notes.append("box head: effdet's (ty, tx, th, tw) rows reordered to obbdet's (tx, ty, tw, th)")
    _, unexpected = detector.load_state_dict(new_state, strict=False)
    assert not unexpected, unexpected  # every key was taken from detector.state_dict()
    if len(report.loaded) + len(report.class_matched) < len(target) // 2:
        report.notes.append(f"warning: fewer than half of the model's {len(target)} tensors came from the "
                            f"source: is it the same model.variant?")
    return report
