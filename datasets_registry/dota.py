"""DOTA v1.0 / v1.5 and VSAI (DOTA-format patches) importer.

Layouts: ``<root>/images/P0001.png`` + ``<root>/labelTxt/P0001.txt`` (DOTA), or
``<root>/<split>/images`` + ``<root>/<split>/annfiles`` (VSAI); the label folder is found automatically
(``labelTxt``, then ``annfiles``) or named with ``labels_dir``.

Label lines are read by :func:`obbdet.formats.read_dota`: ``imagesource:``/``gsd:`` headers are skipped,
a missing difficult is 0, difficult 2 (cut by the DOTA splitter) counts as difficult, zero-area polygons are
kept as zero-size difficult boxes. Every label file needs its image (read for its size) unless
``image_size`` is given.

*Unconfirmed* (datasets.md): DOTA corners run clockwise from the object's front-left, so the first edge
(front-left -> front-right) would give a vehicle's heading, but not for every annotator. By default no
heading is derived (``sample.heading`` is None); ``heading_from_corners=True`` sets ``heading`` to the
direction from the midpoint of corners 3-4 (rear) to the midpoint of corners 1-2 (front), radians in
``[-pi, pi)``. The boxes are minimum-area fits either way, independent of the corner order.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from obbdet.boxes import CORNERS, POINT_DIM, snap_heading_to_axis, wrap_angle
from obbdet.formats import POLY_COORDS, read_dota

from .common import (
    ImageFolder, ImportSummary, SampleBuilder, first_dir, list_files, progress, read_image_size, resolve_image,
)
from .label_text import read_with_formats

DOTA_CLASSES = ("plane", "baseball-diamond", "bridge", "ground-track-field", "small-vehicle", "large-vehicle",
                "ship", "tennis-court", "basketball-court", "storage-tank", "soccer-ball-field", "roundabout",
                "harbor", "swimming-pool", "helicopter", "container-crane")
DEFAULT_CLASS_MAP = {"small-vehicle": "car", "large-vehicle": "truck", "*": "ignore"}
LABEL_DIRS = ("labelTxt", "annfiles")


def load_dota(root, *, split: str | None = None, labels_dir: str | None = None, images_dir: str = "images",
              image_size: tuple[int, int] | None = None, heading_from_corners: bool = False, strict: bool = True,
              summary: ImportSummary | None = None) -> list:
    """Import a DOTA-format dataset (DOTA, VSAI, split patches) as :class:`Sample` records.

    root: the dataset folder; ``split`` (e.g. ``"train"``) selects ``<root>/<split>`` first.
    labels_dir / images_dir: folder names under it (labels default: ``labelTxt``, else ``annfiles``).
    image_size: ``(width, height)`` for every image, to skip reading image headers (fixed-size patches);
        images must still exist.
    heading_from_corners: derive ``heading`` from the corner order (see the module docstring).
    strict: raise at the first malformed line; False skips and counts malformed lines (see
        :mod:`datasets_registry.common`).
    Returns samples with native DOTA class names in ``meta['classes']``; ``meta['label_path']``.
    """
    summary = summary if summary is not None else ImportSummary(dataset="dota")
    base = Path(root) / split if split else Path(root)
    labels_folder = base / labels_dir if labels_dir else first_dir(base, LABEL_DIRS, "DOTA label")
    images = ImageFolder(base / images_dir, summary)
    builder = SampleBuilder("dota", summary, DOTA_CLASSES)
    label_files = list_files(labels_folder, (".txt",), summary)
    for label_path in progress(label_files, "dota"):
        _add_image(builder, label_path, images, image_size, heading_from_corners, strict, summary)
    _note_unlabeled(images, label_files, summary)
    return builder.finish()


def _add_image(builder: SampleBuilder, label_path: Path, images: ImageFolder, size, with_heading: bool,
               strict: bool, summary: ImportSummary) -> None:
    image_path = resolve_image(images, label_path.stem, label_path, summary, strict)
    if image_path is None:
        return
    summary.track_file(label_path)
    labels = read_with_formats(read_dota, label_path, summary, strict)
    if labels is None:
        return
    if size is None:
        size = read_image_size(image_path, summary, strict)
        if size is None:
            return
    zero_area = int((labels.boxes[:, 3] <= 0).sum()) if len(labels) else 0
    if zero_area:  # read_dota keeps them as zero-size difficult boxes (and logs the lines)
        summary.note("zero-area boxes kept as difficult", count=zero_area)
    if with_heading:
        heading = _corner_headings(label_path, len(labels), summary)
        # onto the box's long axis; a first edge along the vehicle's side (not its front) gives NaN, not a guess
        labels.heading = None if heading is None else snap_heading_to_axis(heading, labels.boxes[:, 4],
                                                                           max_deviation=math.pi / 4)
    builder.add_labels(image_path, size[0], size[1], labels, meta={"label_path": str(label_path)})


def _corner_headings(label_path: Path, count: int, summary: ImportSummary) -> np.ndarray | None:
    """Headings ``[count]`` (radians, ``[-pi, pi)``, NaN for zero-size objects) from the corner order.

    Only the corner order is taken from the lines here; the objects were validated by ``read_dota``.
    Lines it would reject (lenient mode) are left out the same way; if the counts still differ, the file
    gets no heading (counted in the notes).
    """
    corners = []
    for line in label_path.read_text(encoding="utf-8-sig").splitlines():
        tokens = line.split()
        if len(tokens) not in (POLY_COORDS + 1, POLY_COORDS + 2):
            continue
        if len(tokens) == POLY_COORDS + 2 and tokens[-1] not in ("0", "1", "2"):
            continue
        try:
            values = [float(t) for t in tokens[:POLY_COORDS]]
        except ValueError:
            continue
        if all(math.isfinite(v) for v in values):
            corners.append(values)
    if len(corners) != count:
        summary.note("files without corner headings (lines did not match the objects)")
        return None
    polys = np.asarray(corners, np.float64).reshape(-1, CORNERS, POINT_DIM)
    direction = (polys[:, 0] + polys[:, 1] - polys[:, 2] - polys[:, 3]) / 2  # rear midpoint -> front midpoint
    heading = wrap_angle(np.arctan2(direction[:, 1], direction[:, 0]), low=-math.pi, period=2 * math.pi)
    return np.where(np.hypot(direction[:, 0], direction[:, 1]) > 0, heading, np.nan)


def _note_unlabeled(images: ImageFolder, label_files: list[Path], summary: ImportSummary) -> None:
    labelled = {p.stem for p in label_files}
    unlabeled = sum(1 for stem in images.stems() if stem not in labelled)
    if unlabeled:
        summary.note("images without a label file (not imported)", count=unlabeled)


def load_vsai(root, *, split: str | None = None, labels_dir: str = "annfiles", **options) -> list:
    """VSAI: DOTA lines without headers in ``<root>/<split>/{images,annfiles}``; see :func:`load_dota`."""
    options.setdefault("summary", ImportSummary(dataset="vsai"))
    samples = load_dota(root, split=split, labels_dir=labels_dir, **options)
    for sample in samples:
        sample.source = "vsai"
    return samples
