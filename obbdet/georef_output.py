"""Detections of a georeferenced raster as GIS layers: GeoPackage in the raster's CRS, GeoJSON in WGS84.

Each detection (an xywha le90 box in the raster's pixel-corner coordinates, see ``obbdet.boxes``) becomes a
polygon of its four corners mapped through the raster's affine transform, with fields ``class``, ``score``,
``length_m``, ``width_m`` (metres, from the pixel size along the box's sides), ``angle_deg`` and ``heading_deg``
(image convention, as in obb_json), ``azimuth_deg`` (the heading as a map bearing: degrees clockwise from grid
north, 0..360; empty when the heading is unknown), ``cx_px``/``cy_px`` (the pixel centre, to find the box in the
obb_json file) and, when tracked, ``track_id``.

GeoPackage and GeoJSON are written with pyogrio (GDAL's OGR) into a temporary file that is renamed when complete.
GeoJSON follows RFC 7946: WGS84 longitude/latitude (transformed with rasterio/PROJ), exterior rings
counter-clockwise.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from obbdet.boxes import xywha_to_poly
from obbdet.raster import GeoReference
from obbdet.structures import ImageLabels

GIS_FORMATS = ("gpkg", "geojson")
LAYER_NAME = "detections"


def polygon_wkb(rings: np.ndarray) -> np.ndarray:
    """``[N, K, 2]`` closed rings (first point repeated last) -> ``[N]`` object array of little-endian WKB
    polygons (one ring each)."""
    rings = np.asarray(rings, np.float64)
    n, k = rings.shape[:2]
    header = np.frombuffer(b"\x01" + (3).to_bytes(4, "little") + (1).to_bytes(4, "little")
                           + int(k).to_bytes(4, "little"), np.uint8)
    out = np.empty(n, dtype=object)
    for i in range(n):
        out[i] = header.tobytes() + rings[i].astype("<f8").tobytes()
    return out


def _closed(polys: np.ndarray) -> np.ndarray:
    return np.concatenate([polys, polys[:, :1]], axis=1)


def _counter_clockwise(rings: np.ndarray) -> np.ndarray:
    """Rings ``[N, K, 2]`` (closed) with positive signed area (counter-clockwise in x-east, y-north axes)."""
    x, y = rings[..., 0], rings[..., 1]
    area2 = np.sum(x[:, :-1] * y[:, 1:] - x[:, 1:] * y[:, :-1], axis=1)
    flip = area2 < 0
    rings = rings.copy()
    rings[flip] = rings[flip, ::-1]
    return rings


def detection_table(labels: ImageLabels, georef: GeoReference) -> tuple[np.ndarray, dict]:
    """``(rings [N, 5, 2] closed polygons in the raster's CRS, {field: [N] values})`` for ``labels``' boxes."""
    boxes = np.asarray(labels.boxes, np.float64).reshape(-1, 5)
    n = len(boxes)
    rings = _closed(georef.pixel_to_crs(xywha_to_poly(boxes))) if n else np.zeros((0, 5, 2))
    step = georef.metres_per_pixel(boxes[:, :2]) if n else np.zeros((0, 2))
    cos, sin = np.cos(boxes[:, 4]), np.sin(boxes[:, 4])
    length_m = boxes[:, 2] * np.hypot(cos * step[:, 0], sin * step[:, 1])
    width_m = boxes[:, 3] * np.hypot(sin * step[:, 0], cos * step[:, 1])
    heading = labels.heading if labels.heading is not None else np.full(n, np.nan)
    a, b, _, d, e, _ = georef.transform
    east = a * np.cos(heading) + b * np.sin(heading)
    north = d * np.cos(heading) + e * np.sin(heading)  # the CRS's y grows north (e < 0 on a north-up raster)
    if georef.metres_per_unit is None:  # degrees: scale longitude steps by cos(latitude) before the bearing
        lat = np.radians(georef.pixel_to_crs(boxes[:, :2])[:, 1]) if n else np.zeros(0)
        east = east * np.cos(lat)
    azimuth = np.degrees(np.arctan2(east, north)) % 360.0
    fields = {
        "class": np.array(list(labels.classes), dtype=object),
        "score": np.asarray(labels.scores if labels.scores is not None else np.full(n, np.nan), np.float64),
        "length_m": length_m, "width_m": width_m,
        "angle_deg": np.degrees(boxes[:, 4]), "heading_deg": np.degrees(heading), "azimuth_deg": azimuth,
        "cx_px": boxes[:, 0], "cy_px": boxes[:, 1],
    }
    extras = labels.extras or []
    if any("track_id" in x for x in extras):
        fields["track_id"] = np.array([x.get("track_id", -1) for x in extras], np.int64)
    return rings, fields


def _atomic_vector_write(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    os.unlink(tmp)  # OGR creates the file itself (a GeoPackage driver refuses an existing empty file)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_geopackage(path, labels: ImageLabels, georef: GeoReference) -> None:
    """Write ``labels`` as polygons in the raster's CRS to the GeoPackage ``path`` (layer ``detections``)."""
    from pyogrio.raw import write

    rings, fields = detection_table(labels, georef)
    _atomic_vector_write(Path(path), lambda tmp: write(
        tmp, polygon_wkb(rings), list(fields.values()), list(fields), layer=LAYER_NAME, driver="GPKG",
        geometry_type="Polygon", crs=georef.crs_wkt))


def write_geojson_wgs84(path, labels: ImageLabels, georef: GeoReference) -> None:
    """Write ``labels`` as an RFC 7946 GeoJSON FeatureCollection (WGS84 longitude/latitude)."""
    from pyogrio.raw import write
    from rasterio.crs import CRS
    from rasterio.warp import transform

    rings, fields = detection_table(labels, georef)
    if len(rings):
        lon, lat = transform(CRS.from_wkt(georef.crs_wkt), CRS.from_epsg(4326), rings[..., 0].ravel().tolist(),
                             rings[..., 1].ravel().tolist())
        rings = _counter_clockwise(np.stack([lon, lat], axis=-1).reshape(rings.shape))
    _atomic_vector_write(Path(path), lambda tmp: write(
        tmp, polygon_wkb(rings), list(fields.values()), list(fields), layer=LAYER_NAME, driver="GeoJSON",
        geometry_type="Polygon", crs="EPSG:4326", layer_options={"RFC7946": "YES"}))


def gis_output_path(json_path, fmt: str) -> Path:
    """Where the GIS layer of the detections written to ``json_path`` goes: beside it, same stem."""
    if fmt not in GIS_FORMATS:
        raise ValueError(f"GIS format must be one of {GIS_FORMATS}, got {fmt!r}")
    return Path(json_path).with_suffix("." + fmt)


def write_gis(path, labels: ImageLabels, georef: GeoReference, fmt: str) -> None:
    """``fmt`` ``gpkg`` (raster CRS) or ``geojson`` (WGS84)."""
    (write_geopackage if fmt == "gpkg" else write_geojson_wgs84)(path, labels, georef)

