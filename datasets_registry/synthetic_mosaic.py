"""Synthetic orthomosaics: a tiled, georeferenced GeoTIFF (BigTIFF when needed) assembled from synthetic scenes.

A ``size x size`` mosaic is a grid of ``scene x scene`` synthetic scenes (``render_scene``, one seed each), written
block by block with rasterio, so memory holds one row of scenes, never the mosaic. Its ground truth (obb_json,
boxes in mosaic pixels) is written beside it. Georeferencing: UTM zone 33N (EPSG:32633), north up, the pixel size
``CAR_WIDTH_M / vehicle_width`` metres, so a car is ``vehicle_width`` pixels wide and 1.8 m wide on the map.

This is what ``bench/huge_raster.py`` and the huge-raster tests run ``infer.py`` on.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from obbdet.formats import write_obb_json
from obbdet.structures import ImageLabels

from .scale import CAR_WIDTH_M
from .synthetic_scene import render_scene

logger = logging.getLogger(__name__)

MOSAIC_CRS = "EPSG:32633"
MOSAIC_ORIGIN = (500000.0, 5000000.0)  # easting, northing of the top-left corner (metres)


def write_synthetic_mosaic(path, size: int, *, seed: int = 0, vehicle_width: float = 16.0, scene: int = 1024,
                           block: int = 512, progress: bool = True) -> ImageLabels:
    """Write a ``size x size`` RGB GeoTIFF mosaic of synthetic scenes to ``path`` and its ground truth to
    ``path.with_suffix('.json')`` (obb_json: boxes ``[N, 5]`` xywha le90 in mosaic pixels, heading).

    ``scene``: side of each synthetic scene (the last row/column are cut to the mosaic); ``block``: the TIFF
    tile side. Deflate-compressed, tiled, BigTIFF when the data may pass 4 GB. Returns the ground truth.
    """
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    from tqdm import tqdm

    path = Path(path)
    if size < 32 or scene < 32:
        raise ValueError(f"mosaic and scene sides must be at least 32 px, got {size} and {scene}")
    pixel_m = CAR_WIDTH_M / vehicle_width
    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", tiled=True, blockxsize=block,
                   blockysize=block, compress="deflate", BIGTIFF="IF_SAFER", crs=MOSAIC_CRS,
                   transform=from_origin(*MOSAIC_ORIGIN, pixel_m, pixel_m), photometric="RGB")
    boxes, classes, headings, difficult = [], [], [], []
    cells = [(y0, x0) for y0 in range(0, size, scene) for x0 in range(0, size, scene)]
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(tmp, "w", **profile) as dataset:
        for k, (y0, x0) in enumerate(tqdm(cells, desc="mosaic", unit="scene", disable=not progress)):
            w, h = min(scene, size - x0), min(scene, size - y0)
            image, labels = render_scene(seed * 1_000_003 + k, max(w, 32), max(h, 32), vehicle_width=vehicle_width)
            dataset.write(np.moveaxis(image[:h, :w], -1, 0), window=Window(x0, y0, w, h))
            keep = (labels.boxes[:, 0] < w) & (labels.boxes[:, 1] < h)
            shifted = labels.boxes[keep].copy()
            shifted[:, 0] += x0
            shifted[:, 1] += y0
            boxes.append(shifted)
            classes.extend(c for c, kept in zip(labels.classes, keep) if kept)
            headings.append(labels.heading[keep] if labels.heading is not None else np.full(int(keep.sum()), np.nan))
            difficult.append(labels.difficult[keep])
    tmp.replace(path)
    truth = ImageLabels(image=path.name, width=size, height=size, boxes=np.concatenate(boxes), classes=classes,
                        difficult=np.concatenate(difficult), heading=np.concatenate(headings))
    write_obb_json(path.with_suffix(".json"), truth)
    logger.info("%s: %d x %d px, %d vehicles, %.3f m per pixel", path, size, size, len(truth), pixel_m)
    return truth
