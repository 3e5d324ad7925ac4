"""Windowed raster reads (obbdet.raster) and GIS output of detections (obbdet.georef_output)."""
from __future__ import annotations

import math

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")
pyogrio = pytest.importorskip("pyogrio")

from rasterio.transform import from_origin  # noqa: E402

from obbdet.boxes import xywha_to_poly  # noqa: E402
from obbdet.georef_output import polygon_wkb, write_geojson_wgs84, write_geopackage  # noqa: E402
from obbdet.imageio import DepthScaling, ImageReadError, read_image_rgb  # noqa: E402
from obbdet.raster import WindowedRaster, read_georeference  # noqa: E402
from obbdet.structures import ImageLabels  # noqa: E402

PIXEL_M = 0.1
ORIGIN = (500000.0, 5000000.0)  # UTM 33N easting / northing of the top-left corner


def write_tiff(path, bands: np.ndarray, *, crs="EPSG:32633", tiled=True, transform=None):
    """``bands [C, H, W]`` to a (tiled, deflate) GeoTIFF; ``crs=None`` writes a plain TIFF."""
    count, height, width = bands.shape
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=bands.dtype.name,
                   compress="deflate")
    if tiled:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if crs is not None:
        profile.update(crs=crs, transform=transform or from_origin(*ORIGIN, PIXEL_M, PIXEL_M))
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(bands)
    return path


@pytest.fixture()
def rgb_tiff(tmp_path):
    rng = np.random.default_rng(0)
    bands = rng.integers(0, 255, (3, 700, 900), dtype=np.uint8)
    return write_tiff(tmp_path / "mosaic.tif", bands), np.moveaxis(bands, 0, -1)


def test_windows_equal_the_decoded_image(rgb_tiff):
    path, image = rgb_tiff
    assert np.array_equal(read_image_rgb(path), image)
    with WindowedRaster(path) as raster:
        assert (raster.width, raster.height) == (900, 700)
        for x0, y0, x1, y1 in [(0, 0, 256, 256), (100, 200, 400, 500), (640, 512, 900, 700)]:
            assert np.array_equal(raster.read(x0, y0, x1, y1), image[y0:y1, x0:x1])


def test_resampled_window_matches_a_resize(rgb_tiff):
    path, image = rgb_tiff
    with WindowedRaster(path) as raster:
        half = raster.read(0, 0, 900, 700, 450, 350)
    expected = image.reshape(350, 2, 450, 2, 3).astype(np.float64).mean(axis=(1, 3))
    assert half.shape == (350, 450, 3)
    assert np.abs(half - expected).max() <= 1.0  # a 2x2 average, rounded


def test_deep_raster_shares_one_depth_cut(tmp_path):
    ramp = np.tile(np.linspace(0, 4095, 600, dtype=np.float64), (400, 1)).astype(np.uint16)
    path = write_tiff(tmp_path / "deep.tif", np.stack([ramp] * 3))
    with WindowedRaster(path, depth=DepthScaling("bits", bits=12)) as raster:
        left, right = raster.read(0, 0, 10, 10), raster.read(590, 0, 600, 10)
    assert left.max() <= 5 and right.min() >= 250
    with WindowedRaster(path) as raster:  # percentile cut of the whole raster, not of each window
        window = raster.read(0, 0, 60, 60)
    assert window.max() < 30  # a per-window cut would have stretched this dark corner to 255


def test_bands_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    bands = rng.integers(0, 255, (4, 64, 64), dtype=np.uint8)
    path = write_tiff(tmp_path / "rgbn.tif", bands)
    with WindowedRaster(path, bands=(3, 2, 1)) as raster:
        assert np.array_equal(raster.read(0, 0, 64, 64), np.moveaxis(bands[[3, 2, 1]], 0, -1))
    with pytest.raises(ImageReadError, match="bands"):
        WindowedRaster(path, bands=(0, 1, 7))
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a tiff at all")
    with pytest.raises(ImageReadError, match="junk.tif"):
        WindowedRaster(junk)


def test_a_corrupt_block_is_reported_and_left_grey(tmp_path, caplog):
    rng = np.random.default_rng(2)
    bands = rng.integers(0, 255, (3, 512, 1024), dtype=np.uint8)
    path = write_tiff(tmp_path / "bad.tif", bands)
    with rasterio.open(path) as dataset:  # the bytes of block (column 2, row 1), all bands (pixel-interleaved)
        offset = int(dataset.get_tag_item("BLOCK_OFFSET_2_1", "TIFF", bidx=1))
        size = int(dataset.get_tag_item("BLOCK_SIZE_2_1", "TIFF", bidx=1))
    data = bytearray(path.read_bytes())
    data[offset:offset + size] = rng.integers(0, 255, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with WindowedRaster(path) as raster:
        windows = [raster.read(x, y, x + 256, y + 256) for y in (0, 256) for x in (0, 256, 512, 768)]
        damaged = list(raster.damaged)
    assert [d[:4] for d in damaged] == [(512, 256, 768, 512)] and "cannot be read" in caplog.text
    grey = [w for w in windows if (w == 114).all()]
    assert len(grey) == len(damaged)
    assert sum(np.array_equal(w, np.moveaxis(bands, 0, -1)[y:y + 256, x:x + 256])
               for w, (y, x) in zip(windows, [(y, x) for y in (0, 256) for x in (0, 256, 512, 768)])) \
        == 8 - len(damaged)


def test_georeference_of_plain_and_geo_tiffs(tmp_path, rgb_tiff):
    path, _ = rgb_tiff
    geo = read_georeference(path)
    assert geo is not None and geo.epsg == 32633 and geo.metres_per_unit == 1.0
    assert np.allclose(geo.pixel_to_crs(np.array([[10.0, 20.0]])), [[ORIGIN[0] + 1.0, ORIGIN[1] - 2.0]])
    plain = write_tiff(tmp_path / "plain.tif", np.zeros((3, 32, 32), np.uint8), crs=None)
    assert read_georeference(plain) is None


def labels_for_gis() -> ImageLabels:
    boxes = np.array([[100.0, 50.0, 45.0, 18.0, math.radians(30)], [300.5, 200.25, 40.0, 17.0, -math.pi / 2]])
    return ImageLabels(image="mosaic.tif", boxes=boxes, classes=["car", "truck"], scores=np.array([0.9, 0.6]),
                       heading=np.array([math.radians(30), math.pi / 2]))


def test_geopackage_polygons_line_up_with_pixel_detections(tmp_path, rgb_tiff):
    path, _ = rgb_tiff
    geo = read_georeference(path)
    labels = labels_for_gis()
    out = tmp_path / "det.gpkg"
    write_geopackage(out, labels, geo)
    meta, _, geometry, fields = pyogrio.raw.read(out, layer="detections")
    assert "32633" in meta["crs"]
    names = list(meta["fields"])
    table = dict(zip(names, fields))
    assert list(table["class"]) == ["car", "truck"]
    assert np.allclose(table["length_m"], [4.5, 4.0]) and np.allclose(table["width_m"], [1.8, 1.7])
    # heading +90 deg in image terms points down the image: south on a north-up raster
    assert np.allclose(table["azimuth_deg"], [(90 + 30) % 360, 180.0])
    corners = xywha_to_poly(labels.boxes)
    for i, wkb in enumerate(geometry):
        ring = np.frombuffer(wkb[13:], "<f8").reshape(-1, 2)
        expected = np.array([[ORIGIN[0] + x * PIXEL_M, ORIGIN[1] - y * PIXEL_M] for x, y in corners[i]])
        assert np.allclose(ring[:4], expected, atol=1e-6) and np.allclose(ring[0], ring[-1])


def test_geojson_is_wgs84_counter_clockwise(tmp_path, rgb_tiff):
    import json

    path, _ = rgb_tiff
    out = tmp_path / "det.geojson"
    write_geojson_wgs84(out, labels_for_gis(), read_georeference(path))
    doc = json.loads(out.read_text())
    assert len(doc["features"]) == 2
    for feature in doc["features"]:
        ring = np.array(feature["geometry"]["coordinates"][0])
        assert np.all((14.0 < ring[:, 0]) & (ring[:, 0] < 16.0)) and np.all((44.0 < ring[:, 1]) & (ring[:, 1] < 46.0))
        x, y = ring[:, 0], ring[:, 1]
        assert np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]) > 0  # RFC 7946: exterior rings counter-clockwise


def test_polygon_wkb_layout():
    ring = np.array([[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]])
    wkb = polygon_wkb(ring)[0]
    assert wkb[0] == 1 and int.from_bytes(wkb[1:5], "little") == 3 and int.from_bytes(wkb[9:13], "little") == 4
    assert np.array_equal(np.frombuffer(wkb[13:], "<f8").reshape(-1, 2), ring[0])
