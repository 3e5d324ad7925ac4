"""The one image reader: 8-bit as stored, deeper data stretched, 1/3/4 bands, clear failures."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from obbdet.imageio import DepthScaling, ImageReadError, read_image_rgb


def _write(path, array_file_order):
    """Write an array given in the file's band order (R, G, B[, A or N]) through OpenCV (which wants BGR)."""
    a = array_file_order
    if a.ndim == 3 and a.shape[2] == 3:
        a = a[:, :, ::-1]
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, [2, 1, 0, 3]]
    assert cv2.imwrite(str(path), np.ascontiguousarray(a))
    return path


def _twelve_bit_scene(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(200, 3900, size=(64, 80, 3)).astype(np.uint16)  # 12-bit values in a 16-bit file


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_twelve_bit_in_sixteen_bit_uses_the_full_range(tmp_path, suffix):
    data = _twelve_bit_scene()
    image = read_image_rgb(_write(tmp_path / f"a{suffix}", data))
    assert image.dtype == np.uint8 and image.shape == (64, 80, 3)
    assert image.min() <= 5 and image.max() >= 250  # a 2-98% stretch, not a division by 256 (max 15)
    # the stretch keeps the order of values within each band
    for band in range(3):
        order = np.argsort(data[..., band], axis=None, kind="stable")
        assert np.all(np.diff(image[..., band].ravel()[order].astype(int)) >= 0)
    fixed = read_image_rgb(tmp_path / f"a{suffix}", depth=DepthScaling.parse("bits:12"))
    np.testing.assert_allclose(fixed.astype(float), data[..., :3] * 255.0 / 4095.0, atol=0.51)


def test_eight_bit_grey_and_rgb_unchanged(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, size=(20, 30, 3)).astype(np.uint8)
    np.testing.assert_array_equal(read_image_rgb(_write(tmp_path / "rgb.png", rgb)), rgb)
    grey = rgb[..., 0]
    out = read_image_rgb(_write(tmp_path / "grey.png", grey))
    assert out.shape == (20, 30, 3) and all(np.array_equal(out[..., c], grey) for c in range(3))


def test_four_band_tiff_and_band_selection(tmp_path):
    rgbn = np.random.default_rng(2).integers(0, 256, size=(16, 24, 4)).astype(np.uint8)
    path = _write(tmp_path / "rgbn.tif", rgbn)
    np.testing.assert_array_equal(read_image_rgb(path), rgbn[..., :3])
    np.testing.assert_array_equal(read_image_rgb(path, bands=(3, 0, 1)), rgbn[..., [3, 0, 1]])
    with pytest.raises(ImageReadError, match=r"bands \[0, 1, 7\]"):
        read_image_rgb(path, bands=(0, 1, 7))


def test_depth_scaling_parse_and_errors():
    assert DepthScaling.parse("percentile:1,99") == DepthScaling("percentile", 1.0, 99.0)
    assert DepthScaling.parse("range:0,4095").high == 4095.0
    for bad in ("percentile:5", "bits:x", "nope", "range:9,1"):
        with pytest.raises(ValueError):
            DepthScaling.parse(bad)


def test_non_ascii_path_and_failures(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    assert read_image_rgb(_write(tmp_path / "straße_ü.png", rgb)).shape == (4, 4, 3)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty file"):
        read_image_rgb(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match="not found"):
        read_image_rgb(tmp_path / "missing.png")
