"""Class mapping: every dataset's native class names onto the registry's unified taxonomy.

A class map is data (a dict in the registry config): ``{native_name: unified_name | "ignore"}``.
Resolution of one native name, in order:

1. an explicit entry (``"ignore"``, or YAML ``null``, drops the objects of that class, counted);
2. the identity, when the native name is itself a unified class;
3. the ``"*"`` entry, when present (e.g. ``"*": ignore`` to drop every other DOTA class).

A native name that occurs in the data and resolves to nothing is an error listing every such name: objects
are never dropped silently.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from obbdet.structures import Sample

from .errors import RegistryConfigError

DEFAULT_CLASSES = ("car", "truck", "bus", "van", "other_vehicle")
IGNORE = "ignore"
FALLBACK_KEY = "*"
_DROP = -1


@dataclass
class MappingReport:
    """Objects per unified class after mapping, objects dropped per native class, and every route taken.

    ``routes`` counts objects per ``(native name, unified name or "ignore")``.
    """

    kept: Counter = field(default_factory=Counter)
    ignored: Counter = field(default_factory=Counter)
    routes: Counter = field(default_factory=Counter)


def native_classes(sample: Sample) -> tuple[str, ...]:
    """The class names ``sample.labels`` index into: ``meta['classes']`` (the importer contract), or
    ``meta['class_names']`` (the synthetic scenes' name for the same list)."""
    classes = sample.meta.get("classes", sample.meta.get("class_names"))
    if classes is None:
        raise ValueError(f"{sample.source or 'sample'} {sample.image_path}: meta['classes'] is missing; importers "
                         "must give the class names their labels index into")
    return tuple(classes)


def resolve_class_map(native: Sequence[str], classes: Sequence[str], class_map: Mapping | None,
                      present: Sequence[str] = (), dataset: str = "") -> np.ndarray:
    """Lookup ``[len(native)]`` int64: the unified index of each native class, ``-1`` where ignored.

    ``present`` lists the native names that occur in the data: only those must resolve.
    """
    class_map = dict(class_map or {})
    unified = {name: i for i, name in enumerate(classes)}
    lookup = np.full(len(native), _DROP, dtype=np.int64)
    unmapped = []
    for i, name in enumerate(native):
        target = _target(name, class_map, unified)
        if target is _UNMAPPED:
            if name in present:
                unmapped.append(name)
            continue
        if target is None or target == IGNORE:
            continue
        if target not in unified:
            raise RegistryConfigError(f"{dataset or 'class_map'}: class {name!r} maps to {target!r}, which is not "
                                      f"one of the classes {list(classes)}")
        lookup[i] = unified[target]
    if unmapped:
        raise RegistryConfigError(
            f"{dataset or 'class_map'}: classes {unmapped} are not mapped onto {list(classes)}; add them to the "
            f"class map (a unified class or 'ignore'), or add '*: ignore'")
    return lookup


_UNMAPPED = object()


def _target(name: str, class_map: dict, unified: dict):
    if name in class_map:
        return class_map[name]
    if name in unified:
        return name
    if FALLBACK_KEY in class_map:
        return class_map[FALLBACK_KEY]
    return _UNMAPPED


def apply_class_map(samples: Sequence[Sample], classes: Sequence[str], class_map: Mapping | None = None, *,
                    dataset: str = "") -> tuple[list[Sample], MappingReport]:
    """New samples whose ``labels`` index ``classes``; objects of ignored classes are removed (and counted).

    Per-object arrays (``boxes``, ``labels``, ``difficult``, ``angle_known``, ``heading``, ``meta['obj_*']``) are
    filtered together. ``meta['classes']`` becomes ``tuple(classes)``; the native vocabulary moves to
    ``meta['native_classes']`` and each kept object's native index to ``meta['obj_native']``.
    """
    classes = tuple(classes)
    counts = _native_counts(samples)
    present = {native[i] for native, c in counts.items() for i in np.flatnonzero(c)}
    lookups = {native: resolve_class_map(native, classes, class_map, present, dataset) for native in counts}
    out = [_remap_sample(s, lookups[native_classes(s)], classes) for s in samples]
    return out, _report(counts, lookups, classes)


def _native_counts(samples: Sequence[Sample]) -> dict[tuple, np.ndarray]:
    """Objects per native class index, per distinct vocabulary."""
    counts: dict[tuple, np.ndarray] = {}
    for sample in samples:
        native = native_classes(sample)
        per_class = np.bincount(sample.labels, minlength=len(native))
        if native in counts:
            counts[native] += per_class
        else:
            counts[native] = per_class
    return counts


def _report(counts: dict, lookups: dict, classes: tuple) -> MappingReport:
    report = MappingReport()
    for native, per_class in counts.items():
        for i in np.flatnonzero(per_class):
            n, target = int(per_class[i]), int(lookups[native][i])
            if target == _DROP:
                report.ignored[native[i]] += n
                report.routes[(native[i], IGNORE)] += n
            else:
                report.kept[classes[target]] += n
                report.routes[(native[i], classes[target])] += n
    return report


def _remap_sample(sample: Sample, lookup: np.ndarray, classes: tuple) -> Sample:
    native = native_classes(sample)
    new_labels = lookup[sample.labels] if len(sample.labels) else np.zeros(0, np.int64)
    keep = new_labels != _DROP
    if keep.all():  # the common case: nothing to filter, the arrays are shared with the native sample
        meta = {k: v for k, v in sample.meta.items() if k != "class_names"}
        boxes, difficult, heading = sample.boxes, sample.difficult, sample.heading
        angle_known = sample.angle_known
        meta["obj_native"] = sample.labels
    else:
        meta = {k: (np.asarray(v)[keep] if k.startswith("obj_") else v) for k, v in sample.meta.items()
                if k != "class_names"}  # the native list moves to native_classes
        boxes, difficult, angle_known = sample.boxes[keep], sample.difficult[keep], sample.angle_known[keep]
        heading = None if sample.heading is None else sample.heading[keep]
        meta["obj_native"] = sample.labels[keep]
        new_labels = new_labels[keep]
    meta["native_classes"] = native
    meta["classes"] = classes
    return Sample(image_path=sample.image_path, width=sample.width, height=sample.height, boxes=boxes,
                  labels=new_labels, difficult=difficult, source=sample.source, heading=heading, meta=meta,
                  angle_known=angle_known)
