"""Per-dataset scale and reading options of the registry config.

Datasets differ several times over in ground sample distance, so one global resize cannot bring all their
vehicles to the size the network should learn. Each dataset entry may say how wide a car is in its pixels:

- ``vehicle_width``: a car's width in pixels, or ``gsd``: metres per pixel (a car is ``CAR_WIDTH_M`` wide);
- neither: the width is measured from the labels, the median short side of the main class's boxes after the
  class map and ``box_scale`` (boxes with a known angle; axis-aligned placeholders only when there are no others).

With a common training width (``data.vehicle_width``), every image of a dataset whose car width is known is
resampled by ``common / dataset width`` when it is read (``Sample.meta['scale']``, applied by
:mod:`obbdet.data`). ``box_scale: {width: 0.93, length: 1.0}`` multiplies every box's short / long side, to
tighten labels that a dataset draws loosely. ``depth`` (``bits:12``, ``percentile:1,99``, ``range:0,4095``) and
``bands`` (``[0, 1, 2]``) are how its files are read (``meta['depth']``, ``meta['bands']``; see
:func:`obbdet.imageio.read_image_rgb`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from obbdet.boxes import scale_xywha_sides
from obbdet.imageio import DepthScaling
from obbdet.structures import Sample

from .errors import RegistryConfigError

CAR_WIDTH_M = 1.8  # metres: the width of a typical car, which ``gsd`` and the synthetic scenes map to pixels
BOX_SCALE_KEYS = ("width", "length")
SCALE_KEYS = ("vehicle_width", "gsd", "box_scale", "depth", "bands")


@dataclass(frozen=True)
class ScaleOptions:
    """The scale and reading keys of one dataset entry, validated.

    vehicle_width: a car's width in the dataset's pixels (given directly, or ``CAR_WIDTH_M / gsd``); None:
        measured from the labels. gsd: metres per pixel as given (kept for the start-up table).
    box_scale: ``(width factor, length factor)`` on every box's short and long side, or None.
    depth: the :class:`~obbdet.imageio.DepthScaling` spelling, or None (the reader's default).
    bands: the three 0-based bands that make the RGB image, or None (the reader's default).
    """

    vehicle_width: float | None = None
    gsd: float | None = None
    box_scale: tuple[float, float] | None = None
    depth: str | None = None
    bands: tuple[int, ...] | None = None

    @property
    def source(self) -> str:
        """Where the car width comes from: ``given``, ``gsd`` or ``measured``."""
        if self.gsd is not None:
            return "gsd"
        return "measured" if self.vehicle_width is None else "given"


def parse_scale_options(entry: Mapping, where: str) -> ScaleOptions:
    """The scale keys of a dataset entry; RegistryConfigError naming ``where`` (file and entry) when one is bad."""
    width, gsd = entry.get("vehicle_width"), entry.get("gsd")
    if width is not None and gsd is not None:
        raise RegistryConfigError(f"{where}: give vehicle_width (pixels) or gsd (metres per pixel), not both")
    if width is not None:
        width = _positive(width, "vehicle_width", where, "a car's width in this dataset's pixels")
    if gsd is not None:
        gsd = _positive(gsd, "gsd", where, "metres per pixel")
        width = CAR_WIDTH_M / gsd
    return ScaleOptions(vehicle_width=width, gsd=gsd, box_scale=_box_scale(entry.get("box_scale"), where),
                        depth=_depth(entry.get("depth"), where), bands=_bands(entry.get("bands"), where))


def _positive(value, key: str, where: str, meaning: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not np.isfinite(value):
        raise RegistryConfigError(f"{where}: {key} must be a number > 0 ({meaning}), got {value!r}")
    return float(value)


def _box_scale(value, where: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise RegistryConfigError(f"{where}: box_scale must be a mapping like {{width: 0.93, length: 1.0}}, "
                                  f"got {value!r}")
    unknown = sorted(str(k) for k in set(value) - set(BOX_SCALE_KEYS))
    if unknown:
        raise RegistryConfigError(f"{where}: box_scale has unknown key(s) {unknown}; valid keys: "
                                  f"{', '.join(BOX_SCALE_KEYS)}")
    factors = tuple(_positive(value.get(k, 1.0), f"box_scale.{k}", where, "a factor on the box side")
                    for k in BOX_SCALE_KEYS)
    return None if factors == (1.0, 1.0) else factors


def _depth(value, where: str) -> str | None:
    if value is None:
        return None
    try:
        DepthScaling.parse(value)
    except ValueError as exc:
        raise RegistryConfigError(f"{where}: depth: {exc}") from None
    return str(value)


def _bands(value, where: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if (not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 3
            or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 0 for b in value)):
        raise RegistryConfigError(f"{where}: bands must be three 0-based band indices like [0, 1, 2], got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class WidthReport:
    """One dataset's car width before and after resampling (a row of the start-up table's width block).

    before: the car width in the dataset's pixels (given, from the gsd, or measured); None when unknown.
    source: ``given``, ``gsd``, ``measured`` or ``unknown`` (nothing given and no box of the main class).
    measured: the labels' median short side of the main class (after ``box_scale``), None without such boxes;
        ``measured_boxes`` boxes were used, ``axis_aligned`` when only axis-aligned placeholders were there.
    factor: the resampling factor of the dataset's images (1: not resampled).
    """

    before: float | None
    source: str
    measured: float | None
    measured_boxes: int
    axis_aligned: bool
    gsd: float | None
    factor: float

    @property
    def after(self) -> float | None:
        return None if self.before is None else self.before * self.factor


def apply_box_scale(samples: Sequence[Sample], box_scale: tuple[float, float] | None) -> None:
    """Scale every box's short / long side by ``box_scale`` (new arrays: mapped samples share them with the
    importer's, which the annotation cache may hold)."""
    if box_scale is None:
        return
    width, length = box_scale
    for sample in samples:
        if len(sample.boxes):
            sample.boxes = np.asarray(scale_xywha_sides(sample.boxes, width, length), np.float32)


def measure_vehicle_width(samples: Sequence[Sample], class_index: int | None) -> tuple[float | None, int, bool]:
    """``(median short side, boxes used, axis_aligned)`` of class ``class_index`` over ``samples``.

    Boxes with a known angle are used; axis-aligned placeholders (the bounds of a car at any angle, wider than
    the car) only when a dataset has nothing else, and then ``axis_aligned`` is True.
    """
    if class_index is None:
        return None, 0, False
    known, placeholders = [], []
    for sample in samples:
        chosen = np.asarray(sample.labels) == class_index
        if not chosen.any():
            continue
        angle_known = _angle_known(sample)
        short = np.asarray(sample.boxes, np.float64)[:, 3]
        known.append(short[chosen & angle_known])
        placeholders.append(short[chosen & ~angle_known])
    for widths, axis_aligned in ((known, False), (placeholders, True)):
        values = np.concatenate(widths) if widths else np.zeros(0)
        if len(values):
            return float(np.median(values)), int(len(values)), axis_aligned
    return None, 0, False


def _angle_known(sample: Sample) -> np.ndarray:
    flags = getattr(sample, "angle_known", None)
    if flags is None:  # samples with one image-wide flag
        return np.full(len(sample.boxes), not getattr(sample, "aabb_only", False))
    return np.asarray(flags, bool)


def resolve_width(options: ScaleOptions, samples: Sequence[Sample], class_index: int | None,
                  common_width: float | None) -> WidthReport:
    """The dataset's car width (given or measured) and its resampling factor to ``common_width`` (None: 1)."""
    measured, count, axis_aligned = measure_vehicle_width(samples, class_index)
    before = options.vehicle_width if options.vehicle_width is not None else measured
    source = options.source if before is not None else "unknown"
    factor = common_width / before if common_width is not None and before is not None else 1.0
    return WidthReport(before, source, measured, count, axis_aligned, options.gsd, float(factor))


def tag_samples(samples: Sequence[Sample], options: ScaleOptions, factor: float) -> None:
    """Record how ``obbdet.data`` reads each sample: ``meta['scale']``, ``meta['depth']``, ``meta['bands']``."""
    for sample in samples:
        if factor != 1.0:
            sample.meta["scale"] = factor
        if options.depth is not None:
            sample.meta["depth"] = options.depth
        if options.bands is not None:
            sample.meta["bands"] = options.bands


def format_widths(reports: Sequence[tuple[str, WidthReport]], common_width: float | None,
                  main_class: str) -> list[str]:
    """The start-up table's width block: per dataset the car width before (given or measured) and after."""
    if common_width is None:
        head = f"{main_class} width (px, median short side; data.vehicle_width not set: images not resampled):"
    else:
        head = (f"{main_class} width (px, median short side; images resampled to data.vehicle_width "
                f"{common_width:g}):")
    lines = [head]
    for name, r in reports:
        lines.append(f"  {name}: {_before(r, main_class)} -> {_after(r)}")
    return lines


def _before(r: WidthReport, main_class: str) -> str:
    if r.before is None:
        return f"unknown (no {main_class} boxes to measure, none given)"
    labels = "no boxes" if r.measured is None else f"{r.measured:.3g}"
    if r.source == "measured":
        kind = "axis-aligned boxes" if r.axis_aligned else "boxes"
        return f"{r.before:.3g} measured ({r.measured_boxes} {kind})"
    if r.source == "gsd":
        return f"{r.before:.3g} from gsd {r.gsd:g} m (labels {labels})"
    return f"{r.before:.3g} given (labels {labels})"


def _after(r: WidthReport) -> str:
    if r.factor == 1.0:
        return "not resampled" if r.before is None else f"{r.before:.3g} (not resampled)"
    return f"{r.after:.3g} (images x{r.factor:.4g})"
