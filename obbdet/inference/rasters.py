"""Huge rasters and georeferenced images in a folder run.

- A TIFF with more pixels than ``window_read_above`` (default ``obbdet.raster.WINDOWED_READ_PIXELS``) is never
  decoded whole: ``obbdet.raster.WindowedRaster`` reads each tile's window from the file, resampled to the
  network scale (``obbdet.inference.pipeline``), so memory follows the tile batch, not the mosaic. Under
  torchrun every process predicts a share of its tiles and rank 0 merges them (``obbdet.inference.sharding``).
- Any georeferenced TIFF (one with a CRS), huge or not, also gets its detections as a GIS layer beside the
  obb_json file (``obbdet.georef_output``): ``<stem>.gpkg`` in the raster's CRS by default, or ``<stem>.geojson``
  in WGS84.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from obbdet.georef_output import GIS_FORMATS, gis_output_path, write_gis
from obbdet.imageio import ImageReadError
from obbdet.inference.options import ImageFailure
from obbdet.inference.pipeline import TileShare, detector_device, finish_shared_job
from obbdet.inference.predictor import Detections, Predictor
from obbdet.inference.sharding import Shard, gather
from obbdet.raster import WINDOWED_READ_PIXELS, WindowedRaster, is_raster_path, raster_pixels, read_georeference

logger = logging.getLogger(__name__)

GIS_CHOICES = (*GIS_FORMATS, "none")


def huge_rasters(paths: Sequence[Path], window_read_above: int = WINDOWED_READ_PIXELS) -> list[Path]:
    """The TIFFs among ``paths`` with more than ``window_read_above`` pixels (from their headers)."""
    out = []
    for path in paths:
        if is_raster_path(path):
            pixels = raster_pixels(path)
            if pixels is not None and pixels > window_read_above:
                out.append(path)
    return out


def write_gis_layer(path: Path, target: Path, labels, gis: str) -> None:
    """Beside ``target`` (the obb_json file), the GIS layer of ``labels`` when ``path`` is a georeferenced TIFF
    and ``gis`` is not ``none``."""
    if gis == "none" or not is_raster_path(path):
        return
    georef = read_georeference(path)
    if georef is not None:
        write_gis(gis_output_path(target, gis), labels, georef, gis)


def detect_huge_raster(predictor: Predictor, path: Path, scale: float, shard: Shard):
    """Detections of one huge raster, its tiles shared among the processes of ``shard``.

    Every process calls this for the same rasters in the same order. Returns, on rank 0, ``(Detections, capped,
    damaged windows)`` or an :class:`ImageFailure`; None on the other ranks."""
    part, job = None, None
    try:
        with WindowedRaster(path, depth=predictor.depth, bands=predictor.bands) as raster:
            items = [(path, raster, scale, TileShare(shard.rank, shard.world))]
            for result in predictor.stream(items, scale=scale):
                part = result.failure if result.failure is not None else result.detections
                job = result.job
            damaged = list(raster.damaged)
    except ImageReadError as exc:
        part, damaged = exc.reason, []
    parts = gather(shard, (part, damaged))
    if not shard.is_main:
        return None
    failures = [p for p, _ in parts if isinstance(p, str)]
    if failures:
        return ImageFailure(str(path), failures[0])
    device = detector_device(predictor.detector)
    raw, capped = finish_shared_job(job, [p for p, _ in parts], predictor.options, device, str(path))
    windows = [w for _, ds in parts for w in ds]
    detections = Detections.from_raw(raw, predictor.class_names, job.original_size, capped, job.outside)
    return detections, capped, windows
