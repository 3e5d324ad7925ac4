"""Huge rasters through the inference pipeline: windows read from the file give the detections of the same
tiles cut from the decoded image."""
from __future__ import annotations

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")

from obbdet.inference.options import InferenceOptions  # noqa: E402
from obbdet.inference.pipeline import stream  # noqa: E402
from obbdet.raster import WindowedRaster  # noqa: E402
from tests.infer_support import BrightRectDetector, grid_boxes, match_ious, render_rects  # noqa: E402
from tests.test_raster import write_tiff  # noqa: E402


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    boxes = grid_boxes(30, 22, 60.0, origin=(30.0, 30.0), size=(36.0, 16.0), seed=5)
    image = render_rects(1800, 1320, boxes)
    path = write_tiff(tmp_path_factory.mktemp("raster") / "mosaic.tif", np.ascontiguousarray(np.moveaxis(image, -1, 0)))
    return path, image, boxes


def run(item, scale, options):
    (result,) = list(stream(BrightRectDetector(), [("mosaic", item, scale)], scale, options))
    assert result.failure is None
    return result.detections


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_windows_give_the_detections_of_the_decoded_image(scene, scale):
    path, image, boxes = scene
    options = InferenceOptions(tile=512, overlap=128, batch=3)
    in_memory = run(image, scale, options)
    with WindowedRaster(path) as raster:
        windowed = run(raster, scale, options)
    assert len(in_memory) == len(boxes) == len(windowed)
    if scale == 1.0:  # the same pixels: the same detections, bit for bit
        assert np.array_equal(windowed.boxes, in_memory.boxes) and np.array_equal(windowed.scores, in_memory.scores)
    else:  # resampled per window (area average) instead of once per image: equal up to resampling
        assert match_ious(in_memory.boxes, windowed.boxes).min() > 0.9
    assert match_ious(boxes, windowed.boxes).min() > 0.8


def test_a_mosaic_keeps_every_vehicle_past_max_det(scene):
    path, image, boxes = scene
    with WindowedRaster(path) as raster:
        dets = run(raster, 1.0, InferenceOptions(tile=512, overlap=128, max_det=100))
    assert len(dets) == len(boxes)  # 660 vehicles on 2.4 megapixels: the per-megapixel cap applies, not 100


def test_shares_of_a_raster_merge_into_the_whole(scene):
    """Tiles split between processes (each predicts its share, one merges) give the single-process result."""
    from obbdet.inference.pipeline import finish_shared_job
    from obbdet.inference.tiling import plan_tiles

    path, image, boxes = scene
    options = InferenceOptions(tile=512, overlap=128, batch=2)
    whole = run(image, 1.0, options)
    parts, job = [], None
    with WindowedRaster(path) as raster:
        for rank in range(3):
            n_tiles = len(plan_tiles(1800, 1320, 512, 128, align=BrightRectDetector.stride))
            (part,) = list(stream(BrightRectDetector(), [("mosaic", raster, 1.0, range(rank, n_tiles, 3))], 1.0,
                                  options))
            assert part.partial and len(part.job.tiles) == n_tiles
            parts.append(part.detections)
            job = part.job
    merged, _ = finish_shared_job(job, parts[::-1], options, "cpu", "mosaic")
    assert np.array_equal(merged.boxes, whole.boxes) and np.array_equal(merged.scores, whole.scores)
