"""YOLO-OBB (ultralytics) importer.

Layout: ``<root>/images/<split>/x.jpg`` + ``<root>/labels/<split>/x.txt`` (``split=None``: ``images/`` and
``labels/`` directly), lines ``class_index x1 y1 x2 y2 x3 y3 x4 y4`` with corners normalized to ``[0, 1]``,
read by :func:`obbdet.formats.read_yolo_obb` after the image header gives the size. Class names come from
``class_names`` or the dataset YAML's ``names:`` (a list or an ``{index: name}`` dict; ``data_yaml``, else
the first ``*.yaml`` under ``root``, by name, that has ``names``). An image without a label file is a background image
(no objects), as in ultralytics.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from obbdet.formats import LabelFormatError, read_yolo_obb

from .common import (
    ImageFolder, ImportSummary, SampleBuilder, list_files, progress, read_image_size, unique_image,
)
from .label_text import read_with_formats

DEFAULT_CLASS_MAP: dict = {}  # names are the dataset's own; the registry maps them (identity where equal)


def load_yolo_obb(root, *, split: str | None = "train", data_yaml=None, class_names=None, images_dir: str = "images",
                  labels_dir: str = "labels", strict: bool = True, summary: ImportSummary | None = None) -> list:
    """Import a YOLO-OBB dataset split; returns samples with the YAML's names in ``meta['classes']``."""
    summary = summary if summary is not None else ImportSummary(dataset="yolo_obb")
    root = Path(root)
    names = list(class_names) if class_names is not None else _yaml_names(root, data_yaml, summary)
    images = ImageFolder(root / images_dir / split if split else root / images_dir, summary)
    labels_folder = root / labels_dir / split if split else root / labels_dir
    label_files = {p.stem: p for p in list_files(labels_folder, (".txt",), summary)} if labels_folder.is_dir() else {}
    for stem in sorted(set(label_files) - set(images.stems())):
        summary.error(LabelFormatError(label_files[stem], f"no image '{stem}.*' in {images.folder}"), strict,
                      reason="files without image")
    builder = SampleBuilder("yolo_obb", summary, names)
    for stem in progress(images.stems(), "yolo_obb"):
        label_path = label_files.get(stem)
        image_path = unique_image(images, stem, label_path or images.folder / stem, summary, strict)
        if image_path is None:
            continue
        size = read_image_size(image_path, summary, strict)
        if size is None:
            continue
        if label_path is None:
            summary.note("background images (no label file)")
            builder.add(image_path, size[0], size[1], [], [])
            continue
        summary.track_file(label_path)
        labels = read_with_formats(lambda p: read_yolo_obb(p, size, names), label_path, summary, strict)
        if labels is not None:
            builder.add_labels(image_path, size[0], size[1], labels, meta={"label_path": str(label_path)})
    return builder.finish()


def _yaml_names(root: Path, data_yaml, summary: ImportSummary) -> list[str]:
    candidates = [Path(data_yaml)] if data_yaml else sorted([*root.glob("*.yaml"), *root.glob("*.yml")])
    for path in candidates:
        summary.track_file(path)
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        names = data.get("names") if isinstance(data, dict) else None
        if isinstance(names, dict):
            return [str(names[k]) for k in sorted(names, key=int)]
        if isinstance(names, list):
            return [str(n) for n in names]
        if data_yaml:
            raise LabelFormatError(path, "dataset YAML has no 'names' list or dict")
    raise FileNotFoundError(f"yolo_obb: no dataset YAML with 'names' in {root}; pass class_names= or data_yaml=")
