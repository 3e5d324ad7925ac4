"""From per-image label records to the flat arrays evaluation works on.

``prepare(gt, det)`` turns two ``dict[image key, ImageLabels]`` into a :class:`Dataset`: every object of
every image in one array per field, images in sorted key order and objects in reading order (so a stable
sort by score keeps ties in reading order: files in sorted name order, then line order). Ground truth
marked ``ignore`` is dropped; detections keep their scores.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from obbdet.boxes import BOX_DIM, normalize_xywha
from obbdet.structures import ImageLabels

from .errors import EXIT_BAD_INPUT, EXIT_USAGE, EvalInputError, WarningLog
from .matching import exact_axis_aligned_bounds

AABB_DIM = 4
# Largest |cx|, |cy|, w, h accepted, in pixels: far beyond any image (a 1e7 px side is a 100-terapixel image),
# far below where box arithmetic (squares of coordinates in the polygon areas, grid keys) loses meaning or
# overflows. A larger value is a broken writer, not a detection.
MAX_BOX_COORDINATE = 1e7


@dataclass
class FlatLabels:
    """Objects of a whole data set (ground truth or detections), one row per object.

    image ``[N]`` int64 index into ``Dataset.images``; cls ``[N]`` int64 index into ``Dataset.classes``;
    boxes ``[N, 5]`` float64 xywha le90 (pixels, radians); axis ``[N, 4]`` float64 exact axis-aligned bounds
    ``[x_min, y_min, x_max, y_max]`` (NaN rows for rotated boxes); difficult ``[N]`` bool; scores ``[N]``
    float64 (detections) or None; obj_index ``[N]`` int64 position of the object in its image's record.
    """

    image: np.ndarray
    cls: np.ndarray
    boxes: np.ndarray
    axis: np.ndarray
    difficult: np.ndarray
    scores: np.ndarray | None
    obj_index: np.ndarray

    def __len__(self) -> int:
        return len(self.image)

    def subset(self, keep: np.ndarray) -> "FlatLabels":
        return FlatLabels(self.image[keep], self.cls[keep], self.boxes[keep], self.axis[keep],
                          self.difficult[keep], None if self.scores is None else self.scores[keep],
                          self.obj_index[keep])


@dataclass
class Dataset:
    """Ground truth and detections of one evaluation, flattened.

    images: image keys in sorted order; classes: class names (index = class id); gt, det: the objects;
    has_gt: ``[n_images]`` bool, whether the image had a ground-truth record; det_only_classes: class ids
    that occur in detections but never in (non-ignored) ground truth.
    """

    images: list[str]
    classes: list[str]
    gt: FlatLabels
    det: FlatLabels
    has_gt: np.ndarray
    det_only_classes: list[int]


def _empty_flat(with_scores: bool) -> FlatLabels:
    return FlatLabels(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, BOX_DIM)),
                      np.zeros((0, AABB_DIM)), np.zeros(0, bool), np.zeros(0) if with_scores else None,
                      np.zeros(0, np.int64))


def _where(sources: dict | None, key: str, obj: int | None = None) -> str:
    place = str(sources[key]) if sources and key in sources else f"image {key!r}"
    return place if obj is None else f"{place}: object #{obj}"


def _flatten(records: dict[str, ImageLabels], images: list[str], detections: bool, sources: dict | None
             ) -> tuple[FlatLabels, list[str]]:
    """Concatenate the records of ``images`` (skipping missing ones). Returns (flat labels with cls = -1,
    class name per object)."""
    boxes, given_axis, difficult, scores, image_ids, counts, names = [], [], [], [], [], [], []
    keep_masks = []
    offset = 0
    for index, key in enumerate(images):
        labels = records.get(key)
        if labels is None or len(labels) == 0:
            continue
        n = len(labels)
        b = np.asarray(labels.boxes, dtype=np.float64).reshape(n, BOX_DIM)
        boxes.append(b)
        if labels.aabb is not None:  # exact bounds from an axis-aligned format
            given_axis.append((offset, np.asarray(labels.aabb, dtype=np.float64).reshape(n, AABB_DIM)))
        difficult.append(np.asarray(labels.difficult, dtype=bool).reshape(n) if labels.difficult is not None
                         and len(labels.difficult) else np.zeros(n, bool))
        if detections:
            if labels.scores is None:
                raise EvalInputError(f"{_where(sources, key)}: detections need scores", EXIT_BAD_INPUT)
            scores.append(np.asarray(labels.scores, dtype=np.float64).reshape(n))
        ignore = labels.ignore if labels.ignore is not None and len(labels.ignore) else None
        keep_masks.append(np.ones(n, bool) if ignore is None else ~np.asarray(ignore, dtype=bool).reshape(n))
        image_ids.append(index)
        counts.append(n)
        offset += n
        names.extend(labels.classes)
    if not boxes:
        return _empty_flat(detections), []
    counts_arr = np.asarray(counts, dtype=np.int64)
    total = int(counts_arr.sum())
    obj_index = np.arange(total) - np.repeat(np.cumsum(counts_arr) - counts_arr, counts_arr)
    all_boxes = _normalized(np.concatenate(boxes))
    axis = exact_axis_aligned_bounds(all_boxes)
    for start, given in given_axis:
        axis[start:start + len(given)] = given
    flat = FlatLabels(
        image=np.repeat(np.asarray(image_ids, dtype=np.int64), counts_arr),
        cls=np.full(total, -1, dtype=np.int64),
        boxes=all_boxes, axis=axis, difficult=np.concatenate(difficult),
        scores=np.concatenate(scores) if detections else None, obj_index=obj_index)
    if len(names) != total:
        raise EvalInputError("label records have a different number of classes and boxes", EXIT_BAD_INPUT)
    keep = np.concatenate(keep_masks)
    if not keep.all():
        flat = flat.subset(keep)
        names = [name for name, k in zip(names, keep) if k]
    return flat, names


def _normalized(boxes: np.ndarray) -> np.ndarray:
    """Boxes in le90 (``w >= h``, ``a`` in ``[-pi/2, pi/2)``): width scaling relies on ``h`` being the short side.
    Rows already in le90 are left bit-for-bit untouched."""
    a = boxes[:, 4]
    off = (boxes[:, 2] < boxes[:, 3]) | (a < -math.pi / 2) | (a >= math.pi / 2)
    if off.any():
        boxes = boxes.copy()
        boxes[off] = normalize_xywha(boxes[off])
    return boxes


def _check_finite(flat: FlatLabels, images: list[str], what: str, sources: dict | None) -> None:
    """Malformed boxes are input errors naming file and object: NaN/inf, a negative size, or a centre or size
    beyond :data:`MAX_BOX_COORDINATE` (one absurd box would otherwise overflow the arithmetic of every pair
    near it and could zero the metric without a word)."""
    bad = ~np.isfinite(flat.boxes).all(1)
    if flat.scores is not None:
        bad |= ~np.isfinite(flat.scores)
    bad |= (flat.boxes[:, 2] < 0) | (flat.boxes[:, 3] < 0)
    with np.errstate(invalid="ignore"):  # NaN rows are already marked
        huge = (np.abs(flat.boxes[:, :4]) > MAX_BOX_COORDINATE).any(1)
    if (bad | huge).any():
        k = int(np.flatnonzero(bad | huge)[0])
        key = images[flat.image[k]]
        why = (f"has a centre or size beyond {MAX_BOX_COORDINATE:g} px" if not bad[k]
               else "box or score is not finite or has a negative size")
        raise EvalInputError(f"{_where(sources, key, int(flat.obj_index[k]))}: {what} {why}: "
                             f"{flat.boxes[k].tolist()}", EXIT_BAD_INPUT)


def prepare(gt: dict[str, ImageLabels], det: dict[str, ImageLabels], *, classes: list[str] | None = None,
            warnings: WarningLog | None = None, gt_sources: dict | None = None,
            det_sources: dict | None = None) -> Dataset:
    """Flatten ground truth and detections (see the module notes).

    classes: evaluate only these classes, in this order (objects of other classes are dropped, with a
    warning); default: the ground truth's classes sorted by name, then classes seen only in detections.
    gt_sources / det_sources: image key -> file path, used in messages.
    """
    warnings = warnings if warnings is not None else WarningLog()
    images = sorted(set(gt) | set(det))
    with np.errstate(over="ignore", invalid="ignore"):  # bounds of absurd boxes: rejected just below
        gt_flat, gt_names = _flatten(gt, images, False, gt_sources)
        det_flat, det_names = _flatten(det, images, True, det_sources)
    _check_finite(gt_flat, images, "ground-truth", gt_sources)
    _check_finite(det_flat, images, "detection", det_sources)

    gt_class_set = set(gt_names)
    if classes is not None:
        class_list = list(dict.fromkeys(classes))
        if not class_list:
            raise EvalInputError("the class list is empty", EXIT_USAGE)
    else:
        class_list = sorted(gt_class_set) + sorted(set(det_names) - gt_class_set)
    class_id = defaultdict(lambda: -1, {name: i for i, name in enumerate(class_list)})  # unlisted: -1
    gt_flat.cls = np.array(list(map(class_id.__getitem__, gt_names)), dtype=np.int64).reshape(-1)
    det_flat.cls = np.array(list(map(class_id.__getitem__, det_names)), dtype=np.int64).reshape(-1)
    gt_flat = _drop_unlisted(gt_flat, gt_names, images, "ground-truth", warnings, gt_sources)
    det_flat = _drop_unlisted(det_flat, det_names, images, "detection", warnings, det_sources)

    has_gt = np.array([key in gt for key in images], dtype=bool)
    _warn_dets_without_gt(det_flat, has_gt, images, warnings, det_sources)
    in_gt = np.zeros(len(class_list), bool)
    in_gt[gt_flat.cls] = True
    det_only = [c for c in range(len(class_list)) if not in_gt[c] and np.any(det_flat.cls == c)]
    for c in det_only:
        _warn_det_only_class(det_flat, c, class_list[c], images, warnings, det_sources)
    return Dataset(images, class_list, gt_flat, det_flat, has_gt, det_only)


def _drop_unlisted(flat: FlatLabels, names: list[str], images: list[str], what: str, warnings: WarningLog,
                   sources: dict | None) -> FlatLabels:
    unlisted = flat.cls < 0
    if not unlisted.any():
        return flat
    k = int(np.flatnonzero(unlisted)[0])
    dropped = sorted({names[i] for i in np.flatnonzero(unlisted)})
    shown = ", ".join(dropped[:8]) + (", ..." if len(dropped) > 8 else "")
    warnings.add(f"unlisted-{what}",
                 f"{int(unlisted.sum())} {what} object(s) of classes not in the class list dropped ({shown}; "
                 f"first: {_where(sources, images[flat.image[k]], int(flat.obj_index[k]))})")
    return flat.subset(~unlisted)


def _warn_dets_without_gt(det: FlatLabels, has_gt: np.ndarray, images: list[str], warnings: WarningLog,
                          sources: dict | None) -> None:
    orphan = ~has_gt[det.image] if len(det) else np.zeros(0, bool)
    if orphan.any():
        orphan_images = np.unique(det.image[orphan])
        warnings.add("det-without-gt",
                     f"{int(orphan.sum())} detection(s) in {len(orphan_images)} image(s) without a ground-truth "
                     f"file (first: {_where(sources, images[orphan_images[0]])}) counted as false positives")


def _warn_det_only_class(det: FlatLabels, c: int, name: str, images: list[str], warnings: WarningLog,
                         sources: dict | None) -> None:
    rows = np.flatnonzero(det.cls == c)
    k = int(rows[0])
    warnings.add(f"det-only-{name}",
                 f"class {name!r} occurs only in detections ({len(rows)} detection(s); first: "
                 f"{_where(sources, images[det.image[k]], int(det.obj_index[k]))}): reported, its detections "
                 f"are false positives")
