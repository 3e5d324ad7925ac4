"""Dataset registry: importers for aerial vehicle datasets, class mapping, splits, virtual epochs, caching.

- ``load_dataset(kind, root, **options) -> list[Sample]`` and ``available()``: the importers
  (:mod:`datasets_registry.registry`; the sample contract is in :mod:`datasets_registry.common`).
- ``load_registry_config`` / ``build_registry(config) -> Registry``: many datasets, one taxonomy, splits
  and quotas from a YAML config (:mod:`datasets_registry.config`); ``python -m datasets_registry CONFIG``
  prints the start-up table.
- ``VirtualEpochSampler``: N samples per epoch by quota, seeded, shardable, resumable
  (:mod:`datasets_registry.sampler`; imported on first use because it needs torch).
"""
from __future__ import annotations

from .cache import cached_import, default_cache_dir
from .classes import DEFAULT_CLASSES, apply_class_map
from .common import ImportSummary
from .config import (
    DatasetConfig, Registry, RegistryConfig, build_registry, load_registry_config, split_train_val,
)
from .errors import LabelFormatError, RegistryConfigError, UnknownDatasetError
from .registry import IMPORTERS, available, load_dataset

__all__ = [
    "DEFAULT_CLASSES", "IMPORTERS", "DatasetConfig", "ImportSummary", "LabelFormatError", "Registry",
    "RegistryConfig", "RegistryConfigError", "UnknownDatasetError", "VirtualEpochSampler", "apply_class_map",
    "available", "build_registry", "cached_import", "default_cache_dir", "load_dataset",
    "load_registry_config", "split_train_val",
]


def __getattr__(name: str):
    if name == "VirtualEpochSampler":  # torch is imported only when the sampler is wanted
        from .sampler import VirtualEpochSampler

        return VirtualEpochSampler
    raise AttributeError(f"module 'datasets_registry' has no attribute {name!r}")
