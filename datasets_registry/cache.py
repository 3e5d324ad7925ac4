"""Annotation cache: parse a dataset once, reuse the parse while its source files are unchanged.

An entry is keyed by the importer kind, the absolute root, the import options and a fingerprint of the
importer code. It stores the files the import read (size and mtime of each) and the folders it listed
(mtime: any file added, removed or renamed changes it); any difference re-parses that dataset. Entries hold
the samples column-wise (one array per field for the whole dataset), so loading 100k samples is a few
large reads rather than 100k small ones; they are written atomically, so a killed run leaves the old entry.

Default folder: ``<root>/.obbdet_cache`` when the dataset folder is writable, else ``$XDG_CACHE_HOME/obbdet``
(``~/.cache/obbdet``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Callable

import numpy as np

from obbdet.io_utils import atomic_output
from obbdet.structures import Sample

from .common import ImportSummary, add_fingerprints

logger = logging.getLogger(__name__)

CACHE_FORMAT = 3  # 2: per-object angle_known instead of a per-sample aabb_only flag; 3: meta['fingerprint']
CACHE_DIR_NAME = ".obbdet_cache"
_SOURCE_MODULES = (f"{__package__}.common", f"{__package__}.label_text", "obbdet.formats", "obbdet.boxes",
                   "obbdet.structures")


def default_cache_dir(root) -> Path:
    """``<root>/.obbdet_cache`` when ``root`` is a writable folder, else the user cache folder."""
    if root is not None and Path(root).is_dir() and os.access(root, os.W_OK):
        return Path(root) / CACHE_DIR_NAME
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "obbdet"


def cached_import(kind: str, importer: Callable, root, options: dict, *, cache_dir=None,
                  summary: ImportSummary | None = None, code_modules: tuple[str, ...] = ()) -> list[Sample]:
    """``importer(root, summary=summary, **options)``, served from the cache while its sources are unchanged.

    code_modules: modules whose source, besides the importer's own, decides the parse (a change re-parses).

    On a hit the stored import summary (counts, skips, messages) is copied into ``summary`` and logged, so
    skipped lines are reported on every start. Every sample carries ``meta['fingerprint']``
    (:func:`~datasets_registry.common.image_fingerprint`), computed on the parse and stored with it. An import
    that tracked no source file is not cached.
    """
    summary = summary if summary is not None else ImportSummary(dataset=kind)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir(root)
    folder.mkdir(parents=True, exist_ok=True)  # before parsing: creating it must not look like a source change
    key = _entry_key(kind, (importer.__module__, *code_modules), root, options)
    path = folder / f"{kind}-{key[:20]}.pkl"
    samples = _read_entry(path, key, summary)
    if samples is not None:
        logger.info("%s: %d samples from the annotation cache %s", kind, len(samples), path)
        summary.log()
        return samples
    samples = importer(root, summary=summary, **options)
    add_fingerprints(samples, summary)  # stored with the entry: a warm start does not read the images again
    summary.log()
    if summary.files or summary.dirs:
        _write_entry(path, key, samples, summary)
    return samples


# ---------------------------------------------------------------------------------------------------
# Keys and validation
# ---------------------------------------------------------------------------------------------------

def _entry_key(kind: str, modules: tuple[str, ...], root, options: dict) -> str:
    """Hash of the kind, absolute root, options and the source code of the importer and its helpers."""
    description = json.dumps({"kind": kind, "root": None if root is None else str(Path(root).resolve()),
                              "options": options, "format": CACHE_FORMAT}, sort_keys=True, default=repr)
    digest = hashlib.sha256(description.encode())
    for module_name in (*modules, *_SOURCE_MODULES):
        digest.update(_module_source(module_name))
    return digest.hexdigest()


def _module_source(module_name: str) -> bytes:
    import importlib

    module = importlib.import_module(module_name)
    source = getattr(module, "__file__", None)
    return Path(source).read_bytes() if source and Path(source).is_file() else module_name.encode()


def sources_unchanged(files: dict, dirs: dict) -> bool:
    """True when every file still has its ``(size, mtime_ns)`` and every folder its ``mtime_ns``."""
    try:
        for folder, mtime in dirs.items():
            if os.stat(folder).st_mtime_ns != mtime:
                return False
        for name, (size, mtime) in files.items():
            stat = os.stat(name)
            if stat.st_size != size or stat.st_mtime_ns != mtime:
                return False
    except OSError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------
# Entries: a small header (validation) followed by the column-wise payload
# ---------------------------------------------------------------------------------------------------

def _read_entry(path: Path, key: str, summary: ImportSummary) -> list[Sample] | None:
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as handle:
            header = pickle.load(handle)
            if header.get("format") != CACHE_FORMAT or header.get("key") != key:
                return None
            if not sources_unchanged(header["files"], header["dirs"]):
                logger.info("%s: sources changed since %s was written; parsing again", summary.dataset, path)
                return None
            payload = pickle.load(handle)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, KeyError, TypeError, ValueError) as exc:
        logger.warning("annotation cache %s is unreadable (%s); parsing again", path, exc)
        return None
    _restore_summary(summary, header)
    return unpack_samples(payload)


def _write_entry(path: Path, key: str, samples: list[Sample], summary: ImportSummary) -> None:
    header = {"format": CACHE_FORMAT, "key": key, "files": summary.files, "dirs": summary.dirs,
              "summary": {"images": summary.images, "objects": summary.objects, "skipped": dict(summary.skipped),
                          "notes": dict(summary.notes), "messages": summary.messages}}
    try:
        with atomic_output(path, "wb") as handle:
            pickle.dump(header, handle, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.dump(pack_samples(samples), handle, protocol=pickle.HIGHEST_PROTOCOL)
    except OSError as exc:
        logger.warning("could not write the annotation cache %s (%s)", path, exc)


def _restore_summary(summary: ImportSummary, header: dict) -> None:
    stored = header["summary"]
    summary.images += stored["images"]
    summary.objects += stored["objects"]
    summary.skipped.update(stored["skipped"])
    summary.notes.update(stored["notes"])
    summary.messages.extend(stored["messages"])
    summary.files.update(header["files"])
    summary.dirs.update(header["dirs"])


# ---------------------------------------------------------------------------------------------------
# Column-wise packing
# ---------------------------------------------------------------------------------------------------

_OBJECT_FIELDS = ("boxes", "labels", "difficult", "angle_known")


def pack_samples(samples: list[Sample]) -> dict:
    """Samples as columns: per-object arrays concatenated, per-sample values in lists/arrays.

    ``meta`` per-object arrays (``obj_*``) present in every sample are concatenated too; the rest of
    ``meta`` stays per sample (pickle stores a tuple shared by all samples, like ``classes``, once).
    """
    counts = np.asarray([len(s.boxes) for s in samples], np.int64)
    has_heading = np.asarray([s.heading is not None for s in samples], bool)
    obj_keys = [{k for k in s.meta if k.startswith("obj_")} for s in samples]
    common_obj = set.intersection(*obj_keys) if obj_keys else set()
    columns = {name: _concat([getattr(s, name) for s in samples]) for name in _OBJECT_FIELDS}
    columns["heading"] = _concat([s.heading for s in samples if s.heading is not None])
    obj_meta = {key: _concat([np.asarray(s.meta[key]) for s in samples]) for key in sorted(common_obj)}
    return {
        "count": counts, "has_heading": has_heading, "columns": columns, "obj_meta": obj_meta,
        "image_path": [s.image_path for s in samples], "width": np.asarray([s.width for s in samples], np.int64),
        "height": np.asarray([s.height for s in samples], np.int64), "source": [s.source for s in samples],
        "meta": [{k: v for k, v in s.meta.items() if k not in common_obj} for s in samples],
    }


def _concat(arrays: list) -> np.ndarray | None:
    return np.concatenate(arrays) if arrays else None


def unpack_samples(payload: dict) -> list[Sample]:
    """The inverse of :func:`pack_samples` (per-object arrays are views into the stored columns)."""
    counts = payload["count"]
    if len(counts) == 0:
        return []
    splits = np.cumsum(counts)[:-1]
    columns = {name: np.split(col, splits) for name, col in payload["columns"].items()
               if name != "heading" and col is not None}
    heading_splits = np.cumsum(counts[payload["has_heading"]])[:-1]
    headings = iter(np.split(payload["columns"]["heading"], heading_splits)) if payload["has_heading"].any() else None
    obj_meta = {key: np.split(col, splits) for key, col in payload["obj_meta"].items()}
    samples = []
    for i, meta in enumerate(payload["meta"]):
        meta = dict(meta)
        for key, parts in obj_meta.items():
            meta[key] = parts[i]
        samples.append(Sample(
            image_path=payload["image_path"][i], width=int(payload["width"][i]), height=int(payload["height"][i]),
            boxes=columns["boxes"][i], labels=columns["labels"][i], difficult=columns["difficult"][i],
            source=payload["source"][i], heading=next(headings) if payload["has_heading"][i] else None,
            meta=meta, angle_known=columns["angle_known"][i]))
    return samples
