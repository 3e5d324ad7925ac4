"""Image files in and out: the one reader that training, validation, inference and the tools share.

Every image becomes ``[H, W, 3]`` uint8 RGB:

- 8-bit files are used as stored (JPEG through OpenCV's colour path, which applies the EXIF orientation);
- deeper files (12-bit drone or satellite data in 16-bit PNG/TIFF, float rasters) are brought to 8 bits by a
  :class:`DepthScaling` rule: by default a per-band 2-98% percentile cut, as GIS viewers stretch such data
  (dividing by 256, OpenCV's choice, leaves 12-bit data nearly black);
- one band is replicated to grey RGB; three bands are RGB; four bands are RGB + alpha for PNG and RGB + near
  infrared for TIFF: ``bands`` picks which three bands (0-based, in the file's order) make the RGB image.

Reading never goes through a path string OpenCV must open itself (``np.fromfile`` + ``cv2.imdecode``), so
non-ASCII paths work. Failures raise :class:`ImageReadError` with one reason.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from obbdet.formats import IMAGE_EXTENSIONS
from obbdet.io_utils import atomic_write_bytes

DEPTH_MODES = ("percentile", "bits", "range")
PAD_GREY = 114  # the value of pixels outside an image (batch and tile padding, warps), in training and inference


class ImageReadError(OSError):
    """An image file that cannot be used; ``str()`` is ``"<path>: <reason>"``."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):  # picklable across DataLoader workers
        return type(self), (self.path, self.reason)


@dataclass(frozen=True)
class DepthScaling:
    """How pixel values of a file deeper than 8 bits map to 0..255 (8-bit files are never rescaled).

    mode ``percentile``: per band, ``low``/``high`` percentiles (default 2 and 98) map to 0 and 255;
    ``bits``: values divided by ``2**bits - 1`` (e.g. ``bits=12`` for 12-bit data in 16-bit files);
    ``range``: ``low``..``high`` are raw values mapped to 0..255. Values outside are clipped.
    """

    mode: str = "percentile"
    low: float = 2.0
    high: float = 98.0
    bits: int = 16

    def __post_init__(self):
        if self.mode not in DEPTH_MODES:
            raise ValueError(f"depth scaling mode must be one of {DEPTH_MODES}, got {self.mode!r}")
        if self.mode == "bits" and not 1 <= self.bits <= 32:
            raise ValueError(f"bits must be in 1..32, got {self.bits}")
        if self.mode in ("percentile", "range") and not self.low < self.high:
            raise ValueError(f"low must be below high, got {self.low} and {self.high}")
        if self.mode == "percentile" and not (0 <= self.low and self.high <= 100):
            raise ValueError(f"percentiles must lie in [0, 100], got {self.low} and {self.high}")

    @classmethod
    def parse(cls, text: str) -> "DepthScaling":
        """From the CLI/config spelling: ``percentile``, ``percentile:1,99``, ``bits:12``, ``range:0,4095``."""
        mode, _, args = str(text).partition(":")
        try:
            values = [float(v) for v in args.split(",")] if args else []
            if mode == "bits":
                return cls(mode, bits=int(values[0])) if values else cls(mode)
            if values:
                return cls(mode, low=values[0], high=values[1])
            return cls(mode)
        except (IndexError, ValueError) as exc:
            raise ValueError(f"bad depth scaling {text!r} (use percentile[:LOW,HIGH], bits:N or range:MIN,MAX): "
                             f"{exc}") from None

    def to_uint8(self, image: np.ndarray) -> np.ndarray:
        """``[H, W, C]`` of any numeric dtype -> uint8 of the same shape."""
        return self.apply(image, *self.limits(image))

    def limits(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per band raw values ``(low [C], high [C])`` that map to 0 and 255 for ``image [H, W, C]`` (a window
        reader takes them from a decimated read of the whole raster, so every window shares one mapping)."""
        channels = image.shape[-1]
        if self.mode == "bits":
            return np.zeros(channels, np.float32), np.full(channels, 2.0 ** self.bits - 1, np.float32)
        if self.mode == "range":
            return np.full(channels, self.low, np.float32), np.full(channels, self.high, np.float32)
        flat = image.reshape(-1, channels).astype(np.float32, copy=False)
        step = max(1, len(flat) // 1_000_000)  # percentiles of a regular subsample: same cut, 1 M values
        low, high = np.percentile(flat[::step], [self.low, self.high], axis=0)
        return low.astype(np.float32), high.astype(np.float32)

    @staticmethod
    def apply(image: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """``image [H, W, C]`` -> uint8 with ``low``/``high`` (``[C]``) mapped to 0/255, clipped outside."""
        data = image.astype(np.float32, copy=False)
        span = np.maximum(np.asarray(high, np.float32) - np.asarray(low, np.float32), 1e-6)
        out = (data - np.asarray(low, np.float32)) * (255.0 / span)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


DEFAULT_DEPTH = DepthScaling()


def _file_order(decoded: np.ndarray) -> np.ndarray:
    """OpenCV's BGR / BGRA channel order back to the file's band order ``[H, W, C]``."""
    if decoded.ndim == 2:
        return decoded[:, :, None]
    if decoded.shape[2] == 3:
        return decoded[:, :, ::-1]
    if decoded.shape[2] == 4:
        return decoded[:, :, [2, 1, 0, 3]]
    return decoded


def _select_bands(image: np.ndarray, bands: Sequence[int] | None, path) -> np.ndarray:
    channels = image.shape[2]
    if bands is None:
        bands = (0, 0, 0) if channels == 1 else (0, 1, 2)
    bands = tuple(int(b) for b in bands)
    if len(bands) != 3 or not all(0 <= b < channels for b in bands):
        raise ImageReadError(path, f"bands {list(bands)} do not name three of the image's {channels} band(s)")
    if bands == tuple(range(3)) and channels == 3:
        return image
    return image[:, :, list(bands)]


def _read_bytes(path: Path) -> np.ndarray:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found (broken symbolic link?)") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageReadError(path, "not a regular file")
    if info.st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    try:
        return np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(path, f"cannot read: {exc.strerror or exc}") from None


def _decode(data: np.ndarray, flags: int, path: Path) -> np.ndarray:
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error as exc:  # e.g. more pixels than OPENCV_IO_MAX_IMAGE_PIXELS allows
        raise ImageReadError(path, f"cannot decode: {str(exc).strip().splitlines()[-1][:200]}") from None
    except MemoryError:
        raise ImageReadError(path, f"not enough memory to decode this {data.size}-byte image") from None
    if image is None:
        raise ImageReadError(path, f"cannot decode {data.size}-byte file: corrupt, truncated or not an image")
    return image


def read_image_rgb(path, *, depth: DepthScaling = DEFAULT_DEPTH, bands: Sequence[int] | None = None
                   ) -> np.ndarray:
    """Read an image file as ``[H, W, 3]`` uint8 RGB (see the module docstring for depth and bands).

    Raises :class:`ImageReadError` with the reason: missing or unreadable file, not a regular file, empty
    file, data that does not decode (corrupt, truncated or not an image), or ``bands`` the image lacks.
    """
    path = Path(path)
    data = _read_bytes(path)
    if path.suffix.lower() in (".jpg", ".jpeg") and bands is None:
        image = _decode(data, cv2.IMREAD_COLOR, path)  # 8-bit, EXIF orientation applied
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)  # in place: one image-sized buffer, not two
    image = _decode(data, cv2.IMREAD_UNCHANGED, path)
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and bands is None:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)
    image = _select_bands(_file_order(image), bands, path)
    if image.dtype != np.uint8:
        image = depth.to_uint8(image)
    return np.ascontiguousarray(image)


def resize_image(image: np.ndarray, scale: float) -> tuple[np.ndarray, tuple[float, float]]:
    """Resize ``[H, W, 3]`` by ``scale`` (sizes rounded, at least 1 px).

    Returns the resized image and the exact per-axis factors ``(sx, sy) = (new_w / W, new_h / H)`` that map
    image coordinates to resized coordinates (pixel-corner convention: ``x_new = x * sx``, as cv2.resize
    and albumentations use). INTER_AREA when shrinking (no aliasing), INTER_LINEAR when enlarging.
    """
    height, width = image.shape[:2]
    if scale == 1.0:
        return image, (1.0, 1.0)
    new_w, new_h = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    return resized, (new_w / width, new_h / height)


def write_image_rgb(path, image_rgb: np.ndarray, *, jpeg_quality: int = 92) -> None:
    """Write an RGB image atomically; the format follows the file extension (``.jpg``, ``.png``, ...)."""
    path = Path(path)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(path.suffix, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"{path}: cannot encode image as {path.suffix!r}")
    atomic_write_bytes(path, encoded.tobytes())


def image_size(path) -> tuple[int, int]:
    """``(width, height)`` of an image file, read from its header only (no full decode)."""
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def find_image(stem: str, folders: Sequence) -> Path | None:
    """The first image named ``stem`` + an image extension (any case) in ``folders``, or None."""
    for folder in folders:
        if folder is None:
            continue
        folder = Path(folder)
        for ext in IMAGE_EXTENSIONS:
            for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
                if candidate.is_file():
                    return candidate
    return None


def discover_images(folder, exclude: Sequence = (), extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files (jpg/jpeg/png/tif/tiff/bmp, any case; or other ``extensions``, e.g. videos) under ``folder``,
    recursively, sorted by relative path.

    Symlinked folders are followed once (cycles are cut); folders in ``exclude`` (e.g. an output folder inside
    the input) are skipped. Entries that are not regular files (broken links, FIFOs) are listed too, so they are
    reported as failures rather than silently ignored.
    """
    folder = Path(folder)
    excluded = {os.path.realpath(p) for p in exclude}
    seen_dirs: set[str] = set()
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs or real in excluded:
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if os.path.realpath(os.path.join(dirpath, d)) not in excluded)
        for name in filenames:
            if os.path.splitext(name)[1].lower() in extensions:
                found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())
