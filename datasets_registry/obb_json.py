"""obb_json importer (the project's interchange format, read by :func:`obbdet.formats.read_obb_json`).

Layout: ``<root>/labels/*.json`` + ``<root>/images/*`` when those folders exist, else both in ``<root>``
(``labels_dir`` / ``images_dir`` override). The image is the file named by the document's ``"image"`` key,
else the image with the label file's stem; the size comes from ``width``/``height`` or the image header.
Objects flagged ``ignore`` are disabled markers: they are not imported (counted in the summary notes);
``difficult`` and ``heading`` are kept.
"""
from __future__ import annotations

from pathlib import Path

from obbdet.formats import LabelFormatError, read_obb_json

from .common import (
    ImageFolder, ImportSummary, SampleBuilder, list_files, progress, read_image_size, unique_image,
)
from .label_text import read_with_formats

DEFAULT_CLASS_MAP: dict = {}  # names are the files' own; the registry maps them (identity where equal)


def load_obb_json(root, *, labels_dir: str | None = None, images_dir: str | None = None, strict: bool = True,
                  summary: ImportSummary | None = None) -> list:
    """Import a folder of obb_json ground truth; returns samples with the files' class names in ``meta['classes']``."""
    summary = summary if summary is not None else ImportSummary(dataset="obb_json")
    root = Path(root)
    labels_folder = root / labels_dir if labels_dir else (root / "labels" if (root / "labels").is_dir() else root)
    images = ImageFolder(root / images_dir if images_dir else (root / "images" if (root / "images").is_dir() else root),
                         summary)
    builder = SampleBuilder("obb_json", summary)
    for label_path in progress(list_files(labels_folder, (".json",), summary), "obb_json"):
        summary.track_file(label_path)
        labels = read_with_formats(read_obb_json, label_path, summary, strict, json_objects=True)
        if labels is None:
            continue
        image_path = _image_path(labels.image, label_path, images, summary, strict)
        if image_path is False:
            continue
        if image_path is None:
            summary.error(LabelFormatError(label_path, f"no image {labels.image or label_path.stem + '.*'!r} in "
                                           f"{images.folder}"), strict, reason="files without image")
            continue
        if labels.width and labels.height:
            size = (int(labels.width), int(labels.height))
        else:
            size = read_image_size(image_path, summary, strict)
            if size is None:
                continue
        builder.add_labels(image_path, size[0], size[1], labels, meta={"label_path": str(label_path)})
    return builder.finish()


def _image_path(name: str | None, label_path: Path, images: ImageFolder, summary: ImportSummary,
                strict: bool) -> Path | None | bool:
    """The image named in the file (exactly, else by stem), else the label file's stem; None when there is
    none, False when a stem has several image files (reported by :func:`unique_image`)."""
    if name:
        candidate = images.folder / name
        if candidate.is_file():
            return candidate
    for stem in ([Path(name).stem] if name else []) + [label_path.stem]:
        if images.candidates(stem):
            found = unique_image(images, stem, label_path, summary, strict)
            return False if found is None else found
    return None
