"""Reading ground-truth and detection folders for evaluation.

Listing and parsing are ``obbdet.formats``' (:func:`~obbdet.formats.list_label_files`,
:func:`~obbdet.formats.read_label_files`, which read obb_json folders with the batched reader). What is the
evaluation's own: its flags' checks and exit codes, the warning about stray entries, and a progress bar on
big folders.
"""
from __future__ import annotations

from pathlib import Path

from obbdet.formats import (
    LABEL_FORMATS, LabelFiles, LabelFormatError, describe_read_error, label_extension, list_label_files,
    read_dota_task1, read_label_files,
)
from obbdet.structures import ImageLabels

from .errors import EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_USAGE, EvalInputError, WarningLog

PROGRESS_MIN_FILES = 2000  # folders at least this big get a progress bar (on a terminal)


def _progress(items: list, desc: str):
    """``items`` wrapped in a tqdm bar for big folders (tqdm is imported only then; hidden off a terminal)."""
    if len(items) < PROGRESS_MIN_FILES:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="file", disable=None, leave=False)


def _label_files(folder: Path, fmt: str, warnings: WarningLog) -> LabelFiles:
    """The folder's label files; stray entries are a warning, or a usage error when they are all there is."""
    listing = list_label_files(folder, fmt)
    ext, others = label_extension(fmt), listing.others
    if others and not listing.files:
        raise EvalInputError(f"{folder}: no {ext} files, but {len(others)} other entries (e.g. {others[0]}): "
                             f"wrong format flag?", EXIT_USAGE)
    if others:
        warnings.add(f"other-files-{folder}", f"{folder}: {len(others)} entries without the {ext} extension "
                     f"skipped (e.g. {others[0]})", count=1)
    return listing


def check_folder(folder, what: str) -> Path:
    folder = Path(folder)
    if not folder.exists():
        raise EvalInputError(f"{folder}: {what} folder does not exist", EXIT_NOT_FOUND)
    if not folder.is_dir():
        raise EvalInputError(f"{folder}: {what} path is not a folder", EXIT_NOT_FOUND)
    return folder


def _fail(path: Path, exc: Exception) -> None:
    raise EvalInputError(describe_read_error(path, exc), EXIT_BAD_INPUT) from None


def load_folder(folder, fmt: str, *, detections: bool, warnings: WarningLog, coords: str = "abs",
                image_size: tuple[int, int] | None = None, image_sizes: dict | None = None,
                class_names: list[str] | None = None) -> tuple[dict[str, ImageLabels], dict[str, Path]]:
    """Read every label file of ``folder`` in format ``fmt``. Returns (labels by image key, file by key).

    coords: ``'abs'`` or ``'rel'`` (xywh/xyrb only). image_size: ``(width, height)`` for all images (relative
    coordinates, yolo_obb); image_sizes: per-image sizes used where ``image_size`` is None (yolo_obb).
    class_names: class list of yolo_obb indices. Raises :class:`EvalInputError` with the file and line.
    """
    what = "detection" if detections else "ground-truth"
    if fmt not in LABEL_FORMATS:
        raise EvalInputError(f"unknown {what} format {fmt!r}; valid: {', '.join(LABEL_FORMATS)}", EXIT_USAGE)
    folder = check_folder(folder, what)
    if coords == "rel" and fmt not in ("xywh", "xyrb"):
        raise EvalInputError(f"relative coordinates apply to the xywh and xyrb formats, not {fmt}", EXIT_USAGE)
    if fmt == "dota_task1":
        if not detections:
            raise EvalInputError("dota_task1 holds detections only; use -gtformat dota for DOTA labels", EXIT_USAGE)
        try:
            labels = read_dota_task1(folder)
        except LabelFormatError as exc:
            raise EvalInputError(str(exc), EXIT_BAD_INPUT) from None
        return labels, {key: folder for key in labels}
    if fmt == "yolo_obb" and not class_names:
        raise EvalInputError("yolo_obb needs the class names (--classes a,b,c in index order)", EXIT_USAGE)
    if coords == "rel" and image_size is None:
        raise EvalInputError("relative coordinates need the image size (-imgsize W,H)", EXIT_USAGE)
    listing = _label_files(folder, fmt, warnings)
    if not listing.files:
        warnings.add(f"empty-{folder}", f"{folder}: no {what} files ({label_extension(fmt)}) found")

    def size_of(path: Path) -> tuple[int, int]:
        size = image_size or (image_sizes or {}).get(path.name[:-len(".txt")])
        if size is None:
            raise EvalInputError(f"{path}: yolo_obb needs the image size (-imgsize W,H, or width/height in "
                                 f"obb_json ground truth)", EXIT_USAGE)
        return size

    labels = read_label_files(listing.files, fmt, detections=detections,
                              image_size=size_of if fmt == "yolo_obb" else image_size, class_names=class_names,
                              coords=coords, progress=lambda items: _progress(items, f"reading {what} files"),
                              on_error=_fail)
    return labels, dict(listing.files)


def parse_image_size(text: str) -> tuple[int, int]:
    """``"W,H"`` (or ``"WxH"``) in pixels -> ``(W, H)``; ValueError otherwise."""
    try:
        width, height = (int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise ValueError(f"expected W,H (e.g. 1920,1080), got {text!r}") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {text!r}")
    return width, height


def parse_renames(text: str) -> dict[str, str]:
    """``"small-vehicle=car,large-vehicle=truck"`` -> ``{"small-vehicle": "car", ...}``; ValueError otherwise."""
    pairs = [item.split("=") for item in text.split(",") if item.strip()]
    if not pairs or any(len(pair) != 2 or not pair[0].strip() or not pair[1].strip() for pair in pairs):
        raise ValueError(f"expected SRC=DST[,SRC=DST...], got {text!r}")
    return {src.strip(): dst.strip() for src, dst in pairs}


def rename_classes(labels: dict[str, ImageLabels], renames: dict[str, str]) -> dict[str, ImageLabels]:
    """The label sets with every class named in ``renames`` renamed (e.g. a dataset's native names onto a
    detector's); other classes unchanged."""
    if not renames:
        return labels
    from dataclasses import replace

    return {key: replace(item, classes=[renames.get(c, c) for c in item.classes]) for key, item in labels.items()}
