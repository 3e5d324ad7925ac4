"""Huge rasters read window by window: (Geo)TIFF and BigTIFF mosaics larger than memory.

Built on rasterio (GDAL): it reads tiled and striped TIFF/BigTIFF by window, resamples a window on the way
(``out_shape``) and takes a decimated read from the file's overviews when it has them, and it knows the
georeferencing (CRS and affine transform) GIS users rely on. tifffile reads windows too, but has neither
overview-aware resampling nor coordinate reference systems.

Pixel coordinates follow the rest of obbdet: ``x`` right, ``y`` down, pixel ``(i, j)`` covers
``[i, i + 1) x [j, j + 1)`` (corner convention), which is also GDAL's: the affine transform maps a pixel-corner
point ``(x, y)`` to the raster's CRS.

Every window comes back as ``[h, w, 3]`` uint8 RGB with the same band selection and depth scaling as
:func:`obbdet.imageio.read_image_rgb`; for files deeper than 8 bits the percentile cut is computed once per
raster from a decimated read of the whole image (at most ~1 megapixel), so all windows share one mapping.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from obbdet.imageio import DEFAULT_DEPTH, PAD_GREY, DepthScaling, ImageReadError

logger = logging.getLogger(__name__)

RASTER_EXTENSIONS = (".tif", ".tiff")
# TIFFs with more pixels than this are read window by window (infer.py --window-read-above); smaller images are
# decoded whole, as JPEG/PNG always are.
WINDOWED_READ_PIXELS = 64_000_000
STATISTICS_PIXELS = 1_000_000  # size of the decimated read that sets the depth cut of a deep raster
# GDAL's block cache while a raster is read (MB). GDAL's default, 5% of the machine's memory, let a 30000 x 30000
# mosaic's decoded blocks grow the process by 1.2 GB on a 24 GB machine; two rows of 512-px RGB blocks of such a
# mosaic (what overlapping tiles read again) take ~90 MB.
BLOCK_CACHE_MB = 256


@dataclass(frozen=True)
class GeoReference:
    """Where a raster lies: its CRS (WKT) and the affine transform from pixel-corner coordinates to the CRS,
    ``X = a x + b y + c``, ``Y = d x + e y + f`` (GDAL's geotransform order rearranged as rasterio's ``Affine``).

    ``metres_per_unit``: the CRS's linear unit in metres for a projected CRS, None for a geographic one (degrees),
    where lengths in metres are computed on the ellipsoid instead (:meth:`metres_per_pixel`).
    """

    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]
    metres_per_unit: float | None
    epsg: int | None = None

    def pixel_to_crs(self, xy: np.ndarray) -> np.ndarray:
        """``[..., 2]`` pixel-corner coordinates -> ``[..., 2]`` coordinates in the raster's CRS."""
        a, b, c, d, e, f = self.transform
        xy = np.asarray(xy, np.float64)
        x, y = xy[..., 0], xy[..., 1]
        return np.stack([a * x + b * y + c, d * x + e * y + f], axis=-1)

    def metres_per_pixel(self, xy: np.ndarray) -> np.ndarray:
        """``[N, 2]`` metres covered by one pixel along image x and along image y at pixel positions ``xy
        [N, 2]`` (constant for a projected CRS; for a geographic CRS from the local scale of the ellipsoid)."""
        a, b, _, d, e, _ = self.transform
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        if self.metres_per_unit is not None:
            step = np.array([math.hypot(a, d), math.hypot(b, e)]) * self.metres_per_unit
            return np.broadcast_to(step, xy.shape).copy()
        # degrees: one degree of latitude / longitude in metres at each latitude (WGS84 series, < 1 cm/km error)
        lat = np.radians(self.pixel_to_crs(xy)[:, 1])
        m_lat = 111132.92 - 559.82 * np.cos(2 * lat) + 1.175 * np.cos(4 * lat)
        m_lon = 111412.84 * np.cos(lat) - 93.5 * np.cos(3 * lat)
        along_x = np.hypot(a * m_lon, d * m_lat)
        along_y = np.hypot(b * m_lon, e * m_lat)
        return np.stack([along_x, along_y], axis=1)


def is_raster_path(path) -> bool:
    return Path(path).suffix.lower() in RASTER_EXTENSIONS


def _georeference(dataset) -> GeoReference | None:
    if dataset.crs is None:
        return None
    crs = dataset.crs
    t = dataset.transform
    metres = None
    if crs.is_projected:
        units = crs.linear_units_factor  # (name, metres per unit)
        metres = float(units[1])
    return GeoReference(crs.to_wkt(), (t.a, t.b, t.c, t.d, t.e, t.f), metres, crs.to_epsg())


def read_georeference(path) -> GeoReference | None:
    """The georeferencing of a raster file (header only), or None when it has no CRS or rasterio cannot open
    it (a plain image)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with rasterio.open(path) as dataset:
                return _georeference(dataset)
        except RasterioIOError:
            return None


def raster_pixels(path) -> int | None:
    """Width x height of a TIFF from its header, or None when it cannot be opened."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with rasterio.open(path) as dataset:
                return int(dataset.width) * int(dataset.height)
        except RasterioIOError:
            return None


class WindowedRaster:
    """An open raster read by windows (use as a context manager, or call :meth:`close`).

    ``width``, ``height``: size in pixels; ``georef``: :class:`GeoReference` or None; ``damaged``: windows that
    could not be read (filled with grey, logged), as ``(x0, y0, x1, y1, reason)``.
    """

    def __init__(self, path, *, depth: DepthScaling = DEFAULT_DEPTH, bands: Sequence[int] | None = None):
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

        self.path = Path(path)
        self._env = rasterio.Env(GDAL_CACHEMAX=BLOCK_CACHE_MB)  # in force until close()
        self._env.__enter__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            try:
                self._dataset = rasterio.open(self.path)
            except RasterioIOError as exc:
                self._env.__exit__(None, None, None)
                raise ImageReadError(self.path, f"cannot open as a raster: {str(exc)[:200]}") from None
        ds = self._dataset
        self.width, self.height = int(ds.width), int(ds.height)
        self.georef = _georeference(ds)
        self.damaged: list[tuple] = []
        count = int(ds.count)
        if bands is None:
            bands = (0, 0, 0) if count == 1 else (0, 1, 2)
        bands = tuple(int(b) for b in bands)
        if len(bands) != 3 or not all(0 <= b < count for b in bands):
            self.close()
            raise ImageReadError(self.path, f"bands {list(bands)} do not name three of the raster's {count} band(s)")
        self._indexes = [b + 1 for b in bands]  # rasterio counts bands from 1
        self._deep = np.dtype(ds.dtypes[0]) != np.uint8
        self._limits = None
        if self._deep:
            self._limits = depth.limits(self._decimated(STATISTICS_PIXELS))

    def __enter__(self) -> "WindowedRaster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if not self._dataset.closed:
            self._dataset.close()
            self._env.__exit__(None, None, None)

    def _decimated(self, pixels: int) -> np.ndarray:
        """The whole raster read at about ``pixels`` pixels (from overviews when present), ``[h, w, 3]`` raw."""
        step = max(1.0, math.sqrt(self.width * self.height / pixels))
        out_w, out_h = max(1, round(self.width / step)), max(1, round(self.height / step))
        data = self._dataset.read(self._indexes, out_shape=(3, out_h, out_w))
        return np.moveaxis(data, 0, -1)

    def read(self, x0: float, y0: float, x1: float, y1: float, out_width: int | None = None,
             out_height: int | None = None) -> np.ndarray:
        """The window ``[x0, x1) x [y0, y1)`` (original pixels, fractional allowed) as ``[out_height, out_width,
        3]`` uint8 RGB (default: the window's own size). A window that cannot be read (a corrupt block) comes back
        grey and is listed in ``damaged`` with the reason, so one bad block does not lose the whole mosaic."""
        from rasterio.enums import Resampling
        from rasterio.errors import RasterioIOError
        from rasterio.windows import Window

        out_width = int(out_width if out_width is not None else round(x1 - x0))
        out_height = int(out_height if out_height is not None else round(y1 - y0))
        shrink = (x1 - x0) > out_width or (y1 - y0) > out_height
        exact = (out_width == x1 - x0 and out_height == y1 - y0 and float(x0).is_integer()
                 and float(y0).is_integer())
        window = Window(x0, y0, x1 - x0, y1 - y0)
        try:
            data = self._dataset.read(
                self._indexes, window=window, out_shape=(3, out_height, out_width),
                resampling=Resampling.nearest if exact else Resampling.average if shrink else Resampling.bilinear)
        except RasterioIOError as exc:
            cause = exc.__cause__ or exc.__context__ or exc  # GDAL's own message sits in the chained error
            reason = (str(cause).strip() or str(exc)).splitlines()[-1][:200]
            self.damaged.append((x0, y0, x1, y1, reason))
            logger.warning("%s: window x %.0f..%.0f, y %.0f..%.0f cannot be read (%s); treated as empty",
                           self.path, x0, x1, y0, y1, reason)
            return np.full((out_height, out_width, 3), PAD_GREY, np.uint8)
        image = np.moveaxis(data, 0, -1)
        if self._deep:
            image = DepthScaling.apply(image, *self._limits)
        return np.ascontiguousarray(image)
