"""Run configuration: frozen dataclasses, named variants, YAML defaults and ``key=value`` overrides.

A run is described by one :class:`RunConfig` made of sections (``model``, ``data``, ``loss``, ``optim``,
``schedule``, ``train``). Values are resolved in this order, later wins:

1. the dataclass defaults (they *are* the ``quickstart`` variant: ``python train.py quickstart 167`` with no
   config trains a small EfficientDet on the built-in synthetic scenes);
2. a named variant (``--config d0_512``) or a YAML file (``--config configs/d0_512.yaml``) whose top-level keys
   are section names, each a mapping of field names; a YAML file may name a ``variant:`` to start from;
3. command-line overrides ``section.field=value`` (or a bare ``field=value`` when the field name is unique
   across sections). Values are parsed as YAML scalars/lists and type-checked against the field.

Unknown keys and badly typed values raise :class:`ConfigError` with a one-line message naming the source
(file or command line), the key, and the close matches.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A configuration key or value that cannot be used (one-line message naming the source)."""


@dataclass(frozen=True)
class ModelConfig:
    """The network. ``variant`` is an effdet model name (``tf_efficientdet_d0`` .. ``d7``, ``efficientdet_lite0``,
    ``efficientdetv2_ds``, ...) or one of obbdet's small variants (see ``obbdet.model.detector.MODEL_VARIANTS``).

    ``image_size``: the square training/validation input side in pixels; must be a multiple of the network
    stride ``2 ** max_level`` (128 for levels 3-7). The trained model accepts any multiple of that stride.
    ``None`` fields keep the variant's own value.

    Starting weights (applied when a run starts, not again on ``--resume``; see ``obbdet.model.init_weights``):
    ``pretrained`` loads the backbone's ImageNet weights through timm (downloaded once and cached; offline, give
    the file as ``backbone_weights``). ``init`` then loads whatever fits from earlier weights: ``effdet-coco``
    (effdet's COCO-trained checkpoint of the same variant, downloaded and cached by effdet), or the path of an
    obbdet checkpoint (its EMA weights when present; the class head matched by class name, so classes may be
    added, dropped or reordered) or of an effdet state_dict file (everything but the class head). A table of the
    tensors loaded, class-matched, new and skipped is printed.
    """

    variant: str = "obbdet_tiny"
    image_size: int = 256
    pretrained: bool = False  # backbone ImageNet weights through timm (downloaded and cached; see backbone_weights)
    backbone_weights: str = ""  # local file with timm backbone weights (state dict), for use without network
    init: str | None = None  # effdet-coco | path of an obbdet checkpoint or effdet state_dict; None: no init
    heading: bool | None = False  # heading head (vehicle front); None: on when the training data carry headings
    fpn_channels: int | None = None
    fpn_cell_repeats: int | None = None
    box_class_repeats: int | None = None
    anchor_scale: float | None = None
    num_scales: int | None = None
    aspect_ratios: tuple[float, ...] | None = None  # width/height ratios, e.g. [1.0, 2.0, 0.5]
    drop_path_rate: float | None = None
    sync_bn: bool = False  # SyncBatchNorm under DDP
    freeze_backbone_epochs: int = 0  # backbone frozen for this many epochs; -1: always


@dataclass(frozen=True)
class DataConfig:
    """Training data. With ``registry`` empty the run uses the built-in synthetic scenes."""

    registry: str = ""  # path to a datasets_registry YAML config; "" = synthetic scenes
    synthetic_train: int = 600  # synthetic training scenes (training crops model.image_size windows of them)
    synthetic_val: int = 100  # synthetic validation scenes
    synthetic_size: int = 512  # synthetic scene side in pixels
    synthetic_seed: int = 0  # the synthetic dataset's seed (fixed, so every run sees the same validation set)
    synthetic_cache: str = ""  # where synthetic scenes are rendered; "" = $OBBDET_CACHE_DIR or ~/.cache/obbdet
    val_image_size: int = 512  # input side for the validation *loss* (images letterboxed, shrunk only when
    # larger); 0 = model.image_size. The validation mAP runs the inference path at the training scale instead.
    virtual_epoch_size: int = 1600  # samples drawn per epoch (all ranks together)
    batch_size: int = 8  # per process
    val_batch_size: int = 8
    workers: int = -1  # DataLoader workers per process; -1: automatic
    scale: float = 1.0  # images (training and validation) are resized by this before cropping / letterboxing
    vehicle_width: float | None = None  # the common training car width in px (16 suits obbdet_tiny, as the
    # quickstart scenes' 12-24 px cars): each registry dataset is resampled by vehicle_width / its car width
    # (given as vehicle_width or gsd in the registry YAML, else measured from its labels). None: no per-dataset
    # resampling. Excludes data.scale != 1; the synthetic scenes (no registry) are not resampled
    rotate_prob: float = 0.5  # probability of the random-rotation augmentation
    scale_jitter: float = 0.1  # training crops are scaled log-uniformly in [1 / (1 + j), 1 + j]. Small by design:
    # infer.py rescales images so that vehicles have the training width, so absolute size is a reliable cue
    # (car vs van, truck vs bus) that a large jitter would blur
    object_focus_prob: float = 0.8  # probability that a training crop is placed around an object (else uniform).
    # 0.8 rather than 0.5: the rare, long classes (trucks, buses) are shown more often and more often whole;
    # quickstart mAP50-95 0.595 -> 0.620 with voting, 0.679 -> 0.696 with eight views; 1.0: 0.606
    # (bench/quality.py)
    balance_focus_classes: bool = True  # that object is drawn class-balanced (rare classes as often as common)
    main_class: str = "car"  # class whose median short side is the checkpoint's vehicle width
    max_val_images: int = 0  # cap on validation images (0 = all)


@dataclass(frozen=True)
class LossConfig:
    """Anchor labeling and the criterion (see ``obbdet.model.loss``)."""

    assigner: str = "atss"  # atss (adaptive IoU threshold + centre inside the rotated box) | iou (fixed thresholds)
    atss_topk: int = 9  # ATSS candidates per GT and pyramid level
    match_iou: float = 0.5  # iou assigner: anchor-vs-GT-AABB IoU for a positive
    unmatch_iou: float = 0.4  # iou assigner: below: negative; between: ignored
    focal_alpha: float = 0.25
    focal_gamma: float = 1.5
    huber_delta: float = 0.1
    box_weight: float = 50.0
    angle_weight: float = 20.0
    heading_weight: float = 5.0
    difficult: str = "positive"  # "positive": train on difficult GT; "ignore": their anchors are ignored
    box_loss: str = "huber"  # huber (deltas only) | probiou | kld | gwd | riou: a loss on the overlap of the decoded
    # box with its GT box (loss_iou, see obbdet.model.box_losses), beside or instead of the Huber terms
    box_loss_weight: float = 5.0  # weight of loss_iou
    keep_huber: bool = True  # with an overlap box_loss: keep the Huber box and angle terms beside it
    quality: str = "none"  # none | qfl | varifocal: positives' class target = IoU of their decoded box (detached)


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and per-step options."""

    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 8e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # SGD momentum (AdamW beta1 is kept at 0.9)
    nesterov: bool = True
    grad_accum: int = 1  # optimizer step every N batches
    grad_clip: float = 10.0  # max gradient norm; 0 disables
    ema: bool = True
    ema_decay: float = 0.998
    amp: bool = True  # mixed precision: GPUs, and CPUs with native bfloat16 (AVX512-BF16/AMX)
    channels_last: bool = True  # NHWC memory format: faster on GPUs, and on CPUs too (oneDNN convolutions;
    # bench/cpu_precision.py: 1.8x for obbdet_tiny on 2 cores)


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule; stepped per optimizer step except ``plateau`` (per epoch)."""

    name: str = "cosine"  # cosine | multistep | plateau | onecycle | constant
    warmup_epochs: float = 0.5
    warmup_factor: float = 0.05  # LR at the first step = lr * warmup_factor
    min_lr: float = 2e-5
    milestones: tuple[int, ...] = (8, 11)  # multistep: epochs at which the LR is multiplied by gamma
    gamma: float = 0.1
    patience: int = 2  # plateau: epochs without improvement of the best metric
    plateau_factor: float = 0.5
    pct_start: float = 0.25  # onecycle: fraction of steps rising


@dataclass(frozen=True)
class TrainConfig:
    """Loop, evaluation and output options."""

    epochs: int = 11
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch CPU threads; 0 = the machine's core count
    out_dir: str = "runs"
    # evaluate every N epochs (and always after the last); 6: the quickstart validates after epochs 6 and 11,
    # which keeps it within 15 minutes on 2 CPU cores (configs/d0_512.yaml validates every epoch)
    eval_interval: int = 6
    best_metric: str = "50-95"  # key of EvalResult.map used to pick best-checkpoint-*.pt ("0.50", "50-95", ...)
    score_threshold: float = 0.05  # detections kept for evaluation
    nms_iou: float = 0.4
    # box voting after NMS (obbdet.box_voting; 0: plain NMS); stored in checkpoints. box_voting.DEFAULT_VOTE_IOU,
    # written out: this module imports without torch (tests/test_box_voting.py checks they agree)
    vote_iou: float = 0.6
    tta: str = "none"  # validation's test-time augmentation (obbdet.model.tta.VIEWS: none, flip, rot4, d8)
    max_det_per_image: int = 1000
    pre_nms_topk: int = 1000  # candidate locations per class decoded before NMS, each with its best anchor
    # shape (warns when it cuts)
    val_tile: int = 768  # validation detects as infer.py does (same defaults): the image at the training scale,
    val_overlap: int = 128  # cut into val_tile-px tiles overlapping by val_overlap px, merged across tiles
    log_interval: int = 20  # steps between tqdm postfix / tensorboard step scalars
    max_steps_per_epoch: int = 0  # debugging: cut epochs short (0 = full virtual epoch)


@dataclass(frozen=True)
class RunConfig:
    """A whole run (saved resolved as ``config.yaml`` in the run folder and inside every checkpoint)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


SECTIONS = tuple(f.name for f in fields(RunConfig))

# Named run variants, as overrides of the defaults (the defaults are ``quickstart``).
VARIANTS: dict[str, dict] = {
    "quickstart": {},
    "d0_512": {
        "model": {"variant": "tf_efficientdet_d0", "image_size": 512},
        "data": {"batch_size": 8, "virtual_epoch_size": 8000, "synthetic_train": 4000, "synthetic_size": 512,
                 "val_image_size": 512, "workers": -1},
        "optim": {"lr": 1e-3},
        "schedule": {"name": "cosine", "warmup_epochs": 1.0},
        "train": {"epochs": 40, "eval_interval": 1},
    },
    "tiny": {  # unit tests and smoke runs: seconds per epoch on a CPU
        "model": {"variant": "obbdet_micro", "image_size": 128},
        "data": {"synthetic_train": 8, "synthetic_val": 4, "synthetic_size": 128, "val_image_size": 128,
                 "virtual_epoch_size": 8,
                 "batch_size": 4, "val_batch_size": 4, "workers": 0},
        "optim": {"ema": True, "ema_decay": 0.9},
        "schedule": {"warmup_epochs": 0.0},
        "train": {"epochs": 2, "eval_interval": 1},
    },
}


# ---------------------------------------------------------------------------------------------------
# Type checking of values
# ---------------------------------------------------------------------------------------------------

def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value, tp, where: str):
    """Check ``value`` (parsed YAML) against the annotation ``tp``; return it converted (lists -> tuples)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]  # `milestones=8` means (8,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list of {_type_name(args[0])}, got {value!r}")
        return tuple(_coerce(v, args[0], where) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string; Python's float reads it
            try:
                number = float(value)
            except ValueError:
                number = None
            if number is not None and math.isfinite(number):
                return number
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if value is None:
            return ""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported field type {tp!r}")


def _section_types(section: str) -> dict:
    cls = type(getattr(RunConfig(), section))
    return typing.get_type_hints(cls)


def _unknown(key: str, valid, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(valid), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; valid: {', '.join(sorted(valid))}"
    return ConfigError(f"{where}: unknown config key {key!r}{hint}")


def _apply_section(cfg: RunConfig, section: str, values: dict, where: str) -> RunConfig:
    if section not in SECTIONS:
        raise _unknown(section, SECTIONS, where)
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: section {section!r} must be a mapping, got {values!r}")
    hints = _section_types(section)
    updates = {}
    for key, value in values.items():
        if key not in hints:
            raise _unknown(f"{section}.{key}", [f"{section}.{k}" for k in hints], where)
        updates[key] = _coerce(value, hints[key], f"{where}: {section}.{key}")
    return replace(cfg, **{section: replace(getattr(cfg, section), **updates)})


def apply_mapping(cfg: RunConfig, mapping: dict, where: str) -> RunConfig:
    """Apply a nested ``{section: {field: value}}`` mapping (e.g. a parsed YAML file)."""
    for section, values in mapping.items():
        cfg = _apply_section(cfg, section, values or {}, where)
    return cfg


def variant_config(name: str) -> RunConfig:
    """The named run variant (``quickstart``, ``d0_512``, ``tiny``)."""
    if name not in VARIANTS:
        raise _unknown(name, VARIANTS, "variant")
    return apply_mapping(RunConfig(), VARIANTS[name], f"variant {name}")


def load_yaml_config(path, base: RunConfig | None = None) -> RunConfig:
    """A RunConfig from a YAML file (optionally ``variant: NAME`` at the top, then sections)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}".replace("\n", " ")) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections")
    data = dict(data)
    variant = data.pop("variant", None)
    cfg = variant_config(variant) if variant else (base or RunConfig())
    return apply_mapping(cfg, data, str(path))


def _split_override(text: str) -> tuple[str, str, object]:
    if "=" not in text:
        raise ConfigError(f"command line: override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if "." in key:
        section, name = key.split(".", 1)
        return section, name, value
    owners = [s for s in SECTIONS if key in _section_types(s)]
    if len(owners) == 1:
        return owners[0], key, value
    if len(owners) > 1:
        raise ConfigError(f"command line: key {key!r} is ambiguous; use one of "
                          + ", ".join(f"{s}.{key}" for s in owners))
    every = [f"{s}.{k}" for s in SECTIONS for k in _section_types(s)]
    every += [k for s in SECTIONS for k in _section_types(s)]
    raise _unknown(key, every, "command line")


def apply_overrides(cfg: RunConfig, overrides) -> RunConfig:
    """Apply ``["section.field=value", "field=value", ...]`` (values parsed as YAML, type-checked)."""
    for text in overrides or ():
        section, name, value = _split_override(text)
        cfg = _apply_section(cfg, section, {name: value}, "command line")
    return cfg


def resolve_config(config: str | None = None, overrides=()) -> RunConfig:
    """Defaults -> named variant or YAML file -> ``key=value`` overrides; then validated."""
    if config:
        is_file = config.endswith((".yaml", ".yml")) or Path(config).is_file()
        cfg = load_yaml_config(config) if is_file else variant_config(config)
    else:
        cfg = RunConfig()
    cfg = apply_overrides(cfg, overrides)
    validate_config(cfg)
    return cfg


_CHOICES = {
    ("optim", "optimizer"): ("adamw", "sgd"),
    ("schedule", "name"): ("cosine", "multistep", "plateau", "onecycle", "constant"),
    ("loss", "difficult"): ("positive", "ignore"),
    ("loss", "assigner"): ("atss", "iou"),
    ("loss", "box_loss"): ("huber", "probiou", "kld", "gwd", "riou"),
    ("loss", "quality"): ("none", "qfl", "varifocal"),
}


def validate_config(cfg: RunConfig) -> None:
    """Value checks beyond types (choices and ranges); raises ConfigError."""
    for (section, name), choices in _CHOICES.items():
        value = getattr(getattr(cfg, section), name)
        if value not in choices:
            raise ConfigError(f"config: {section}.{name}={value!r} is not one of {', '.join(choices)}")
    positive = [("model", "image_size"), ("data", "batch_size"), ("data", "val_batch_size"),
                ("data", "virtual_epoch_size"), ("optim", "grad_accum"), ("train", "epochs"),
                ("train", "max_det_per_image"), ("train", "eval_interval"), ("data", "scale")]
    for section, name in positive:
        if getattr(getattr(cfg, section), name) <= 0:
            raise ConfigError(f"config: {section}.{name} must be > 0")
    if cfg.model.backbone_weights and not Path(cfg.model.backbone_weights).expanduser().is_file():
        raise ConfigError(f"config: model.backbone_weights={cfg.model.backbone_weights}: file not found")
    if cfg.model.init == "effdet-coco":
        from obbdet.model.detector import MODEL_VARIANTS

        if cfg.model.variant in MODEL_VARIANTS:
            raise ConfigError(f"config: model.init=effdet-coco: effdet has no COCO weights for obbdet's own variant "
                              f"{cfg.model.variant}; use an effdet variant (model.variant=tf_efficientdet_d0, ...) "
                              f"or model.init=PATH")
    elif cfg.model.init and not Path(cfg.model.init).expanduser().is_file():
        raise ConfigError(f"config: model.init={cfg.model.init}: file not found (expected effdet-coco, an obbdet "
                          f"checkpoint or an effdet state_dict file)")
    from obbdet.model.tta import check_tta

    try:
        check_tta(cfg.train.tta, cfg.train.vote_iou)
    except ValueError as exc:
        raise ConfigError(f"config: train.tta={cfg.train.tta!r}, train.vote_iou={cfg.train.vote_iou:g}: {exc}") \
            from None
    for section, name in (("data", "rotate_prob"), ("data", "object_focus_prob"), ("train", "vote_iou")):
        if not 0.0 <= getattr(getattr(cfg, section), name) <= 1.0:
            raise ConfigError(f"config: {section}.{name} must be in [0, 1]")
    if cfg.data.scale_jitter < 0:
        raise ConfigError("config: data.scale_jitter must be >= 0")
    if cfg.data.vehicle_width is not None:
        if not cfg.data.vehicle_width > 0:
            raise ConfigError("config: data.vehicle_width must be > 0 (the common training car width in px) or null")
        if cfg.data.scale != 1.0:  # two resizes of one image would leave cars at neither width
            raise ConfigError("config: give data.vehicle_width (per-dataset resampling) or data.scale (one factor "
                              "for every image), not both")
    if not 0.0 <= cfg.loss.unmatch_iou <= cfg.loss.match_iou <= 1.0:
        raise ConfigError("config: need 0 <= loss.unmatch_iou <= loss.match_iou <= 1")
    if cfg.loss.box_loss_weight < 0:
        raise ConfigError("config: loss.box_loss_weight must be >= 0")
    if cfg.loss.box_loss == "huber" and not cfg.loss.keep_huber:
        raise ConfigError("config: loss.keep_huber=false needs an overlap loss.box_loss (probiou, kld, gwd, riou); "
                          "with huber there would be no box loss")


def config_to_dict(cfg: RunConfig) -> dict:
    """Plain nested dict (tuples as lists), suitable for YAML/JSON and checkpoints."""
    def plain(v):
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v
    return {s: {k: plain(v) for k, v in dataclasses.asdict(getattr(cfg, s)).items()} for s in SECTIONS}


def config_from_dict(data: dict, where: str = "checkpoint") -> RunConfig:
    """Inverse of :func:`config_to_dict` (type-checked; unknown keys raise)."""
    return apply_mapping(RunConfig(), data, where)


def config_to_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML text (loadable with ``--config``)."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
