"""COCO JSON with rotated boxes: one JSON file for a whole label set (read and written by tools/convert.py).

Layout written (and read): ``images`` (``id``, ``file_name``, ``width``, ``height``), ``categories``
(``id`` from 1 in class-list order, ``name``), ``annotations`` with ``bbox`` = axis-aligned
``[x, y, w, h]`` of the rotated box, ``segmentation`` = ``[[x1, y1, .., x4, y4]]`` (its corners),
``rbox`` = ``[cx, cy, w, h, angle_deg]`` (w the long side, angle of the long side in degrees from +x
towards +y, clockwise on screen, in ``[-90, 90)``), ``area`` (of the rotated box), ``iscrowd`` 0, and
``score``, ``difficult``, ``ignore``, ``heading`` (degrees) where present. Reading prefers ``rbox``, then
the polygon (minimum-area rectangle), then ``bbox``; ``iscrowd: 1`` reads as difficult.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Callable

import numpy as np

from obbdet.boxes import BOX_DIM, CORNERS, POINT_DIM, aabb_to_xywha, normalize_xywha, poly_to_xywha
from obbdet.boxes import xywha_to_aabb, xywha_to_poly
from obbdet.formats import LabelFormatError, load_json_document
from obbdet.io_utils import atomic_write_text
from obbdet.structures import ImageLabels
from obbdet.tools.labelsets import ToolInputError

logger = logging.getLogger("convert")

COCO_KNOWN_KEYS = frozenset({"id", "image_id", "category_id", "bbox", "segmentation", "rbox", "area", "iscrowd",
                             "score", "difficult", "ignore", "heading"})


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
