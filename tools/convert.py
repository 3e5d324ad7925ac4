"""Convert oriented-box labels between obb_json, DOTA, YOLO-OBB and COCO JSON with rotated boxes.

    python tools/convert.py SRC DST --from dota --to obb_json [--images DIR]
    python tools/convert.py labels/ data.json --from obb_json --to coco --classes car,truck
    python tools/convert.py labels/ yolo/ --from obb_json --to yolo_obb --classes classes.txt

SRC and DST are folders of per-image files named after the image stems, except for ``coco``, which is one
JSON file. Ground truth or detections are recognised automatically (``--kind`` overrides): obb_json and
COCO records with a ``score``, DOTA lines whose last token is not a difficult flag (0/1/2), YOLO-OBB lines
with a tenth number.

COCO layout written (and read): ``images`` (``id``, ``file_name``, ``width``, ``height``), ``categories``
(``id`` from 1 in class-list order, ``name``), ``annotations`` with ``bbox`` = axis-aligned
``[x, y, w, h]`` of the rotated box, ``segmentation`` = ``[[x1, y1, .., x4, y4]]`` (its corners),
``rbox`` = ``[cx, cy, w, h, angle_deg]`` (w the long side, angle of the long side in degrees from +x
towards +y, clockwise on screen, in ``[-90, 90)``), ``area`` (of the rotated box), ``iscrowd`` 0, and
``score``, ``difficult``, ``ignore``, ``heading`` (degrees) where present. Reading prefers ``rbox``, then
the polygon (minimum-area rectangle), then ``bbox``; ``iscrowd: 1`` reads as difficult.

YOLO-OBB needs the class list (``--classes`` names file, YAML with ``names``, or comma list) and each
image's size: from obb_json/COCO sources, ``--images DIR`` (headers only) or ``--image-size W,H``.

The helpers here (class lists, image sizes, lenient folder reading) are shared by the other tools.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from obbdet.boxes import BOX_DIM, CORNERS, POINT_DIM, aabb_to_xywha, normalize_xywha, poly_to_xywha  # noqa: E402
from obbdet.boxes import xywha_to_aabb, xywha_to_poly  # noqa: E402
from obbdet.formats import (LABEL_FORMATS, LabelFormatError, label_extension, load_json_document,  # noqa: E402
                            read_dota_task1, read_label_file, write_dota, write_obb_json, write_yolo_obb)
from obbdet.io_utils import atomic_write_text  # noqa: E402
from obbdet.structures import ImageLabels  # noqa: E402
from obbdet.visualize import find_image, image_size  # noqa: E402

logger = logging.getLogger("convert")

FOLDER_FORMATS = ("obb_json", "dota", "yolo_obb")
CONVERT_FORMATS = FOLDER_FORMATS + ("coco",)
DOTA_DIFFICULT_TOKENS = frozenset({"0", "1", "2"})
COCO_KNOWN_KEYS = frozenset({"id", "image_id", "category_id", "bbox", "segmentation", "rbox", "area", "iscrowd",
                             "score", "difficult", "ignore", "heading"})


class ToolInputError(Exception):
    """A user-facing input problem; ``str()`` is one line naming the file (and line or object)."""


# ---------------------------------------------------------------------------------------------------
# Class lists and image sizes (shared by the tools)
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
    """``"W,H"`` (or ``WxH``) -> ``(W, H)``."""
    if text is None:
        return None
    parts = text.replace("x", ",").split(",")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise ToolInputError(f"--image-size: expected W,H in pixels, got {text!r}") from None
    if width <= 0 or height <= 0:
        raise ToolInputError(f"--image-size: sizes must be positive, got {text!r}")
    return width, height


# ---------------------------------------------------------------------------------------------------
# Lenient folder reading (shared by the tools)
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


def label_files(folder, fmt: str) -> list[Path]:
    """Label files of ``folder`` for a per-image format, in sorted name order (the evaluation's reading order)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ToolInputError(f"{folder}: no such folder")
    ext = label_extension(fmt)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ext)


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
    Returns ``({stem: ImageLabels}, number of files skipped)``; stems are in sorted name order.
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
    out, failed = {}, 0
    files = label_files(folder, fmt)
    for path in _progress(files, progress, f"reading {Path(folder).name}"):
        try:
            out[path.stem] = _read_one(path, fmt, detections, class_names, sizes)
        except (LabelFormatError, ToolInputError) as exc:
            on_error(str(exc))
            failed += 1
        except OSError as exc:
            on_error(f"{path}: cannot read ({exc.strerror or exc})")
            failed += 1
    return out, failed


def _read_one(path: Path, fmt: str, detections: bool, class_names, sizes) -> ImageLabels:
    options = {}
    if fmt == "yolo_obb":
        size = sizes(path.stem) if sizes is not None else None
        if size is None:
            raise ToolInputError(f"{path}: image size unknown (pass --images DIR or --image-size W,H)")
        options = {"image_size": size, "class_names": class_names}
    labels = read_label_file(path, fmt, detections=detections, **options)
    if fmt == "yolo_obb":
        labels.width, labels.height = options["image_size"]
    return labels


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="file", leave=False)


# ---------------------------------------------------------------------------------------------------
# COCO JSON with rotated boxes
# ---------------------------------------------------------------------------------------------------

def coco_document(labels_by_stem: dict[str, ImageLabels], class_names: list[str],
                  sizes: Callable[[str], tuple[int, int] | None], *, file_names: dict[str, str] | None = None,
                  source: str = "") -> dict:
    """The COCO dataset dict of per-image labels (layout in the module docstring).

    Raises ToolInputError for an image whose size is unknown or an object whose class is not listed.
    """
    category_id = {name: k + 1 for k, name in enumerate(class_names)}
    images, annotations = [], []
    for image_id, stem in enumerate(labels_by_stem, start=1):
        labels = labels_by_stem[stem]
        size = sizes(stem)
        if size is None:
            raise ToolInputError(f"{source or stem}: image size of {stem!r} unknown; COCO needs width/height "
                                 "(pass --images DIR or --image-size W,H)")
        file_name = (file_names or {}).get(stem) or labels.image or stem
        images.append({"id": image_id, "file_name": file_name, "width": int(size[0]), "height": int(size[1])})
        for index in range(len(labels)):
            name = labels.classes[index]
            if name not in category_id:
                raise ToolInputError(f"{stem}: object #{index}: class {name!r} is not in the class list "
                                     f"{class_names}")
            annotations.append(_coco_annotation(labels, index, len(annotations) + 1, image_id, category_id[name]))
    return {"images": images, "annotations": annotations,
            "categories": [{"id": category_id[n], "name": n} for n in class_names]}


def _coco_annotation(labels: ImageLabels, index: int, ann_id: int, image_id: int, cat_id: int) -> dict:
    box = normalize_xywha(labels.boxes[index])
    x0, y0, x1, y1 = (float(v) for v in xywha_to_aabb(box))
    poly = xywha_to_poly(box).reshape(-1)
    cx, cy, w, h, a = (float(v) for v in box)
    ann = {"id": ann_id, "image_id": image_id, "category_id": cat_id, "bbox": [x0, y0, x1 - x0, y1 - y0],
           "segmentation": [[float(v) for v in poly]], "rbox": [cx, cy, w, h, math.degrees(a)],
           "area": w * h, "iscrowd": 0}
    if labels.scores is not None:
        ann["score"] = float(labels.scores[index])
    if labels.difficult[index]:
        ann["difficult"] = 1
    if labels.ignore[index]:
        ann["ignore"] = 1
    if labels.heading is not None and math.isfinite(labels.heading[index]):
        ann["heading"] = math.degrees(float(labels.heading[index]))
    if labels.extras is not None and labels.extras[index]:
        ann.update({k: v for k, v in labels.extras[index].items() if k not in ann})
    return ann


def read_coco(path) -> tuple[dict[str, ImageLabels], list[str]]:
    """Read a COCO JSON file (layout in the module docstring) into ``({stem: ImageLabels}, class names)``.

    Annotations with a ``score`` make detections (then every annotation needs one). Errors are
    LabelFormatError naming the file and the annotation's index in ``annotations``.
    """
    data = _load_coco_json(path)
    categories = _coco_categories(data, path)
    images = _coco_images(data, path)
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise LabelFormatError(path, "'annotations' must be a list")
    detections = any(isinstance(a, dict) and "score" in a for a in anns)
    per_image: dict[int, list] = {image_id: [] for image_id in images}
    for index, ann in enumerate(anns):
        image_id, record = _coco_record(ann, index, path, categories, images, detections)
        per_image[image_id].append(record)
    out = {}
    for image_id, (stem, file_name, width, height) in images.items():
        out[stem] = _coco_image_labels(per_image[image_id], file_name, width, height, detections)
    return out, [categories[k] for k in sorted(categories)]


def _load_coco_json(path) -> dict:
    return load_json_document(path, "images", "a COCO dataset object")


def _coco_categories(data: dict, path) -> dict[int, str]:
    categories = {}
    for index, cat in enumerate(data.get("categories", [])):
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not isinstance(cat.get("name"), str):
            raise LabelFormatError(path, "category needs an integer 'id' and a string 'name'",
                                   text=f"categories[{index}]: {json.dumps(cat)}")
        categories[cat["id"]] = cat["name"]
    return categories


def _coco_images(data: dict, path) -> dict[int, tuple[str, str, int | None, int | None]]:
    images, stems = {}, set()
    for index, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            raise LabelFormatError(path, "image needs an 'id' and a string 'file_name'",
                                   text=f"images[{index}]: {json.dumps(image)}")
        stem = Path(image["file_name"]).stem
        if stem in stems:
            raise LabelFormatError(path, f"two images share the file stem {stem!r}",
                                   text=f"images[{index}]: {json.dumps(image)}")
        stems.add(stem)
        images[image["id"]] = (stem, image["file_name"], image.get("width"), image.get("height"))
    return images


def _coco_record(ann, index: int, path, categories, images, detections: bool) -> tuple[int, dict]:
    def fail(reason: str):
        return LabelFormatError(path, f"annotations[{index}]: {reason}", obj_index=index, text=json.dumps(ann))

    if not isinstance(ann, dict):
        raise fail("annotation must be a JSON object")
    if ann.get("image_id") not in images:
        raise fail("'image_id' is not the id of an image")
    if ann.get("category_id") not in categories:
        raise fail("'category_id' is not the id of a category")
    score = ann.get("score")
    if detections and (not _is_number(score) or not math.isfinite(score)):
        raise fail("detections need a finite numeric 'score' on every annotation")
    box = _coco_box(ann, fail)
    zero_area = bool(box[3] <= 1e-12 * max(box[2], 1.0))
    if zero_area:  # as the DOTA reader does: kept (the object count stays right) but never matched
        logger.warning("%s: annotations[%d]: zero-area box kept as a difficult zero-size box", path, index)
    heading = ann.get("heading")
    record = {"class": categories[ann["category_id"]], "box": box, "score": score if detections else None,
              "difficult": bool(ann.get("difficult", 0)) or bool(ann.get("iscrowd", 0)) or zero_area,
              "ignore": bool(ann.get("ignore", 0)),
              "heading": math.radians(heading) if _is_number(heading) else math.nan,
              "extras": {k: v for k, v in ann.items() if k not in COCO_KNOWN_KEYS}}
    return ann["image_id"], record


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _coco_box(ann: dict, fail) -> np.ndarray:
    """xywha (radians) of an annotation from ``rbox``, else the polygon, else ``bbox``."""
    if "rbox" in ann:
        rbox = ann["rbox"]
        if not (isinstance(rbox, list) and len(rbox) == BOX_DIM and all(_is_number(v) for v in rbox)):
            raise fail("'rbox' must be [cx, cy, w, h, angle_deg]")
        if not all(math.isfinite(v) for v in rbox) or rbox[2] < 0 or rbox[3] < 0:
            raise fail("'rbox' must be finite with w, h >= 0")
        cx, cy, w, h, angle = rbox
        return normalize_xywha(np.array([cx, cy, w, h, math.radians(angle)], np.float64))
    seg = ann.get("segmentation")
    if isinstance(seg, list) and seg and isinstance(seg[0], list):
        coords = seg[0]
        if len(coords) < 6 or len(coords) % POINT_DIM or not all(_is_number(v) and math.isfinite(v) for v in coords):
            raise fail("'segmentation' polygon must be an even list of at least 6 finite numbers")
        points = np.asarray(coords, np.float64).reshape(-1, POINT_DIM)
        return poly_to_xywha(points[None], warn=False)[0]
    bbox = ann.get("bbox")
    if isinstance(bbox, list) and len(bbox) == CORNERS and all(_is_number(v) and math.isfinite(v) for v in bbox):
        x, y, w, h = bbox
        if w < 0 or h < 0:
            raise fail("'bbox' must have w, h >= 0")
        return aabb_to_xywha(np.array([x, y, x + w, y + h], np.float64))
    raise fail("annotation needs 'rbox', a polygon 'segmentation' or a 'bbox'")


def _coco_image_labels(records: list[dict], file_name: str, width, height, detections: bool) -> ImageLabels:
    n = len(records)
    heading = np.array([r["heading"] for r in records], np.float64)
    extras = [r["extras"] for r in records]
    return ImageLabels(
        image=file_name, width=width, height=height,
        boxes=np.array([r["box"] for r in records], np.float64).reshape(n, BOX_DIM),
        classes=[r["class"] for r in records],
        scores=np.array([r["score"] for r in records], np.float64) if detections else None,
        difficult=np.array([r["difficult"] for r in records], bool).reshape(n),
        ignore=np.array([r["ignore"] for r in records], bool).reshape(n),
        heading=heading if np.isfinite(heading).any() else None,
        extras=extras if any(extras) else None)


def write_coco(path, labels_by_stem: dict[str, ImageLabels], class_names: list[str],
               sizes: Callable[[str], tuple[int, int] | None], **kwargs) -> None:
    """Write the COCO document of ``labels_by_stem`` to ``path`` atomically."""
    document = coco_document(labels_by_stem, class_names, sizes, source=str(path), **kwargs)
    atomic_write_text(path, json.dumps(document) + "\n")


# ---------------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------------

def read_source(args, class_names, sizes: ImageSizes) -> tuple[dict[str, ImageLabels], list[str] | None, int]:
    """Read SRC. Returns (labels by stem, class names (from COCO categories if not given), files skipped)."""
    src = Path(args.src)
    if args.src_format == "coco":
        if not src.is_file():
            raise ToolInputError(f"{src}: no such COCO JSON file")
        labels, coco_names = read_coco(src)
        return labels, class_names or coco_names, 0
    files = label_files(src, args.src_format)
    detections = args.kind == "det" or (args.kind == "auto" and looks_like_detections(files, args.src_format))
    labels, failed = read_folder(src, args.src_format, detections=detections, class_names=class_names,
                                 sizes=sizes, progress=True)
    return labels, class_names, failed


def write_destination(args, labels_by_stem: dict[str, ImageLabels], class_names, sizes: ImageSizes) -> int:
    """Write DST. Returns the number of images that could not be written (each reported)."""
    dst = Path(args.dst)
    if args.dst_format == "coco":
        names = class_names or sorted({c for labels in labels_by_stem.values() for c in labels.classes})
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_coco(dst, labels_by_stem, names, sizes)
        return 0
    if args.dst_format == "yolo_obb" and not class_names:
        raise ToolInputError("yolo_obb output needs the class list: pass --classes")
    dst.mkdir(parents=True, exist_ok=True)
    _warn_lost_fields(labels_by_stem, args.dst_format)
    failed = 0
    for stem, labels in labels_by_stem.items():
        out_path = dst / f"{stem}{label_extension(args.dst_format)}"
        if args.dst_format == "yolo_obb":
            labels = _drop_zero_size(labels, out_path, args.dst_format)
        try:
            _write_one(out_path, labels, args.dst_format, class_names, sizes(stem))
        except (ToolInputError, ValueError) as exc:
            report_error(str(exc))
            failed += 1
    return failed


def _write_one(path: Path, labels: ImageLabels, fmt: str, class_names, size) -> None:
    if fmt == "obb_json":
        if size is not None:
            labels.width, labels.height = size
        write_obb_json(path, labels)
    elif fmt == "dota":
        write_dota(path, _ignore_as_difficult(labels))
    else:
        if size is None:
            raise ToolInputError(f"{path.stem}: image size unknown; YOLO-OBB needs it (pass --images DIR "
                                 "or --image-size W,H)")
        write_yolo_obb(path, labels, size, class_names)


def _drop_zero_size(labels: ImageLabels, path: Path, fmt: str) -> ImageLabels:
    """Drop zero-area boxes (kept as difficult by the DOTA and COCO readers), which YOLO-OBB cannot hold
    (obb_json keeps them as difficult); they never match anything (IoU 0), so evaluation results do not change."""
    zero = labels.boxes[:, 3] <= 1e-12 * np.maximum(labels.boxes[:, 2], 1.0) if len(labels) else np.zeros(0, bool)
    if not zero.any():
        return labels
    print(f"warning: {path}: {int(zero.sum())} zero-area object(s) dropped ({fmt} cannot hold them)",
          file=sys.stderr)
    return select_objects(labels, ~zero)


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


def _ignore_as_difficult(labels: ImageLabels) -> ImageLabels:
    if not labels.ignore.any():
        return labels
    return ImageLabels(image=labels.image, width=labels.width, height=labels.height, boxes=labels.boxes,
                       classes=labels.classes, scores=labels.scores, difficult=labels.difficult | labels.ignore,
                       ignore=np.zeros_like(labels.ignore), heading=labels.heading)


def _warn_lost_fields(labels_by_stem: dict[str, ImageLabels], fmt: str) -> None:
    """Say what the destination format cannot hold (it is dropped, never silently)."""
    if fmt == "obb_json":
        return
    count = lambda pick: sum(int(pick(lb)) for lb in labels_by_stem.values())  # noqa: E731
    headings = count(lambda lb: 0 if lb.heading is None else np.isfinite(lb.heading).sum())
    extras = count(lambda lb: 0 if lb.extras is None else sum(bool(e) for e in lb.extras))
    ignored = count(lambda lb: lb.ignore.sum())
    difficult = count(lambda lb: lb.difficult.sum()) if fmt == "yolo_obb" else 0
    lost = {"heading": headings, "extra keys": extras, "difficult flag": difficult}
    if fmt == "yolo_obb":
        lost["ignore flag"] = ignored
    elif ignored:
        print(f"warning: {ignored} 'ignore' marker(s) written as difficult (DOTA has no ignore flag)",
              file=sys.stderr)
    for what, n in lost.items():
        if n:
            print(f"warning: {fmt} cannot store {what}; dropped for {n} object(s)", file=sys.stderr)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="source folder (COCO: JSON file)")
    parser.add_argument("dst", help="destination folder (COCO: JSON file)")
    parser.add_argument("--from", dest="src_format", required=True, choices=CONVERT_FORMATS)
    parser.add_argument("--to", dest="dst_format", required=True, choices=CONVERT_FORMATS)
    parser.add_argument("--classes", help="class names: a names file (one per line), YAML with 'names', or a,b,c")
    parser.add_argument("--images", help="folder of the images, for sizes (read from headers only)")
    parser.add_argument("--image-size", help="W,H for every image (when all images share one size)")
    parser.add_argument("--kind", choices=("auto", "gt", "det"), default="auto",
                        help="ground truth or detections (default: recognised from the files)")
    return parser.parse_args(argv)


def convert(args) -> int:
    """Run one conversion; returns the process exit status (0 ok, 1 some inputs skipped)."""
    if Path(args.src).resolve() == Path(args.dst).resolve():
        raise ToolInputError(f"{args.dst}: destination is the source; choose another folder")
    class_names = load_class_names(args.classes)
    sizes = ImageSizes(images_dir=Path(args.images) if args.images else None,
                       fixed=parse_image_size(args.image_size))
    if sizes.images_dir is not None and not sizes.images_dir.is_dir():
        raise ToolInputError(f"{sizes.images_dir}: no such folder")
    labels, class_names, read_failed = read_source(args, class_names, sizes)
    for stem, lb in labels.items():
        sizes.remember(stem, lb)
        if lb.image is None and sizes.images_dir is not None:
            found = find_image(stem, [sizes.images_dir])
            lb.image = found.name if found is not None else None
    if args.dst_format == "coco" and read_failed:
        raise ToolInputError(f"{read_failed} source file(s) could not be read (see above); {args.dst} not written")
    write_failed = write_destination(args, labels, class_names, sizes)
    n_objects = sum(len(lb) for lb in labels.values())
    print(f"converted {len(labels) - write_failed} image(s) ({n_objects} object(s) read): {args.src} "
          f"({args.src_format}) -> {args.dst} ({args.dst_format})")
    if read_failed or write_failed:
        print(f"error: {read_failed + write_failed} file(s) skipped (see above)", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return convert(args)
    except (ToolInputError, LabelFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
