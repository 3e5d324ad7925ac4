"""Building blocks shared by the importers.

The importer contract (documented once, here)
---------------------------------------------
An importer is ``load_<kind>(root, *, strict=True, summary=None, **format_options) -> list[Sample]``:

* ``boxes`` ``[N, 5]`` float32 xywha le90 (radians, pixels of the image as the loader will deliver it);
* ``labels`` ``[N]`` int64 indices into ``sample.meta['classes']``, the dataset's **native** class names
  (a tuple shared by every sample of one import; dirty spellings already normalized). Mapping onto the
  registry's unified taxonomy is a separate step (:func:`datasets_registry.classes.apply_class_map`), so
  a cached parse serves every mapping;
* ``difficult`` ``[N]`` bool, ``heading`` ``[N]`` float32 radians in ``[-pi, pi)`` (NaN where unknown) or
  None, ``angle_known`` ``[N]`` bool: False for every object the source gives only as an axis-aligned box
  (its le90 box is then the bounds at angle 0 / -pi/2, which must not be learnt as an angle);
* ``meta`` keys starting with ``obj_`` are per-object arrays (first axis N) that follow the objects through
  class mapping (e.g. ``obj_aabb``); ``crop = (x0, y0, x1, y1)`` asks the loader to crop the decoded image
  to ``image[y0:y1, x0:x1]`` (as :func:`obbdet.data.load_image_rgb` does); ``label_path`` names the
  source file.

``strict=True`` raises :class:`~obbdet.formats.LabelFormatError` at the first malformed line or element
(file and line named); ``strict=False`` skips that line/element only, and counts it in the
:class:`ImportSummary` (``summary.skipped``) with the same one-line message. Quirks a dataset is known to
have (DroneVehicle ``<point>`` objects, VEDAI geometry-less lines, DLR-3K dashed lines) are skipped in both
modes, and counted too: no object disappears without a count.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from obbdet.boxes import BOX_DIM, CORNERS, POINT_DIM, poly_to_xywha
from obbdet.formats import IMAGE_EXTENSIONS, LabelFormatError
from obbdet.structures import ImageLabels, Sample, angle_known_flags

logger = logging.getLogger(__name__)

MAX_MESSAGES = 50  # one-line reports kept per import (all skips are counted regardless)
MAX_LOGGED = 10  # skip reports logged individually before the summary takes over


# ---------------------------------------------------------------------------------------------------
# Import summary
# ---------------------------------------------------------------------------------------------------

@dataclass
class ImportSummary:
    """What one import read, kept and skipped.

    ``skipped`` counts skipped objects/lines/files by reason; ``notes`` counts noteworthy things that lose
    nothing (zero-area boxes kept as difficult, images without label files); ``messages`` keeps the first
    ``MAX_MESSAGES`` one-line reports. ``files`` maps every file the import read to ``(size, mtime_ns)``
    and ``dirs`` every folder it listed to its ``mtime_ns``; the annotation cache uses both to tell when a
    parse is stale.
    """

    dataset: str = ""
    images: int = 0
    objects: int = 0
    skipped: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)
    files: dict[str, tuple[int, int]] = field(default_factory=dict)
    dirs: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, message: str, count: int = 1) -> None:
        """Count ``count`` skipped items under ``reason`` and keep/log the one-line ``message``."""
        self.skipped[reason] += count
        self._remember(message)

    def note(self, reason: str, message: str | None = None, count: int = 1) -> None:
        """Count something worth reporting that loses nothing."""
        self.notes[reason] += count
        if message is not None:
            self._remember(message)

    def error(self, err: LabelFormatError, strict: bool, reason: str = "malformed") -> None:
        """Raise ``err`` in strict mode; otherwise count it as one skipped item."""
        if strict:
            raise err
        self.skip(reason, str(err))

    def _remember(self, message: str) -> None:
        total = sum(self.skipped.values()) + sum(self.notes.values())
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(message)
        if total <= MAX_LOGGED:
            logger.warning("%s", message)

    def track_file(self, path) -> None:
        """Record a source file (size, mtime) for cache validation."""
        stat = os.stat(path)
        self.files[str(path)] = (stat.st_size, stat.st_mtime_ns)

    def track_dir(self, path) -> None:
        """Record a listed folder (its mtime changes when entries are added, removed or renamed)."""
        self.dirs[str(path)] = os.stat(path).st_mtime_ns

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def format(self) -> str:
        """One paragraph: counts, then the skip and note reasons."""
        text = f"{self.dataset or 'import'}: {self.images} images, {self.objects} objects"
        if self.skipped:
            text += "; skipped " + ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        if self.notes:
            text += "; notes: " + ", ".join(f"{n} {reason}" for reason, n in sorted(self.notes.items()))
        return text

    def log(self) -> None:
        level = logging.WARNING if self.skipped else logging.INFO
        logger.log(level, "%s", self.format())
        if self.skipped and sum(self.skipped.values()) > MAX_LOGGED:
            logger.warning("%s: first reports:\n  %s", self.dataset, "\n  ".join(self.messages[:MAX_LOGGED]))


# ---------------------------------------------------------------------------------------------------
# Samples with a native class vocabulary
# ---------------------------------------------------------------------------------------------------

class SampleBuilder:
    """Collects one dataset's images into :class:`Sample` records with native class names.

    ``native_classes`` fixes the order of the known names; names met later are appended in order of first
    appearance (file order is sorted, so the vocabulary is deterministic). :meth:`finish` gives every
    sample the same ``meta['classes']`` tuple.
    """

    def __init__(self, source: str, summary: ImportSummary, native_classes: Sequence[str] = ()):
        self.source = source
        self.summary = summary
        self.classes: list[str] = list(native_classes)
        self._index = {name: i for i, name in enumerate(self.classes)}
        self.samples: list[Sample] = []

    def class_index(self, name: str) -> int:
        index = self._index.get(name)
        if index is None:
            index = self._index[name] = len(self.classes)
            self.classes.append(name)
        return index

    def add(self, image_path, width: int, height: int, boxes, class_names: Sequence[str], *,
            difficult=None, heading=None, angle_known=None, aabb_only: bool = False,
            meta: dict | None = None) -> Sample:
        """Append one image. ``boxes`` ``[N, 5]`` xywha le90; ``heading`` ``[N]`` radians or None.

        ``angle_known`` ``[N]`` bool (None: all True); ``aabb_only=True`` is shorthand for all False.
        """
        n = len(class_names)
        boxes = np.asarray(boxes, dtype=np.float32).reshape(n, BOX_DIM)
        labels = np.fromiter((self.class_index(c) for c in class_names), dtype=np.int64, count=n)
        difficult = np.zeros(n, bool) if difficult is None else np.asarray(difficult, dtype=bool).reshape(n)
        angle_known = angle_known_flags(angle_known, n, aabb_only)
        if heading is not None:
            heading = np.asarray(heading, dtype=np.float32).reshape(n)
            if np.isnan(heading).all():
                heading = None
        sample = Sample(image_path=str(image_path), width=int(width), height=int(height), boxes=boxes,
                        labels=labels, difficult=difficult, source=self.source, heading=heading,
                        meta=dict(meta or {}), angle_known=angle_known)
        self.samples.append(sample)
        self.summary.images += 1
        self.summary.objects += n
        return sample

    def add_labels(self, image_path, width: int, height: int, labels: ImageLabels, *, aabb_only: bool = False,
                   meta: dict | None = None) -> Sample:
        """Append one image from an :class:`ImageLabels` (objects flagged ``ignore`` are dropped and counted).

        Labels read from an axis-aligned format (``labels.aabb`` set) have no known angle, like
        ``aabb_only=True``.
        """
        keep = ~np.asarray(labels.ignore, dtype=bool) if len(labels) else np.zeros(0, bool)
        if len(labels) and not keep.all():
            self.summary.note("ignore-flagged objects dropped", count=int((~keep).sum()))
        meta = dict(meta or {})
        if labels.aabb is not None:
            meta["obj_aabb"] = np.asarray(labels.aabb, dtype=np.float32)[keep]
        heading = None if labels.heading is None else np.asarray(labels.heading)[keep]
        return self.add(image_path, width, height, np.asarray(labels.boxes)[keep],
                        [c for c, k in zip(labels.classes, keep) if k], difficult=np.asarray(labels.difficult)[keep],
                        heading=heading, aabb_only=aabb_only or labels.aabb is not None, meta=meta)

    def finish(self) -> list[Sample]:
        classes = tuple(self.classes)
        for sample in self.samples:
            sample.meta["classes"] = classes
        return self.samples


# ---------------------------------------------------------------------------------------------------
# Files and images
# ---------------------------------------------------------------------------------------------------

def progress(items, desc: str):
    """A tqdm bar over ``items`` on a terminal (silent when output is not a TTY)."""
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="file", disable=None, leave=False, mininterval=1.0)


def list_files(folder, suffixes: Iterable[str], summary: ImportSummary) -> list[Path]:
    """Files of ``folder`` whose name ends with one of ``suffixes`` (case-insensitive), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    suffixes = tuple(s.lower() for s in suffixes)
    summary.track_dir(folder)
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.name.lower().endswith(suffixes) and e.is_file()]
    return [folder / name for name in sorted(names)]


def first_dir(base: Path, candidates: Sequence[str], what: str) -> Path:
    """The first existing ``base / candidate`` folder; FileNotFoundError listing what was tried."""
    for name in candidates:
        if (base / name).is_dir():
            return base / name
    tried = ", ".join(str(base / c) for c in candidates)
    raise FileNotFoundError(f"no {what} folder found (tried {tried})")


class ImageFolder:
    """One listing of an image folder: finds an image by stem with any of ``extensions`` (case-insensitive).

    A stem with several image files (``P1888.png`` and ``P1888.jpg``) is ambiguous: its labels belong to one
    of them and the other may differ in size or content, so :func:`resolve_image` / :func:`unique_image`
    refuse to guess (``find`` alone still returns the first by ``extensions`` order).
    """

    def __init__(self, folder, summary: ImportSummary, extensions: Sequence[str] = IMAGE_EXTENSIONS):
        self.folder = Path(folder)
        self.summary = summary
        self._by_stem: dict[str, str] = {}
        self._all: dict[str, list[str]] = {}
        if not self.folder.is_dir():
            return
        summary.track_dir(self.folder)
        rank = {ext.lower(): i for i, ext in enumerate(extensions)}
        best: dict[str, tuple[int, str]] = {}
        with os.scandir(self.folder) as entries:
            for entry in entries:
                stem, ext = os.path.splitext(entry.name)
                order = rank.get(ext.lower())
                if order is None:
                    continue
                self._all.setdefault(stem, []).append(entry.name)
                if stem not in best or order < best[stem][0]:
                    best[stem] = (order, entry.name)
        self._by_stem = {stem: name for stem, (_, name) in best.items()}

    def __len__(self) -> int:
        return len(self._by_stem)

    def stems(self) -> list[str]:
        return sorted(self._by_stem)

    def find(self, stem: str) -> Path | None:
        name = self._by_stem.get(stem)
        return None if name is None else self.folder / name

    def candidates(self, stem: str) -> list[Path]:
        """Every image file of ``stem`` (sorted by name); more than one makes the stem ambiguous."""
        return [self.folder / name for name in sorted(self._all.get(stem, ()))]


def image_size(path, summary: ImportSummary) -> tuple[int, int]:
    """``(width, height)`` of an image, read from its header only (PIL opens lazily)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            size = image.size
    except (OSError, UnidentifiedImageError) as exc:
        raise LabelFormatError(path, f"cannot read the image header ({exc.__class__.__name__})") from None
    summary.track_file(path)
    return int(size[0]), int(size[1])


def read_image_size(path, summary: ImportSummary, strict: bool) -> tuple[int, int] | None:
    """:func:`image_size`, or None after counting an unreadable image in lenient mode."""
    try:
        return image_size(path, summary)
    except LabelFormatError as err:
        summary.error(err, strict, reason="unreadable images")
        return None


AMBIGUOUS_IMAGES = "labels with several image files"  # the skip reason (and --check finding) of an ambiguous stem


def unique_image(images: ImageFolder, stem: str, label_path, summary: ImportSummary, strict: bool) -> Path | None:
    """``images.find(stem)`` unless several image files share the stem: then an error naming all of them
    (strict) or a counted skip (None). Which file the labels were drawn on cannot be told from the names,
    and picking by extension order once paired 712x557 labels with a 100x100 thumbnail."""
    found = images.candidates(stem)
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        summary.error(LabelFormatError(label_path, f"several image files share the stem {stem!r} in "
                                       f"{images.folder}: {names}; keep the one the labels belong to"), strict,
                      reason=AMBIGUOUS_IMAGES)
        return None
    return images.find(stem)


def resolve_image(images: ImageFolder, stem: str, label_path, summary: ImportSummary, strict: bool) -> Path | None:
    """The image of ``label_path``; a missing image is an error (strict) or a counted skip of the file, and so
    is a stem with several image files (:func:`unique_image`)."""
    if len(images.candidates(stem)) > 1:
        return unique_image(images, stem, label_path, summary, strict)
    path = images.find(stem)
    if path is None:
        summary.error(LabelFormatError(label_path, f"no image '{stem}.*' in {images.folder}"), strict,
                      reason="files without image")
    return path


# ---------------------------------------------------------------------------------------------------
# Image fingerprints (duplicate detection across datasets and splits)
# ---------------------------------------------------------------------------------------------------

FINGERPRINT_CHUNK = 64 * 1024


def image_fingerprint(path) -> str | None:
    """``"<size>:<hash>"``: the file size and a blake2b of its first, middle and last 64 KiB (the whole file
    when it is smaller); None when the file cannot be read.

    Enough to tell images apart without reading them whole: two different image files of the same size
    practically never agree in all three chunks, because compressed formats (PNG, JPEG, compressed TIFF)
    differ throughout once any pixel differs, and the header chunk holds the dimensions. The middle chunk
    covers uncompressed TIFF/BMP tiles that share blank (nodata) top and bottom rows. The purpose is to
    find copies (the same folder listed twice, a byte-identical file in another folder), not to resist
    forgery; a false match would only be reported with both paths named.
    """
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            digest = hashlib.blake2b(str(size).encode(), digest_size=16)
            if size <= 3 * FINGERPRINT_CHUNK:
                digest.update(handle.read())
            else:
                for offset in (0, size // 2 - FINGERPRINT_CHUNK // 2, size - FINGERPRINT_CHUNK):
                    handle.seek(offset)
                    digest.update(handle.read(FINGERPRINT_CHUNK))
    except OSError:
        return None
    return f"{size}:{digest.hexdigest()}"


def add_fingerprints(samples: Sequence[Sample], summary: ImportSummary | None = None) -> None:
    """Set ``meta['fingerprint']`` (:func:`image_fingerprint`) on samples that lack it, once per image file.

    Runs before the annotation cache stores an import, so a warm start reuses the fingerprints instead of
    reading the images again; the image files are tracked (size, mtime) so a replaced image re-imports.
    """
    known: dict[str, str | None] = {}
    for sample in samples:
        if sample.meta.get("fingerprint"):
            continue
        path = str(sample.image_path)
        if path not in known:
            known[path] = image_fingerprint(path)
            if known[path] is not None and summary is not None:
                summary.track_file(path)
        if known[path] is not None:
            sample.meta["fingerprint"] = known[path]


# ---------------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------------

def fit_polygons(polys, summary: ImportSummary, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Fit le90 boxes to polygons ``[N, 4, 2]``; returns (boxes ``[N, 5]`` float64, zero-area mask ``[N]``).

    Zero-area polygons follow the project-wide policy of ``obbdet.formats.read_dota``: kept as zero-size
    boxes, marked difficult by the caller, counted in ``summary.notes`` and reported with ``where``.
    """
    polys = np.asarray(polys, dtype=np.float64).reshape(-1, CORNERS, POINT_DIM)
    if len(polys) == 0:
        return np.zeros((0, BOX_DIM)), np.zeros(0, bool)
    boxes = poly_to_xywha(polys, warn=False)
    zero_area = boxes[:, 3] <= 1e-12 * np.maximum(boxes[:, 2], 1.0)
    if zero_area.any():
        summary.note("zero-area boxes kept as difficult", f"{where}: {int(zero_area.sum())} zero-area polygon(s) "
                     "kept as zero-size difficult boxes", count=int(zero_area.sum()))
    return boxes, zero_area
