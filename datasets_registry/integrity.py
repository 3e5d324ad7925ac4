"""Integrity checks of a registry build, each of which once let a wrong training run finish without a word:

- the same image twice (two entries over one folder, a folder listed twice, a byte-identical copy elsewhere):
  with a split on each entry, one copy trains and the other validates, and the validation score is inflated.
  Images are compared by :func:`~datasets_registry.common.image_fingerprint` (size + content hash, stored in
  ``meta['fingerprint']`` by the import and its cache), together with ``meta['crop']`` (crops of one file
  are different samples);
- a ``class_map`` key that names no class of the dataset (a typo such as ``small-vehikle`` beside
  ``'*': ignore`` sends every car to ``ignore``);
- a unified class that receives nothing from a dataset while its objects are mapped to ``ignore``.

Each check returns :class:`Finding` records; :func:`~datasets_registry.config.build_registry` raises the
errors (or, for duplicates in lenient mode, keeps the first copy and warns) and lists the warnings in the
start-up table; ``python -m datasets_registry CONFIG --check`` prints them all.
"""
from __future__ import annotations

import difflib
import os
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

from obbdet.structures import Sample

from .classes import FALLBACK_KEY, MappingReport, native_classes

DUPLICATE = "duplicate image"
AMBIGUOUS = "several image files for one label"
CLASS_MAP = "class_map key"
IGNORED = "class left empty by ignore"
IMPORT = "import problem"
EMPTY_EPOCH = "empty virtual epoch"


@dataclass(frozen=True)
class Finding:
    """One problem: ``kind`` (the constants above), a one-line ``message`` naming the dataset(s) and files, and
    whether it is an ``error`` under the dataset's ``strict`` setting (False: a warning)."""

    kind: str
    message: str
    error: bool

    def __str__(self) -> str:
        return f"{'error' if self.error else 'warning'}: {self.message}"


# ---------------------------------------------------------------------------------------------------
# The same image more than once
# ---------------------------------------------------------------------------------------------------

def image_identity(sample: Sample) -> tuple:
    """What makes two samples the same image: the file's fingerprint (else its real path) and the crop."""
    fingerprint = sample.meta.get("fingerprint") or ("path", os.path.realpath(sample.image_path))
    crop = sample.meta.get("crop")
    return fingerprint, None if crop is None else tuple(int(v) for v in crop)


def find_duplicates(entries: Sequence[tuple[str, bool, Sequence[tuple[Sample, str]]]]) -> tuple[list[Finding], set]:
    """Findings for every sample whose image was already seen, and the ``id`` of each such later copy.

    entries: ``(dataset name, strict, [(sample, "train" | "val"), ...])`` in config order; the first copy (in
    that order) is the one kept. A copy is an error when either dataset is strict.
    """
    seen: dict[tuple, tuple[str, bool, Sample, str]] = {}
    findings, dropped = [], set()
    for name, strict, items in entries:
        for sample, side in items:
            key = image_identity(sample)
            first = seen.get(key)
            if first is None:
                seen[key] = (name, strict, sample, side)
                continue
            dropped.add(id(sample))
            first_name, first_strict, first_sample, first_side = first
            leak = " (train/val leak)" if side != first_side else ""
            where = "again" if first_name == name else f"in {name!r} and {first_name!r}"
            findings.append(Finding(DUPLICATE, f"the same image {where}{leak}: {sample.image_path} ({name}, {side}) "
                                    f"= {first_sample.image_path} ({first_name}, {first_side})",
                                    error=strict or first_strict))
    return findings, dropped


def duplicates_error(findings: Sequence[Finding], shown: int = 3) -> str:
    """One sentence for the duplicate errors: how many, the first few pairs, and what to do."""
    listed = "; ".join(f.message for f in findings[:shown])
    more = f"; and {len(findings) - shown} more" if len(findings) > shown else ""
    return (f"{len(findings)} image(s) reach the registry more than once (same file size and content hash): "
            f"{listed}{more}; list every image once (strict: false keeps the first copy and drops the others)")


# ---------------------------------------------------------------------------------------------------
# Class maps
# ---------------------------------------------------------------------------------------------------

def dataset_vocabulary(samples: Sequence[Sample]) -> list[str]:
    """The native class names of an import (every vocabulary its samples use, in order of first appearance)."""
    names: dict[str, None] = {}
    for vocabulary in dict.fromkeys(native_classes(s) for s in samples):
        names.update(dict.fromkeys(vocabulary))
    return list(names)


def class_map_findings(name: str, kind: str, class_map: Mapping | None, samples: Sequence[Sample]) -> list[Finding]:
    """An error for each ``class_map`` key that is no class of the dataset, with its classes and the closest one.

    Unchecked when the import has no samples (its vocabulary is unknown then).
    """
    if not class_map or not samples:
        return []
    vocabulary = dataset_vocabulary(samples)
    findings = []
    for key in class_map:
        if key == FALLBACK_KEY or key in vocabulary:
            continue
        close = difflib.get_close_matches(str(key), vocabulary, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        findings.append(Finding(CLASS_MAP, f"dataset {name!r}: class_map key {key!r} is not a class of this {kind} "
                                f"dataset{hint}; its classes: {', '.join(vocabulary)}", error=True))
    return findings


def ignored_class_findings(name: str, mapping: MappingReport, class_map: Mapping | None, classes: Sequence[str],
                           main_class: str | None) -> list[Finding]:
    """Warnings for a dataset whose objects are all mapped to ``ignore``, or that leaves a class its class_map
    routes to (or the main class, whose width scales the images) without any object while it ignores some."""
    ignored = sum(mapping.ignored.values())
    if not ignored:
        return []
    natives = ", ".join(f"{native} {n}" for native, n in Counter(mapping.ignored).most_common(4))
    if len(mapping.ignored) > 4:
        natives += ", ..."
    if not sum(mapping.kept.values()):
        return [Finding(IGNORED, f"dataset {name!r}: all {ignored} objects are mapped to ignore ({natives}); no "
                        "class receives any", error=False)]
    targets = [t for k, t in (class_map or {}).items() if k != FALLBACK_KEY and t in classes]
    if main_class in classes:
        targets.append(main_class)
    return [Finding(IGNORED, f"dataset {name!r}: class {target!r} receives no object while {ignored} are mapped "
                    f"to ignore ({natives})", error=False)
            for target in dict.fromkeys(targets) if not mapping.kept.get(target)]
