"""Registry config (YAML): many datasets, one taxonomy, reproducible train/val splits and per-epoch quotas.

.. code-block:: yaml

    seed: 0                         # splits and virtual epochs are pure functions of it
    classes: [car, truck, bus, van, other_vehicle]   # the unified taxonomy (this is the default)
    samples_per_epoch: 12000        # needed when a dataset has a weight; else the quotas' sum
    strict: true                    # default for every dataset: raise on malformed labels (false: skip+count)
    cache: true                     # annotation cache: true (default folder), false, or a folder
    datasets:
      - name: 0024_DroneVehicle     # unique; printed in the start-up table (default: the type)
        type: dronevehicle          # one of datasets_registry.available()
        root: /data/DroneVehicle    # relative paths are relative to this file; ~ and $VARS are expanded
        options: {split: train, label_set: infrared}     # importer options
        class_map: {freight_car: truck}                  # native -> unified or ignore (default per type)
        quota: 5000                 # samples per virtual epoch (or weight: 2.0, a share of the rest)
        val_fraction: 0.05          # the split ratio: images held out for validation
        group_by: '^(\\d{3})'       # regex on the image file name: one group never straddles the split
        role: both                  # both (split), train (all training) or val (all validation)
        vehicle_width: 12           # a car's width in its pixels (or gsd: 0.15, metres per pixel); neither:
                                    # measured from its labels (median short side of the main class)
        box_scale: {width: 0.93}    # factors on every box's short (width) / long (length) side: loose labels
        depth: bits:12              # reading 16-bit files: bits:N, percentile[:LOW,HIGH] or range:MIN,MAX
        bands: [0, 1, 2]            # the three 0-based bands of the file that make the RGB image

``build_registry(config, vehicle_width=16)`` imports every dataset (through the annotation cache), maps its
classes, applies ``box_scale``, resolves its car width (:mod:`datasets_registry.scale`), records in each
sample's meta the resampling factor to the common ``vehicle_width`` and the reading options, splits it and
returns a :class:`Registry`; ``registry.summary_table()`` is the start-up table.

It also refuses what would train wrongly without a word (:mod:`datasets_registry.integrity`): an image that
reaches the registry twice, by content (strict: an error naming both paths and entries; lenient: a warning,
the first copy in config order kept), a label stem with several image files (the importers), a class_map key
that is no class of its dataset, an unknown importer option (at load), an empty virtual epoch; a class left
empty by ``ignore`` is a warning in the table. ``python -m datasets_registry CONFIG --check`` lists them all.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import yaml

from obbdet.structures import Sample

from .classes import DEFAULT_CLASSES, IGNORE, MappingReport, apply_class_map
from .common import AMBIGUOUS_IMAGES, ImportSummary, add_fingerprints
from .errors import RegistryConfigError
from .integrity import (
    AMBIGUOUS, EMPTY_EPOCH, IMPORT, Finding, class_map_findings, duplicates_error, find_duplicates,
    ignored_class_findings,
)
from .quotas import resolve_quotas
from .registry import DEFAULT_CLASS_MAPS, available, check_options, import_native
from .scale import SCALE_KEYS, ScaleOptions, WidthReport, apply_box_scale, parse_scale_options, resolve_width, \
    tag_samples

logger = logging.getLogger(__name__)

ROLES = ("both", "train", "val")
TOP_KEYS = ("seed", "classes", "samples_per_epoch", "strict", "cache", "datasets")
DATASET_KEYS = ("name", "type", "root", "options", "class_map", "quota", "weight", "val_fraction", "group_by", "role",
                "strict", *SCALE_KEYS)


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset entry of the registry config (see the module docstring for each key)."""

    name: str
    type: str
    root: str | None = None
    options: Mapping = field(default_factory=dict)
    class_map: Mapping | None = None
    quota: int | None = None
    weight: float | None = None
    val_fraction: float = 0.0
    group_by: str | None = None
    role: str = "both"
    strict: bool | None = None
    scale: ScaleOptions = field(default_factory=ScaleOptions)  # vehicle_width / gsd, box_scale, depth, bands


@dataclass(frozen=True)
class RegistryConfig:
    """The whole registry config."""

    datasets: tuple[DatasetConfig, ...]
    classes: tuple[str, ...] = DEFAULT_CLASSES
    seed: int = 0
    samples_per_epoch: int | None = None
    strict: bool = True
    cache: bool | str = True
    origin: str = field(default="registry config", compare=False)  # errors found while building name the file


# ---------------------------------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------------------------------

def load_registry_config(source) -> RegistryConfig:
    """A :class:`RegistryConfig` from a YAML file path, a dict, or an existing config (returned as is)."""
    if isinstance(source, RegistryConfig):
        return source
    base = Path.cwd()
    origin = "registry config"
    if isinstance(source, (str, Path)):
        path = Path(source)
        with open(path, encoding="utf-8") as handle:
            try:
                source = yaml.safe_load(handle)
            except yaml.YAMLError as exc:
                raise RegistryConfigError(f"{path}: not valid YAML ({exc})") from None
        base = path.resolve().parent
        origin = f"registry config {path}"  # errors name the file
    if not isinstance(source, Mapping):
        raise RegistryConfigError(f"{origin} must be a mapping with a 'datasets' list")
    return _parse_config(source, base, origin)


def _parse_config(data: Mapping, base: Path, origin: str = "registry config") -> RegistryConfig:
    _check_keys(data, TOP_KEYS, origin)
    entries = data.get("datasets")
    if not isinstance(entries, list) or not entries:
        raise RegistryConfigError(f"{origin}: 'datasets' must be a non-empty list")
    classes = tuple(data.get("classes") or DEFAULT_CLASSES)
    if IGNORE in classes or len(set(classes)) != len(classes):
        raise RegistryConfigError(f"{origin}: classes must be unique and not {IGNORE!r}: {list(classes)}")
    datasets = tuple(_parse_dataset(entry, i, base, origin) for i, entry in enumerate(entries))
    names = [d.name for d in datasets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RegistryConfigError(f"{origin}: dataset names must be unique (repeated: {duplicates}); "
                                  "set 'name' on each entry")
    samples = data.get("samples_per_epoch")
    if samples is not None and (not isinstance(samples, int) or samples <= 0):
        raise RegistryConfigError(f"{origin}: samples_per_epoch must be a positive integer, got {samples!r}")
    cache = data.get("cache", True)
    if isinstance(cache, str):
        cache = str(_resolve_path(cache, base))
    return RegistryConfig(datasets=datasets, classes=classes, seed=int(data.get("seed", 0)),
                          samples_per_epoch=samples, strict=bool(data.get("strict", True)), cache=cache,
                          origin=origin)


def _check_keys(data: Mapping, valid: Sequence[str], where: str) -> None:
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise RegistryConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(valid)}")


def _parse_dataset(entry, index: int, base: Path, origin: str = "registry config") -> DatasetConfig:
    where = f"{origin} datasets[{index}]"
    if not isinstance(entry, Mapping):
        raise RegistryConfigError(f"{where}: each dataset must be a mapping")
    _check_keys(entry, DATASET_KEYS, where)
    kind = entry.get("type")
    if kind not in available():
        raise RegistryConfigError(f"{where}: type {kind!r} is not one of {', '.join(available())}")
    where = f"{where} ({entry.get('name', kind)})"
    config = DatasetConfig(
        name=str(entry.get("name", kind)), type=kind,
        root=None if entry.get("root") is None else str(_resolve_root(entry["root"], base, where)),
        options=dict(entry.get("options") or {}), class_map=entry.get("class_map"),
        quota=entry.get("quota"), weight=entry.get("weight"), val_fraction=_fraction(entry, where),
        group_by=entry.get("group_by"), role=entry.get("role", "both"), strict=entry.get("strict"),
        scale=parse_scale_options(entry, where))
    _check_dataset(config, where)
    return config


def _fraction(entry: Mapping, where: str) -> float:
    value = entry.get("val_fraction", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RegistryConfigError(f"{where}: val_fraction must be a number in [0, 1), got {value!r}")
    return float(value)


def _check_dataset(config: DatasetConfig, where: str) -> None:
    if config.quota is not None and config.weight is not None:
        raise RegistryConfigError(f"{where}: give quota or weight, not both")
    if config.quota is not None and (isinstance(config.quota, bool) or not isinstance(config.quota, int)
                                     or config.quota < 0):
        raise RegistryConfigError(f"{where}: quota must be an integer >= 0, got {config.quota!r}")
    if config.weight is not None and (not isinstance(config.weight, (int, float)) or not config.weight > 0):
        raise RegistryConfigError(f"{where}: weight must be a number > 0, got {config.weight!r}")
    if not 0.0 <= config.val_fraction < 1.0:
        raise RegistryConfigError(f"{where}: val_fraction must be in [0, 1), got {config.val_fraction}")
    if config.role not in ROLES:
        raise RegistryConfigError(f"{where}: role must be one of {ROLES}, got {config.role!r}")
    if config.class_map is not None and not isinstance(config.class_map, Mapping):
        raise RegistryConfigError(f"{where}: class_map must be a mapping native -> unified class or 'ignore'")
    problem = check_options(config.type, config.options)
    if problem:
        raise RegistryConfigError(f"{where}: {problem}")
    if config.group_by is not None:
        try:
            re.compile(config.group_by)
        except re.error as exc:
            raise RegistryConfigError(f"{where}: group_by is not a valid regex ({exc})") from None


def _resolve_root(value, base: Path, where: str) -> Path:
    expanded = os.path.expandvars(os.path.expanduser(str(value)))
    if "$" in expanded:
        raise RegistryConfigError(f"{where}: root {value!r} uses an environment variable that is not set")
    return _resolve_path(expanded, base)


def _resolve_path(value, base: Path) -> Path:
    path = Path(os.path.expandvars(os.path.expanduser(str(value))))
    return path if path.is_absolute() else (base / path).resolve()


# ---------------------------------------------------------------------------------------------------
# Splitting
# ---------------------------------------------------------------------------------------------------

def group_key(image_path: str, pattern: re.Pattern | None) -> str | None:
    """The split group of an image: the regex's first group (or whole match) on the file name; None if no match."""
    name = os.path.basename(image_path)
    if pattern is None:
        return name
    match = pattern.search(name)
    if match is None:
        return None
    return match.group(1) if match.groups() else match.group(0)


def split_train_val(samples: Sequence[Sample], val_fraction: float, group_by: str | None, seed: int,
                    name: str) -> tuple[list[Sample], list[Sample]]:
    """Deterministic split: groups ordered by a hash of ``(seed, name, group)``, taken into validation until
    ``round(val_fraction * len(samples))`` images are reached. Images the regex does not match form their
    own group (counted in a warning). Both lists keep the import order."""
    if val_fraction <= 0 or not samples:
        return list(samples), []
    pattern = re.compile(group_by) if group_by else None
    groups: dict[str, list[int]] = {}
    unmatched = 0
    for i, sample in enumerate(samples):
        key = group_key(sample.image_path, pattern)
        if key is None:
            unmatched += 1
            key = "\0" + os.path.basename(sample.image_path)
        groups.setdefault(key, []).append(i)
    if unmatched:
        logger.warning("%s: group_by %r matched no group in %d image names; each is its own split group", name,
                       group_by, unmatched)
    target = round(val_fraction * len(samples))
    in_val = np.zeros(len(samples), bool)
    taken = 0
    for key in sorted(groups, key=lambda k: hashlib.blake2b(f"{seed}\0{name}\0{k}".encode(), digest_size=8).digest()):
        if taken >= target:
            break
        in_val[groups[key]] = True
        taken += len(groups[key])
    return [s for s, v in zip(samples, in_val) if not v], [s for s, v in zip(samples, in_val) if v]


# ---------------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------------

@dataclass
class DatasetReport:
    """What one dataset contributes: images, quota, objects per unified class, drops and skips, car width."""

    config: DatasetConfig
    train_images: int
    val_images: int
    quota: int
    train_objects: Counter
    val_objects: Counter
    mapping: MappingReport
    summary: ImportSummary
    width: WidthReport | None = None


class Registry:
    """Training and validation samples of every configured dataset, with labels in the unified ``classes``.

    ``train`` is the concatenation of the datasets' training samples in config order (``train_sizes`` per
    dataset), the index space of :class:`~datasets_registry.sampler.VirtualEpochSampler`; ``val`` likewise.
    ``vehicle_width``: the common car width the images are resampled to (None: not resampled), of ``main_class``.
    ``findings``: the integrity problems found (:mod:`datasets_registry.integrity`): warnings, plus errors when
    built with ``check=True`` (otherwise errors are raised).
    """

    def __init__(self, config: RegistryConfig, train: list[Sample], val: list[Sample], reports: list[DatasetReport],
                 *, vehicle_width: float | None = None, main_class: str = "car", findings: Sequence[Finding] = ()):
        self.config = config
        self.findings = list(findings)
        self.classes = config.classes
        self.train = train
        self.val = val
        self.reports = reports
        self.vehicle_width = vehicle_width
        self.main_class = main_class

    @property
    def train_sizes(self) -> list[int]:
        return [r.train_images for r in self.reports]

    @property
    def quotas(self) -> list[int]:
        return [r.quota for r in self.reports]

    @property
    def samples_per_epoch(self) -> int:
        return sum(self.quotas)

    def sampler(self, *, num_replicas: int = 1, rank: int = 0, drop_last: bool = False):
        """A :class:`~datasets_registry.sampler.VirtualEpochSampler` over ``self.train`` with the resolved quotas."""
        from .sampler import VirtualEpochSampler

        return VirtualEpochSampler(self.train_sizes, quotas=self.quotas, seed=self.config.seed,
                                   num_replicas=num_replicas, rank=rank, drop_last=drop_last)

    def summary_table(self) -> str:
        """The start-up table: per dataset ``used/available`` training images (used = drawn per virtual epoch),
        validation images and objects per class (train + val), then training and validation totals, each
        dataset's car width before (given or measured) and after resampling, the class routes and the import
        skips."""
        from .table import format_summary_table

        return format_summary_table(self)


def build_registry(config, *, cache=None, vehicle_width: float | None = None, main_class: str = "car",
                   check: bool = False) -> Registry:
    """Import, map and split every dataset of ``config`` (a YAML path, dict or :class:`RegistryConfig`).

    cache: overrides the config's ``cache`` (True, False or a folder).
    vehicle_width: the common training car width in pixels (``data.vehicle_width``): each dataset whose car
        width is given or measured gets ``meta['scale'] = vehicle_width / its width`` on every sample; None:
        no resampling.
    main_class: the unified class whose boxes' median short side is a dataset's measured car width.
    check: collect every problem in ``registry.findings`` instead of raising at the first one (the importers
        run lenient; what a strict dataset would have refused is an error finding): ``--check``.

    Integrity (:mod:`datasets_registry.integrity`): an image that reaches the registry twice (by content, so
    also a copy in another folder) is an error naming both paths and datasets when either dataset is strict;
    otherwise the first copy in config order is kept and the others are dropped with a warning, so no image
    is both trained and validated on. A class_map key that is no class of its dataset is an error; a class
    left empty because objects were mapped to ignore is a warning. An empty virtual epoch is an error.
    """
    config = load_registry_config(config)
    cache = config.cache if cache is None else cache
    if vehicle_width is not None and not vehicle_width > 0:
        raise ValueError(f"vehicle_width must be > 0 (the common training car width in pixels), got {vehicle_width}")
    main_index = config.classes.index(main_class) if main_class in config.classes else None
    findings: list[Finding] = []
    prepared = []
    for dataset in config.datasets:
        summary = ImportSummary(dataset=dataset.name)
        options = dict(dataset.options)
        options.setdefault("strict", config.strict if dataset.strict is None else dataset.strict)
        strict = bool(options["strict"])
        if check:
            options["strict"] = False  # count every problem; what strict would refuse becomes an error finding
        try:
            samples = import_native(dataset.type, dataset.root, cache=cache, summary=summary, **options)
        except FileNotFoundError as exc:  # a layout problem: say which dataset entry it belongs to
            raise FileNotFoundError(f"dataset {dataset.name!r} ({dataset.type}, root {dataset.root}): {exc}") from exc
        add_fingerprints(samples)  # samples that came without one (an importer outside import_native's path)
        for sample in samples:
            sample.source = dataset.name
        if check:
            findings += _import_findings(dataset.name, summary, strict)
        _raise_or_collect(class_map_findings(dataset.name, dataset.type, dataset.class_map, samples), config,
                          check, findings)
        class_map = DEFAULT_CLASS_MAPS.get(dataset.type, {}) if dataset.class_map is None else dataset.class_map
        mapped, mapping = apply_class_map(samples, config.classes, class_map, dataset=dataset.name)
        findings += ignored_class_findings(dataset.name, mapping, class_map, config.classes, main_class)
        apply_box_scale(mapped, dataset.scale.box_scale)
        width = resolve_width(dataset.scale, mapped, main_index, vehicle_width)
        tag_samples(mapped, dataset.scale, width.factor)
        train, val = _assign(mapped, dataset, config.seed)
        prepared.append([dataset, train, val, mapping, summary, width, strict])
    findings += _drop_duplicates(prepared, config, check)
    quotas = _quotas(prepared, config, findings if check else None)
    reports, train_all, val_all = [], [], []
    for (dataset, train, val, mapping, summary, width, _), quota in zip(prepared, quotas):
        reports.append(DatasetReport(dataset, len(train), len(val), int(quota), _count(train, config.classes),
                                     _count(val, config.classes), mapping, summary, width))
        train_all.extend(train)
        val_all.extend(val)
    _log_warnings(findings)
    registry = Registry(config, train_all, val_all, reports, vehicle_width=vehicle_width, main_class=main_class,
                        findings=findings)
    logger.info("dataset registry:\n%s", registry.summary_table())
    return registry


def _log_warnings(findings: list[Finding], shown: int = 10) -> None:
    """The warnings, the first ``shown`` of each kind (a folder listed twice repeats every one of its images)."""
    per_kind = Counter(f.kind for f in findings if not f.error)
    logged: Counter = Counter()
    for finding in findings:
        if not finding.error:
            logged[finding.kind] += 1
            if logged[finding.kind] <= shown:
                logger.warning("%s", finding.message)
    for kind, n in per_kind.items():
        if n > shown:
            logger.warning("... %d more of: %s", n - shown, kind)


def _raise_or_collect(found: list[Finding], config: RegistryConfig, check: bool, findings: list[Finding]) -> None:
    errors = [f for f in found if f.error]
    if errors and not check:
        raise RegistryConfigError(f"{config.origin}: " + "; ".join(f.message for f in errors))
    findings.extend(found)


def _import_findings(name: str, summary: ImportSummary, strict: bool) -> list[Finding]:
    """--check: the ambiguous stems of an import (each named), and in a strict dataset every other skip (counted),
    which a strict import would have stopped at."""
    found = [Finding(AMBIGUOUS, f"dataset {name!r}: {m}", error=strict) for m in summary.messages
             if "several image files share the stem" in m]
    if summary.skipped[AMBIGUOUS_IMAGES] > len(found):
        found.append(Finding(AMBIGUOUS, f"dataset {name!r}: {summary.skipped[AMBIGUOUS_IMAGES]} label files with "
                             "several image files in all", error=strict))
    others = {reason: n for reason, n in summary.skipped.items() if reason != AMBIGUOUS_IMAGES}
    if strict and others:
        found.append(Finding(IMPORT, f"dataset {name!r} is strict and would stop at: " + ", ".join(
            f"{n} {reason}" for reason, n in sorted(others.items())) + " (the import reports list them)", error=True))
    return found


def _drop_duplicates(prepared: list, config: RegistryConfig, check: bool) -> list[Finding]:
    """Duplicate findings (errors raised unless ``check``); later copies leave their dataset's train/val lists."""
    entries = []
    for dataset, train, val, *_, strict in prepared:
        entries.append((dataset.name, strict, [*((s, "train") for s in train), *((s, "val") for s in val)]))
    found, dropped = find_duplicates(entries)
    errors = [f for f in found if f.error]
    if errors and not check:
        raise RegistryConfigError(f"{config.origin}: {duplicates_error(errors)}")
    if dropped:
        for item in prepared:
            item[1] = [s for s in item[1] if id(s) not in dropped]
            item[2] = [s for s in item[2] if id(s) not in dropped]
    return found


def _quotas(prepared: list, config: RegistryConfig, findings: list[Finding] | None = None) -> np.ndarray:
    """The per-dataset quotas; an empty virtual epoch is an error here, before any training code is built (with
    ``findings`` given, --check, it is recorded there and the quotas are 0)."""
    names = [d.name for d, *_ in prepared]
    sizes = [len(p[1]) for p in prepared]
    try:
        quotas = resolve_quotas(sizes, [d.quota for d, *_ in prepared], [d.weight for d, *_ in prepared],
                                config.samples_per_epoch, names=names)
        problem = None
        if int(quotas.sum()) == 0:
            detail = ", ".join(f"{name}: {q} of {n} training images" for name, q, n in zip(names, quotas, sizes))
            problem = (f"the virtual epoch is empty ({detail}); training needs a dataset with training images and a "
                       "quota or weight above 0")
    except ValueError as exc:
        quotas, problem = np.zeros(len(prepared), np.int64), str(exc)
    if problem is not None:
        if findings is None:
            raise RegistryConfigError(f"{config.origin}: {problem}")
        findings.append(Finding(EMPTY_EPOCH, problem, error=True))
    return quotas


def _assign(samples: list[Sample], dataset: DatasetConfig, seed: int) -> tuple[list[Sample], list[Sample]]:
    if dataset.role == "train":
        return samples, []
    if dataset.role == "val":
        return [], samples
    return split_train_val(samples, dataset.val_fraction, dataset.group_by, seed, dataset.name)


def _count(samples: list[Sample], classes: Sequence[str]) -> Counter:
    totals = np.zeros(len(classes), np.int64)
    for sample in samples:
        totals += np.bincount(sample.labels, minlength=len(classes))
    return Counter({name: int(n) for name, n in zip(classes, totals)})
