"""The importer table: dataset kind -> importer function, filled by explicit imports (no registration magic).

``load_dataset(kind, root, **options)`` is the one entry point; ``available()`` lists the kinds.
"""
from __future__ import annotations

import inspect
import logging
from typing import Callable, Mapping, Sequence

from obbdet.structures import Sample

from . import carpk, dlr3k, dota, dronevehicle, obb_json, uav_rod, vaid, vedai, yolo_obb
from .classes import DEFAULT_CLASSES, apply_class_map
from .common import ImportSummary
from .errors import UnknownDatasetError

logger = logging.getLogger(__name__)


def _load_synthetic(root=None, *, summary: ImportSummary | None = None, **options) -> list[Sample]:
    """Synthetic aerial scenes (imported on use, so the other importers work without that module)."""
    from .synthetic import load_synthetic

    if "summary" in inspect.signature(load_synthetic).parameters:
        return load_synthetic(root, summary=summary, **options)
    samples = load_synthetic(root, **options)
    if summary is not None:
        summary.images += len(samples)
        summary.objects += sum(len(s) for s in samples)
    return samples


IMPORTERS: dict[str, Callable[..., list[Sample]]] = {
    "dota": dota.load_dota,
    "vsai": dota.load_vsai,
    "dronevehicle": dronevehicle.load_dronevehicle,
    "vedai": vedai.load_vedai,
    "uav_rod": uav_rod.load_uav_rod,
    "vaid": vaid.load_vaid,
    "dlr3k": dlr3k.load_dlr3k,
    "yolo_obb": yolo_obb.load_yolo_obb,
    "obb_json": obb_json.load_obb_json,
    "carpk": carpk.load_carpk,
    "synthetic": _load_synthetic,
}

LAZY_MODULES = {"synthetic": (f"{__package__}.synthetic",)}  # code behind the lazy importers (cache keys)

# Each kind's native classes onto the default taxonomy (car, truck, bus, van, other_vehicle); the registry
# config's class_map replaces it. Kinds whose names are already unified names map by identity.
DEFAULT_CLASS_MAPS: dict[str, dict] = {
    "dota": dota.DEFAULT_CLASS_MAP,
    "vsai": dota.DEFAULT_CLASS_MAP,
    "dronevehicle": dronevehicle.DEFAULT_CLASS_MAP,
    "vedai": vedai.DEFAULT_CLASS_MAP,
    "uav_rod": uav_rod.DEFAULT_CLASS_MAP,
    "vaid": vaid.DEFAULT_CLASS_MAP,
    "dlr3k": dlr3k.DEFAULT_CLASS_MAP,
    "yolo_obb": yolo_obb.DEFAULT_CLASS_MAP,
    "obb_json": obb_json.DEFAULT_CLASS_MAP,
    "carpk": carpk.DEFAULT_CLASS_MAP,
    "synthetic": {},
}


def available() -> list[str]:
    """The registered dataset kinds, sorted."""
    return sorted(IMPORTERS)


def get_importer(kind: str) -> Callable[..., list[Sample]]:
    """The importer of ``kind``; UnknownDatasetError listing the valid kinds otherwise."""
    try:
        return IMPORTERS[kind]
    except KeyError:
        raise UnknownDatasetError(f"unknown dataset kind {kind!r}; valid kinds: {', '.join(available())}") from None


def import_native(kind: str, root=None, *, cache=None, summary: ImportSummary | None = None,
                  **options) -> list[Sample]:
    """Samples with native class names (``meta['classes']``), through the annotation cache when ``cache`` is set.

    cache: None/False (parse), True (default cache folder) or a folder path.
    """
    importer = get_importer(kind)
    summary = summary if summary is not None else ImportSummary(dataset=kind)
    if cache not in (None, False):
        from .cache import cached_import

        return cached_import(kind, importer, root, options, cache_dir=None if cache is True else cache,
                             summary=summary, code_modules=LAZY_MODULES.get(kind, ()))
    samples = importer(root, summary=summary, **options)
    summary.log()
    return samples


def load_dataset(kind: str, root=None, *, classes: Sequence[str] | None = None, class_map: Mapping | None = None,
                 cache=None, summary: ImportSummary | None = None, **options) -> list[Sample]:
    """Import dataset ``kind`` from ``root`` as :class:`~obbdet.structures.Sample` records.

    Without ``classes`` and ``class_map`` the labels index the dataset's native class names
    (``sample.meta['classes']``). With either, they index ``classes`` (default: car, truck, bus, van,
    other_vehicle) through ``class_map`` (default: the kind's entry in ``DEFAULT_CLASS_MAPS``); see
    :mod:`datasets_registry.classes`. ``strict`` and the format options go to the importer; ``cache``: see
    :func:`import_native`. ``summary`` (an :class:`ImportSummary`) receives the counts and skips.
    """
    samples = import_native(kind, root, cache=cache, summary=summary, **options)
    if classes is None and class_map is None:
        return samples
    mapping = DEFAULT_CLASS_MAPS.get(kind, {}) if class_map is None else class_map
    mapped, report = apply_class_map(samples, DEFAULT_CLASSES if classes is None else classes, mapping, dataset=kind)
    if report.ignored:
        logger.info("%s: objects dropped by the class map: %s", kind, dict(report.ignored))
    return mapped
