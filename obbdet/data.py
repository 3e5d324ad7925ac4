"""Torch datasets over importer ``Sample`` records, image loading, and batch collation.

One item is ``(image, target)``:

- ``image``: ``[3, H, W]`` uint8 RGB tensor (converted to float on the training device, which is cheaper to
  transfer; the detector normalizes itself);
- ``target``: ``boxes [N, 5]`` float32 xywha (le90, radians, pixels of ``image``), ``labels [N]`` int64,
  ``difficult [N]`` bool, ``heading [N]`` float32 (NaN where unknown) or None, ``angle_known [N]`` bool
  (False for objects labelled only by an axis-aligned box: the loss trains their size and centre through
  the box's axis-aligned hull and gives them no angle term), ``image_id`` str, ``index`` int (position in
  the sample list). A target dict without ``angle_known`` but with a legacy ``aabb_only`` bool gets the
  mask ``[not aabb_only] * N``.

Transforms are ``(image HxWx3 uint8 RGB, target dict of numpy arrays) -> (image, target)`` (``obbdet.augment``).
There is no cap on boxes per image anywhere: targets are lists, not padded arrays.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from obbdet.boxes import BOX_DIM, scale_heading, scale_xywha
from obbdet.imageio import DEFAULT_DEPTH, PAD_GREY, DepthScaling, ImageReadError, read_image_rgb, resize_image
from obbdet.structures import Sample, angle_known_flags

logger = logging.getLogger(__name__)


def load_image_rgb(sample_or_path) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB of a Sample or of a path.

    A Sample's meta says how: ``meta['depth']`` (a DepthScaling or its spelling, e.g. ``bits:12``) and
    ``meta['bands']`` are passed to the reader, ``meta['crop'] = (x0, y0, x1, y1)`` cuts the image, then
    ``meta['scale']`` resizes it (the registry's resampling of a dataset to the common car width);
    :func:`load_sample` maps the boxes alike.

    Read by :func:`obbdet.imageio.read_image_rgb`, the reader inference uses too. Raises ImageReadError
    naming the file when it is missing or cannot be decoded.
    """
    if not isinstance(sample_or_path, Sample):
        return np.ascontiguousarray(read_image_rgb(sample_or_path))
    return _read_sample(sample_or_path)[0]


def _read_sample(sample: Sample) -> tuple[np.ndarray, tuple[float, float]]:
    """The image of a Sample and the exact per-axis factors ``(sx, sy)`` of its ``meta['scale']`` resize."""
    meta = sample.meta
    depth = meta.get("depth") or DEFAULT_DEPTH
    if isinstance(depth, str):
        depth = DepthScaling.parse(depth)
    image = read_image_rgb(sample.image_path, depth=depth, bands=meta.get("bands"))
    crop = meta.get("crop")
    if crop is not None:
        x0, y0, x1, y1 = (int(v) for v in crop)
        image = image[y0:y1, x0:x1]
    # Rounded sizes make sx, sy differ slightly from the scale: boxes are mapped by the factors, not the scale.
    image, factors = resize_image(image, float(meta.get("scale", 1.0)))
    return np.ascontiguousarray(image), factors


def load_sample(sample: Sample) -> tuple[np.ndarray, dict]:
    """``(image, numpy target)`` of a Sample as the transforms receive them: :func:`load_image_rgb`'s image
    and :func:`sample_target`'s target, its boxes and headings mapped through the image's resize."""
    image, (sx, sy) = _read_sample(sample)
    return image, scale_target(sample_target(sample), sx, sy)


def scale_target(target: dict, sx: float, sy: float) -> dict:
    """A numpy target dict after its image is resized by ``x -> x * sx, y -> y * sy`` (boxes and headings)."""
    if sx == 1.0 and sy == 1.0:
        return target
    out = dict(target, boxes=scale_xywha(target["boxes"], sx, sy).astype(np.float32))
    if target.get("heading") is not None:
        out["heading"] = scale_heading(target["heading"], sx, sy).astype(np.float32)
    return out


def sample_target(sample: Sample) -> dict:
    """The numpy target dict of a Sample (the input format of the transforms)."""
    n = len(sample.boxes)
    heading = sample.heading
    return {
        "boxes": np.asarray(sample.boxes, np.float32).reshape(n, BOX_DIM),
        "labels": np.asarray(sample.labels, np.int64).reshape(n),
        "difficult": np.asarray(sample.difficult, bool).reshape(n),
        "heading": None if heading is None else np.asarray(heading, np.float32).reshape(n),
        "angle_known": angle_known_flags(sample.angle_known, n),
    }


def target_angle_known(target: dict, n: int) -> np.ndarray:
    """``[n]`` bool angle mask of a numpy target dict (``angle_known``, else derived from ``aabb_only``)."""
    return angle_known_flags(target.get("angle_known"), n, bool(target.get("aabb_only", False)))


def _to_tensor_target(target: dict, image_id: str, index: int) -> dict:
    n = len(target["boxes"])
    heading = target.get("heading")
    return {
        "boxes": torch.as_tensor(np.asarray(target["boxes"], np.float32).reshape(n, BOX_DIM)),
        "labels": torch.as_tensor(np.asarray(target["labels"], np.int64).reshape(n)),
        "difficult": torch.as_tensor(np.asarray(target["difficult"], bool).reshape(n)),
        "heading": None if heading is None else torch.as_tensor(np.asarray(heading, np.float32).reshape(n)),
        "angle_known": torch.as_tensor(target_angle_known(target, n)),
        "image_id": image_id,
        "index": index,
    }


class ScaledTransform:
    """Runs a transform with ``target['base_scale'] = scale``: the augment pipelines resize by it first (the
    training crop, and the validation letterbox), so a dataset can be brought to the training vehicle width."""

    def __init__(self, transform, scale: float):
        self.transform, self.scale = transform, float(scale)

    def __call__(self, image, target):
        return self.transform(image, dict(target, base_scale=self.scale))


class DetectionDataset(Dataset):
    """Samples -> ``(image [3, H, W] uint8, target)``; an unreadable image yields None (reported once, and
    dropped by :func:`collate_detections`), so one corrupt file does not stop a run."""

    def __init__(self, samples: list[Sample], transform=None):
        self.samples = list(samples)
        self.transform = transform
        self._reported: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def image_id(self, index: int) -> str:
        sample = self.samples[index]
        return f"{index:06d}_{Path(sample.image_path).stem}"

    def __getitem__(self, index: int):
        sample = self.samples[index]
        try:
            image, target = load_sample(sample)
        except ImageReadError as exc:
            if sample.image_path not in self._reported:
                logger.warning("skipping image: %s", exc)
                self._reported.add(sample.image_path)
            return None
        if self.transform is not None:
            image, target = self.transform(image, target)
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()
        return tensor, _to_tensor_target(target, self.image_id(index), index)


def collate_detections(batch, stride: int = 1):
    """Stack images (padded right/bottom with grey ``PAD_GREY`` to a common size rounded up to ``stride``, as
    inference pads its tiles); targets stay a list.

    Returns ``(images [B, 3, H, W] uint8, targets list[dict])``; None items (unreadable images) are dropped,
    and an all-unreadable batch gives ``(None, [])``.
    """
    batch = [item for item in batch if item is not None]
    if not batch:
        return None, []
    height = max(img.shape[1] for img, _ in batch)
    width = max(img.shape[2] for img, _ in batch)
    height, width = math.ceil(height / stride) * stride, math.ceil(width / stride) * stride
    images = torch.full((len(batch), 3, height, width), PAD_GREY, dtype=torch.uint8)
    for i, (img, _) in enumerate(batch):
        images[i, :, :img.shape[1], :img.shape[2]] = img
    return images, [target for _, target in batch]


class StrideCollate:
    """Picklable ``collate_fn`` padding to a multiple of the network stride (for DataLoader workers)."""

    def __init__(self, stride: int):
        self.stride = int(stride)

    def __call__(self, batch):
        return collate_detections(batch, self.stride)


def targets_to_device(targets: list[dict], device) -> list[dict]:
    """Move the tensors of a target list to ``device``."""
    return [{k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
            for t in targets]


def default_workers(device_type: str) -> int:
    """DataLoader workers when ``data.workers=-1``: on a GPU, enough processes to keep it fed; on a CPU,
    one background worker (loading overlaps compute without taking the cores the model trains on)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device_type == "cuda":
        return max(1, min(8, cores - 1))
    return 1 if cores <= 4 else min(4, cores // 4)
