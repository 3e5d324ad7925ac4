"""The importer table: dataset kind -> importer function, filled by explicit imports (no registration magic).

``load_dataset(kind, root, **options)`` is the one entry point; ``available()`` lists the kinds.
"""
from __future__ import annotations

import difflib
import inspect
import logging
from dataclasses import fields
from typing import Callable, Mapping, Sequence

from obbdet.structures import Sample

from . import carpk, dlr3k, dota, dronevehicle, obb_json, uav_rod, vaid, vedai, yolo_obb
from .classes import DEFAULT_CLASSES, apply_class_map
from .common import ImportSummary, add_fingerprints
from .errors import RegistryConfigError, UnknownDatasetError
from .integrity import class_map_findings

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


def _synthetic_options() -> list[str]:
    from .synthetic import load_synthetic
    from .synthetic_options import SceneOptions

    return [*_keywords(load_synthetic), *(f.name for f in fields(SceneOptions))]


# Importers taking ``**options`` pass them on: the options these accept
_FORWARDED_OPTIONS: dict[str, Callable[[], list[str]]] = {
    "vsai": lambda: _keywords(dota.load_dota),
    "synthetic": _synthetic_options,
}
_NOT_OPTIONS = ("root", "summary")  # given by the registry, not by a config's options


def _keywords(function: Callable) -> list[str]:
    return [name for name, p in inspect.signature(function).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in _NOT_OPTIONS]


def importer_options(kind: str) -> list[str] | None:
    """The option names the importer of ``kind`` accepts (its signature; None when it cannot be told)."""
    importer = get_importer(kind)
    names = _keywords(importer)
    if any(p.kind is p.VAR_KEYWORD for p in inspect.signature(importer).parameters.values()):
        forwarded = _FORWARDED_OPTIONS.get(kind)
        if forwarded is None:
            return None
        names += [n for n in forwarded() if n not in names]
    return names


def check_options(kind: str, options: Mapping) -> str | None:
    """None when ``options`` suit the importer of ``kind``; else a sentence naming the unknown ones and the
    valid ones (a wrong name would otherwise be a TypeError from deep inside the import)."""
    valid = importer_options(kind)
    if valid is None:
        return None
    unknown = [name for name in options if name not in valid]
    if not unknown:
        return None
    listed = ", ".join(repr(n) + _suggest(n, valid) for n in unknown)
    return (f"unknown option{'s' if len(unknown) > 1 else ''} {listed} for the {kind} importer; valid options: "
            f"{', '.join(valid)}")


def _suggest(name, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(name), valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def import_native(kind: str, root=None, *, cache=None, summary: ImportSummary | None = None,
                  **options) -> list[Sample]:
    """Samples with native class names (``meta['classes']``), through the annotation cache when ``cache`` is set.

    Every sample gets ``meta['fingerprint']`` (its image file's size and content hash, for duplicate checks).

    cache: None/False (parse), True (default cache folder) or a folder path.
    """
    importer = get_importer(kind)
    summary = summary if summary is not None else ImportSummary(dataset=kind)
    if cache not in (None, False):
        from .cache import cached_import

        return cached_import(kind, importer, root, options, cache_dir=None if cache is True else cache,
                             summary=summary, code_modules=LAZY_MODULES.get(kind, ()))
    samples = importer(root, summary=summary, **options)
    add_fingerprints(samples, summary)
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
    typos = class_map_findings(kind, kind, class_map, samples)
    if typos:
        raise RegistryConfigError("; ".join(f.message for f in typos))
    mapping = DEFAULT_CLASS_MAPS.get(kind, {}) if class_map is None else class_map
    mapped, report = apply_class_map(samples, DEFAULT_CLASSES if classes is None else classes, mapping, dataset=kind)
    if report.ignored:
        logger.info("%s: objects dropped by the class map: %s", kind, dict(report.ignored))
    return mapped
