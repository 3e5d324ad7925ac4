"""Label sets as the tools take them: class lists, image sizes, and folders read leniently.

The tools report a bad label file (one line naming file and line) and go on with the rest, where the
evaluation stops at the first; both list and parse folders with ``obbdet.formats``. Shared by convert,
draw_obb and error_analysis.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from obbdet.formats import (LABEL_FORMATS, LabelFiles, LabelFormatError, describe_read_error, list_label_files,
                            read_dota_task1, read_label_files)
from obbdet.structures import ImageLabels
from obbdet.eval.loading import parse_image_size as parse_size
from obbdet.imageio import find_image, image_size

FORMAT_CHOICES = ("auto",) + LABEL_FORMATS
DOTA_DIFFICULT_TOKENS = frozenset({"0", "1", "2"})


class ToolInputError(Exception):
    """A user-facing input problem; ``str()`` is one line naming the file (and line or object)."""


# ---------------------------------------------------------------------------------------------------
# Class lists and image sizes
# ---------------------------------------------------------------------------------------------------

def load_class_names(spec: str | None) -> list[str] | None:
    """Class names from a names file (one per line; ``#`` comments), a YAML file with ``names`` (list or
    ``{index: name}``), or a comma-separated list. None stays None."""
    if spec is None:
        return None
    path = Path(spec)
    if path.is_file():
        if path.suffix.lower() in (".yaml", ".yml"):
            return _class_names_from_yaml(path)
        names = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
        names = [n for n in names if n]
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ToolInputError(f"{spec}: no class names found")
    if len(set(names)) != len(names):
        raise ToolInputError(f"{spec}: duplicate class names in {names}")
    return names


def _class_names_from_yaml(path: Path) -> list[str]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise ToolInputError(f"{path}:{'' if line is None else line + 1}: malformed YAML") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        try:
            return [str(names[k]) for k in sorted(names, key=int)]
        except (TypeError, ValueError):
            raise ToolInputError(f"{path}: 'names' keys must be class indices") from None
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    raise ToolInputError(f"{path}: expected a 'names' list or {{index: name}} mapping")


@dataclass
class ImageSizes:
    """Resolves an image's ``(width, height)``: known sizes (from labels), a fixed size, or image headers."""

    images_dir: Path | None = None
    fixed: tuple[int, int] | None = None
    known: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __call__(self, stem: str) -> tuple[int, int] | None:
        if stem in self.known:
            return self.known[stem]
        if self.images_dir is not None:
            path = find_image(stem, [self.images_dir])
            if path is not None:
                self.known[stem] = image_size(path)
                return self.known[stem]
        return self.fixed

    def remember(self, stem: str, labels: ImageLabels) -> None:
        if labels.width is not None and labels.height is not None:
            self.known.setdefault(stem, (int(labels.width), int(labels.height)))


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    """``"W,H"`` (or ``WxH``) -> ``(W, H)``; None stays None."""
    if text is None:
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        raise ToolInputError(f"--image-size: {exc}") from None


# ---------------------------------------------------------------------------------------------------
# Lenient folder reading
# ---------------------------------------------------------------------------------------------------

def guess_folder_format(folder) -> str:
    """``obb_json`` when the folder holds ``.json`` files, ``dota_task1`` for ``Task1_*.txt``, else ``dota``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ToolInputError(f"{folder}: no such folder")
    if any(folder.glob("*.json")):
        return "obb_json"
    if any(folder.glob("Task1_*.txt")):
        return "dota_task1"
    return "dota"


def _listing(folder, fmt: str) -> LabelFiles:
    folder = Path(folder)
    if not folder.is_dir():
        raise ToolInputError(f"{folder}: no such folder")
    return list_label_files(folder, fmt)


def label_files(folder, fmt: str) -> list[Path]:
    """Label files of ``folder`` for a per-image format, in sorted name order (the evaluation's reading order)."""
    return [path for _, path in _listing(folder, fmt).files]


def looks_like_detections(files: list[Path], fmt: str) -> bool:
    """Whether a folder holds detections (records with scores) rather than ground truth."""
    for path in files:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            continue  # reported when the file itself is read
        if fmt in ("obb_json", "coco"):
            if '"score"' in text:
                return True
            continue
        for line in text.splitlines():
            tokens = line.split()
            if fmt == "dota" and len(tokens) == 10 and tokens[9] not in DOTA_DIFFICULT_TOKENS:
                return True
            if fmt == "yolo_obb" and len(tokens) == 10:
                return True
    return False


def report_error(message: str) -> None:
    """Print a one-line error for a skipped input (CLIs report, then go on with the rest of the batch)."""
    print(f"error: {message}", file=sys.stderr)


def read_folder(folder, fmt: str, *, detections: bool, class_names: list[str] | None = None,
                sizes: Callable[[str], tuple[int, int] | None] | None = None,
                on_error: Callable[[str], None] = report_error, progress: bool = False) -> tuple[dict, int]:
    """Read every label file of ``folder`` (format ``fmt``, one of LABEL_FORMATS), skipping bad files.

    Each unreadable file is reported through ``on_error`` (one line naming file and line) and skipped.
    ``sizes`` gives an image's size by stem (yolo_obb). Returns ``({stem: ImageLabels}, number of files
    skipped)``; stems are in sorted name order.
    """
    if fmt not in LABEL_FORMATS:
        raise ToolInputError(f"unknown label format {fmt!r}; valid formats: {', '.join(LABEL_FORMATS)}")
    if fmt == "dota_task1":
        try:
            return read_dota_task1(folder), 0
        except LabelFormatError as exc:
            raise ToolInputError(str(exc)) from None
    if fmt == "yolo_obb" and not class_names:
        raise ToolInputError("yolo_obb needs the class list: pass --classes")
    skipped = []

    def skip(path: Path, exc: Exception) -> None:
        skipped.append(path)
        on_error(describe_read_error(path, exc))

    def size_of(path: Path) -> tuple[int, int]:
        size = sizes(path.stem) if sizes is not None else None
        if size is None:  # a LabelFormatError: this file is skipped, the others are still read
            raise LabelFormatError(path, "image size unknown (pass --images DIR or --image-size W,H)")
        return size

    def bar(items: list):
        from tqdm import tqdm

        return tqdm(items, desc=f"reading {Path(folder).name}", unit="file", leave=False)

    labels = read_label_files(_listing(folder, fmt).files, fmt, detections=detections, image_size=size_of,
                              class_names=class_names, progress=bar if progress else None, on_error=skip)
    return labels, len(skipped)


def read_label_set(folder, fmt: str, detections: bool | None, args) -> tuple[dict[str, ImageLabels], int, bool]:
    """Read one folder with the tools' common flags (``args.images``, ``args.image_size``, ``args.classes``).

    ``fmt='auto'`` guesses the format, ``detections=None`` decides from the files.
    Returns (labels, files skipped, detections).
    """
    fmt = guess_folder_format(folder) if fmt == "auto" else fmt
    if detections is None:
        detections = fmt == "dota_task1" or looks_like_detections(label_files(folder, fmt), fmt)
    sizes = ImageSizes(images_dir=args.images, fixed=parse_image_size(args.image_size))
    labels, skipped = read_folder(folder, fmt, detections=detections, class_names=load_class_names(args.classes),
                                  sizes=sizes, progress=True)
    return labels, skipped, detections


def select_objects(labels: ImageLabels, keep: np.ndarray) -> ImageLabels:
    """The objects of ``labels`` where the ``[N]`` bool mask ``keep`` is true (all per-object fields)."""
    index = np.flatnonzero(keep)
    return ImageLabels(
        image=labels.image, width=labels.width, height=labels.height, boxes=labels.boxes[index],
        classes=[labels.classes[i] for i in index],
        scores=None if labels.scores is None else labels.scores[index],
        difficult=labels.difficult[index], ignore=labels.ignore[index],
        heading=None if labels.heading is None else labels.heading[index],
        aabb=None if labels.aabb is None else labels.aabb[index],
        extras=None if labels.extras is None else [labels.extras[i] for i in index])
