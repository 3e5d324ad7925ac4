"""EfficientDet (effdet: timm backbone + BiFPN + class/box heads) with an angle head, for oriented boxes.

The network comes from ``effdet.EfficientDet`` unchanged, with two additions:

- an angle predictor (and optionally a heading predictor) on the box head's tower: the box tower's features
  already localize the object, the extra output conv predicts ``(cos 2a, sin 2a)`` per anchor
  (``obbdet.model.coder``);
- size-agnostic resampling: effdet builds its BiFPN up/down-sampling layers for one fixed ``image_size``
  (``F.interpolate(size=...)``); they are switched to the equivalent scale factors so the trained network
  accepts any input whose sides are multiples of the stride ``2 ** max_level`` (128 for levels 3-7, 32 for
  obbdet's small variants with levels 3-5). Anchors are generated per input size (and cached).

``Detector.forward`` takes images ``[B, 3, H, W]`` float RGB in ``[0, 1]`` and normalizes them itself.
"""
from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

import torch
import torch.nn as nn

with warnings.catch_warnings():
    # effdet's loss module runs torch.jit.script at import time, which recent torch flags as deprecated
    warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit\.script.*")
    from effdet import EfficientDet, get_efficientdet_config
    from effdet.config.model_config import efficientdet_model_param_dict
    from effdet.efficientdet import ConvBnAct2d, Interpolate2d, ResampleFeatureMap, SeparableConv2d, _init_weight

from obbdet.model.anchors import AnchorGenerator, AnchorSet
from obbdet.model.coder import ANGLE_DIM, DELTA_DIM, HEADING_DIM
from obbdet.model.init_weights import (
    EFFDET_COCO, PretrainedWeightsError, apply_init, one_line_reason, read_init_source,
)
from obbdet.model.postprocess import PostProcessor

logger = logging.getLogger(__name__)

# obbdet's own small variants: an effdet base config plus overrides. Vehicles in aerial images are small, so
# these keep pyramid levels 3-5 (strides 8-32, input sides multiples of 32) and a lighter BiFPN; they train
# from scratch on a CPU.
MODEL_VARIANTS: dict[str, tuple[str, dict]] = {
    # the quickstart model: RegNetX-200MF (plain convs + BN + ReLU train fast from scratch), BiFPN 64 x 2
    "obbdet_tiny": ("tf_efficientdet_d0", dict(
        backbone_name="regnetx_002", backbone_args=dict(drop_path_rate=0.0),
        max_level=5, fpn_channels=64, fpn_cell_repeats=2, box_class_repeats=2,
        aspect_ratios=[1.0, 2.0, 0.5], num_scales=3, anchor_scale=3.0)),
    "obbdet_small": ("tf_efficientdet_d0", dict(
        backbone_name="regnetx_004", backbone_args=dict(drop_path_rate=0.0),
        max_level=5, fpn_channels=88, fpn_cell_repeats=3, box_class_repeats=3,
        aspect_ratios=[1.0, 2.0, 0.5], num_scales=3, anchor_scale=3.0)),
    "obbdet_micro": ("tf_efficientdet_d0", dict(  # unit tests: a few MFLOPs
        backbone_name="mobilenetv3_small_050", backbone_args=dict(drop_path_rate=0.0),
        max_level=5, fpn_channels=16, fpn_cell_repeats=1, box_class_repeats=1,
        aspect_ratios=[1.0, 2.0, 0.5], num_scales=1, anchor_scale=3.0)),
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def available_variants() -> list[str]:
    """Every model variant name: obbdet's small variants and effdet's named models."""
    return sorted(MODEL_VARIANTS) + sorted(efficientdet_model_param_dict)


def build_effdet_config(model_cfg, num_classes: int) -> dict:
    """The effdet model config (a plain dict) for a ``ModelConfig`` and a class count."""
    from omegaconf import OmegaConf

    variant = model_cfg.variant
    base, overrides = MODEL_VARIANTS.get(variant, (variant, {}))
    if base not in efficientdet_model_param_dict:
        raise ValueError(f"unknown model variant {variant!r}; choose one of {', '.join(available_variants())}")
    cfg = OmegaConf.to_container(get_efficientdet_config(base), resolve=True)
    cfg.update(copy.deepcopy(overrides))
    cfg["name"] = variant
    cfg["num_classes"] = int(num_classes)
    cfg["image_size"] = [int(model_cfg.image_size)] * 2
    for key in ("fpn_channels", "fpn_cell_repeats", "box_class_repeats", "anchor_scale", "num_scales"):
        value = getattr(model_cfg, key)
        if value is not None:
            cfg[key] = value
    if model_cfg.aspect_ratios is not None:
        cfg["aspect_ratios"] = list(model_cfg.aspect_ratios)
    if model_cfg.drop_path_rate is not None:
        cfg["backbone_args"] = dict(cfg.get("backbone_args") or {}, drop_path_rate=model_cfg.drop_path_rate)
    cfg["num_levels"] = cfg["max_level"] - cfg["min_level"] + 1
    cfg.pop("url", None)
    return cfg


def _make_resampling_size_agnostic(module: nn.Module) -> None:
    """Replace effdet's fixed-size interpolations with scale factors (exact for stride-multiple inputs)."""

    for resample in module.modules():
        if not isinstance(resample, ResampleFeatureMap):
            continue
        (in_h, in_w), (out_h, out_w) = resample.input_size, resample.output_size
        for child in resample.children():
            if isinstance(child, Interpolate2d) and child.size is not None:
                child.size = None
                child.scale_factor = (float(out_h) / in_h, float(out_w) / in_w)


def _head_tower(head: nn.Module, features: list[torch.Tensor]) -> list[torch.Tensor]:
    """The conv/BN/act repeats of an effdet ``HeadNet`` without its final prediction conv."""
    outputs = []
    for level, x in enumerate(features):
        for rep, conv in enumerate(head.conv_rep):
            bn = head.bn_rep[level][rep] if head.bn_level_first else head.bn_rep[rep][level]
            x = head.act(bn(conv(x)))
        outputs.append(x)
    return outputs


def _flatten_levels(per_level: list[torch.Tensor], values_per_anchor: int) -> torch.Tensor:
    """``[B, k*K, h, w]`` per level -> ``[B, A, K]`` in anchor order (level, row, column, anchor)."""
    batch = per_level[0].shape[0]
    return torch.cat([x.permute(0, 2, 3, 1).reshape(batch, -1, values_per_anchor) for x in per_level], dim=1)


class Detector(nn.Module):
    """Oriented-box EfficientDet.

    spec: ``{"effdet_config": dict, "class_names": [...], "heading": bool}`` — everything needed to rebuild the
    network (stored in checkpoints). ``backbone_weights``: optional local file of timm backbone weights;
    ``pretrained_backbone`` without it: the backbone's ImageNet weights through timm (downloaded and cached).
    """

    def __init__(self, spec: dict, backbone_weights: str = "", pretrained_backbone: bool = False):
        super().__init__()
        from omegaconf import OmegaConf

        self.spec = copy.deepcopy(spec)
        cfg = dict(spec["effdet_config"])
        self.class_names = list(spec["class_names"])
        self.num_classes = len(self.class_names)
        self.has_heading = bool(spec.get("heading", False))
        effdet_cfg = OmegaConf.create(cfg)
        if backbone_weights:
            effdet_cfg.backbone_args = dict(effdet_cfg.backbone_args or {},
                                            pretrained_cfg_overlay=dict(file=str(_check_weights(backbone_weights))))
            self.net = EfficientDet(effdet_cfg, pretrained_backbone=True)
        elif pretrained_backbone:
            try:
                self.net = EfficientDet(effdet_cfg, pretrained_backbone=True)
            except Exception as exc:  # noqa: BLE001 - offline, hub, HTTP or cache errors all end the same way
                raise PretrainedWeightsError(
                    f"model.pretrained=true: cannot get the ImageNet weights of backbone {cfg['backbone_name']} "
                    f"through timm ({one_line_reason(exc)}); without network, pass a local file: "
                    f"model.backbone_weights=PATH") from None
        else:
            self.net = EfficientDet(effdet_cfg, pretrained_backbone=False)
        _make_resampling_size_agnostic(self.net.fpn)
        self.anchors = AnchorGenerator(cfg["min_level"], cfg["max_level"], cfg["num_scales"],
                                       cfg["aspect_ratios"], cfg["anchor_scale"])
        self.angle_predict = self._prediction_conv(cfg, ANGLE_DIM)
        self.heading_predict = self._prediction_conv(cfg, HEADING_DIM) if self.has_heading else None
        for name, module in self.named_modules():
            if name.startswith(("angle_predict", "heading_predict")):
                _init_weight(module, "box_net." + name)  # regression-head init, as effdet's box_net
        mean = cfg.get("mean") or IMAGENET_MEAN
        std = cfg.get("std") or IMAGENET_STD
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.postprocess = PostProcessor(anchors_per_location=self.anchors.num_anchors)

    def _prediction_conv(self, cfg: dict, values_per_anchor: int) -> nn.Module:

        conv_fn = SeparableConv2d if cfg["separable_conv"] else ConvBnAct2d
        return conv_fn(in_channels=cfg["fpn_channels"], out_channels=values_per_anchor * self.anchors.num_anchors,
                       kernel_size=3, padding=cfg["pad_type"], bias=True, norm_layer=None, act_layer=None)

    @property
    def stride(self) -> int:
        """Input sides must be multiples of this (``2 ** max_level``: 128 for levels 3-7)."""
        return self.anchors.stride

    @property
    def backbone(self) -> nn.Module:
        return self.net.backbone

    def anchors_for(self, height: int, width: int) -> AnchorSet:
        """The anchors (``.boxes [A, 4]`` xyxy and their layout) of a ``height x width`` input, cached."""
        return self.anchors.anchors(height, width, self.pixel_mean.device)

    def forward(self, images: torch.Tensor) -> dict:
        """Raw outputs for images ``[B, 3, H, W]`` float RGB in ``[0, 1]`` (H, W multiples of ``stride``).

        Returns ``cls_logits [B, A, C]``, ``box_deltas [B, A, 4]``, ``angle_vec [B, A, 2]`` and, with a heading
        head, ``heading_vec [B, A, 2]`` (A anchors in ``anchors_for(H, W)`` order; encodings in
        ``obbdet.model.coder``).
        """
        self.anchors.check_size(images.shape[-2], images.shape[-1])
        x = (images - self.pixel_mean.to(images.dtype)) / self.pixel_std.to(images.dtype)
        features = self.net.fpn(self.net.backbone(x))
        box_tower = _head_tower(self.net.box_net, features)
        outputs = {
            "cls_logits": _flatten_levels(self.net.class_net(features), self.num_classes),
            "box_deltas": _flatten_levels([self.net.box_net.predict(f) for f in box_tower], DELTA_DIM),
            "angle_vec": _flatten_levels([self.angle_predict(f) for f in box_tower], ANGLE_DIM),
        }
        if self.heading_predict is not None:
            outputs["heading_vec"] = _flatten_levels([self.heading_predict(f) for f in box_tower], HEADING_DIM)
        return outputs

    @torch.no_grad()
    def predict(self, images: torch.Tensor, score_threshold: float = 0.05, max_det_per_image: int = 1000,
                nms_iou: float | None = None, pre_nms_topk: int | None = None, vote_iou: float | None = None,
                tta: str = "none") -> list[dict]:
        """Detections for images ``[B, 3, H, W]`` float32 RGB in ``[0, 1]``, H and W multiples of ``stride``.

        Returns one dict per image: ``boxes [K, 5]`` float32 xywha (le90: w the long side, a in radians in
        ``[-pi/2, pi/2)``, clockwise on screen) in pixels of the input, ``scores [K]`` float32, ``labels [K]``
        int64 (indices into ``class_names``), plus ``heading [K]`` with a heading head; sorted by score.
        ``nms_iou``, ``pre_nms_topk``, ``vote_iou`` (box voting, 0: plain NMS): None for the post-processor's.
        ``tta``: test-time augmentation (``obbdet.model.tta.VIEWS``: none, flip, rot4, d8).
        Runs in eval mode (the previous mode is restored).
        """
        from obbdet.model.tta import predict_views

        was_training = self.training
        self.eval()

        def candidates_of(views: torch.Tensor) -> list[dict]:
            outputs = self(views)
            anchors = self.anchors_for(views.shape[-2], views.shape[-1])
            return self.postprocess.candidates(outputs, anchors, score_threshold, pre_nms_topk)

        try:
            nms_iou, max_det, vote_iou = self.postprocess.settings(nms_iou, max_det_per_image, vote_iou)
            return predict_views(candidates_of, images, tta, nms_iou=nms_iou, max_det=max_det, vote_iou=vote_iou,
                                 score_threshold=score_threshold)
        finally:
            self.train(was_training)

    def set_backbone_frozen(self, frozen: bool) -> None:
        """Freeze (no gradients, BatchNorm statistics fixed) or unfreeze the backbone."""
        for param in self.net.backbone.parameters():
            param.requires_grad_(not frozen)
        self._backbone_frozen = frozen
        if frozen:
            self.net.backbone.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and getattr(self, "_backbone_frozen", False):
            self.net.backbone.eval()
        return self


def _check_weights(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(f"model.backbone_weights={path}: file not found")
    return path


def build_detector(model_cfg, class_names: list[str], heading: bool = False, *, load_weights: bool = True,
                   verbose: bool = True) -> Detector:
    """A new Detector from a ``ModelConfig``, with its starting weights.

    ``model.backbone_weights`` (a local timm state_dict) or ``model.pretrained`` (timm's ImageNet weights) set the
    backbone; then ``model.init`` (``obbdet.model.init_weights``) loads whatever fits from an obbdet checkpoint, an
    effdet state_dict or ``effdet-coco``, and its table (loaded / class-matched / new / skipped) is printed when
    ``verbose``. ``load_weights=False`` skips all of these: a resumed run restores every weight from its own
    checkpoint. Raises PretrainedWeightsError (one line) when starting weights cannot be had.
    """
    init = model_cfg.init or ""
    if load_weights and init == EFFDET_COCO and model_cfg.variant in MODEL_VARIANTS:
        raise PretrainedWeightsError(f"model.init=effdet-coco: effdet has no COCO weights for obbdet's own "
                                     f"variant {model_cfg.variant}; use an effdet variant "
                                     f"(model.variant=tf_efficientdet_d0, ...) or model.init=PATH")
    spec = {"effdet_config": build_effdet_config(model_cfg, len(class_names)), "class_names": list(class_names),
            "heading": bool(heading)}
    stride = 2 ** spec["effdet_config"]["max_level"]
    if model_cfg.image_size % stride:
        raise ValueError(f"model.image_size={model_cfg.image_size} is not a multiple of the network stride {stride}")
    if not load_weights:
        return Detector(spec)
    detector = Detector(spec, backbone_weights=model_cfg.backbone_weights,
                        pretrained_backbone=bool(model_cfg.pretrained))
    if init:
        report = apply_init(detector, read_init_source(init, model_cfg.variant))
        detector.init_report = report
        if verbose:
            print(report.table(), flush=True)
    return detector
