"""Video files and ordered frame folders in and out (PyAV), frames as ``[H, W, 3]`` uint8 RGB.

- :func:`iter_video_frames` decodes a video in presentation order and yields ``(frame_number, rgb)``; a frame
  that cannot be decoded becomes a :class:`FrameFailure` (reported, skipped; decoding goes on with the next
  packet). Frame numbers are 0-based positions on the video's own timeline, computed from each frame's
  timestamp and the stream's frame rate (``round((pts - start_time) * time_base * fps)``), so a lost frame
  leaves a gap instead of renumbering the frames after it (for variable-frame-rate videos the numbers follow
  the nominal rate and are kept strictly increasing).
- :func:`video_info` reads the header: frame rate, frame count (estimated from the duration when the container
  does not store it), size, codec.
- :class:`VideoWriter` encodes RGB frames (H.264 when this PyAV build has an encoder for it, else MPEG-4 Part 2)
  into a temporary file renamed onto the target on a clean close (``obbdet.io_utils.atomic_output``).

Frame selection (``every``, ``start``, ``end``) is the same for videos and ordered frame folders
(``obbdet.frames``): :func:`frame_selected` takes the frames ``n`` with ``start <= n < end`` and
``(n - start) % every == 0``.
"""
from __future__ import annotations

import bisect
import logging
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from obbdet.io_utils import atomic_output

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
# container format of each extension: the writer's temporary file has none PyAV could guess from
_CONTAINER_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}
_ENCODER_PREFERENCE = ("libx264", "mpeg4")  # H.264 first; MPEG-4 Part 2 is in every FFmpeg build
_REORDER_FRAMES = 64  # more frames than any decoder holds back for reordering
_MAX_DEMUX_ERRORS = 100  # consecutive unreadable container chunks before a file is declared unreadable


class VideoReadError(OSError):
    """A video file that cannot be used; ``str()`` is ``"<path>: <reason>"``."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):
        return type(self), (self.path, self.reason)


@dataclass(frozen=True)
class FrameFailure:
    """A frame of ``path`` that could not be decoded (``frame_number`` on the video's timeline), and why."""

    path: str
    frame_number: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: frame {self.frame_number}: {self.reason}"


@dataclass(frozen=True)
class VideoInfo:
    """What a video's header says. ``frames``: the frame count (``frames_estimated``: from the duration and the
    frame rate, as the container does not store it); ``fps`` frames per second; ``codec`` the decoder name."""

    fps: float
    frames: int
    width: int
    height: int
    codec: str
    frames_estimated: bool = False


def frame_selected(n: int, every: int = 1, start: int = 0, end: int | None = None) -> bool:
    """Whether frame ``n`` is among ``start, start + every, ...`` below ``end`` (None: no end)."""
    return n >= start and (end is None or n < end) and (n - start) % every == 0


def check_selection(every: int, start: int, end: int | None) -> None:
    """Raise ValueError unless ``every >= 1``, ``start >= 0`` and ``end`` is None or above ``start``."""
    if every < 1 or start < 0 or (end is not None and end <= start):
        raise ValueError(f"frame selection needs every >= 1, start >= 0 and end > start; got every={every}, "
                         f"start={start}, end={end}")


def _open(path: Path):
    import av

    if not path.is_file():
        raise VideoReadError(path, "file not found" if not path.exists() else "not a regular file")
    try:
        container = av.open(str(path), "r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoReadError(path, f"not a readable video ({_reason(exc)})") from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, "no video stream in this file")
    return container, container.streams.video[0]


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).strip().splitlines()[0][:200]


def _rate(stream) -> Fraction | None:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else None


def video_info(path) -> VideoInfo:
    """The header of a video file; raises :class:`VideoReadError` (naming the file) for one that is not a video
    or has no usable frame rate."""
    path = Path(path)
    container, stream = _open(path)
    try:
        timeline = _Timeline(path, stream)
        frames, exact = _expected_frames(container, stream, timeline)
        ctx = stream.codec_context
        return VideoInfo(float(timeline.rate), frames, int(ctx.width), int(ctx.height), str(ctx.name), not exact)
    finally:
        container.close()


class _Timeline:
    """Timestamps -> frame numbers of one stream; keeps the numbers of decoded frames strictly increasing."""

    def __init__(self, path: Path, stream):
        rate = _rate(stream)
        if rate is None or stream.time_base is None:
            raise VideoReadError(path, "the video stream has no frame rate or time base")
        self.path, self.rate, self.step = path, rate, Fraction(stream.time_base) * rate  # step: frames per tick
        self.origin = stream.start_time or 0
        self.last = -1
        self.warned = False

    def number(self, pts: int | None) -> int | None:
        return None if pts is None else int(round((pts - self.origin) * self.step))

    def frame_number(self, pts: int | None) -> int:
        n = self.number(pts)
        if n is None or n <= self.last:
            if n is not None and not self.warned:
                logger.warning("%s: frame timestamps off the nominal frame grid (variable frame rate?); frame "
                               "numbers follow the decoding order from frame %d", self.path, self.last + 1)
                self.warned = True
            n = self.last + 1
        self.last = n
        return n


def _seek(container, stream, timeline: _Timeline, start: int) -> bool:
    """Seek to the key frame at or before frame ``start``; False when the container cannot seek."""
    import av

    target = timeline.origin + int(Fraction(start) / timeline.step)
    try:
        container.seek(target, backward=True, any_frame=False, stream=stream)
    except (av.error.FFmpegError, OSError) as exc:
        logger.info("%s: cannot seek (%s); decoding from the first frame", timeline.path, _reason(exc))
        return False
    return True


def _packets(container, stream, path: Path) -> Iterator:
    """The stream's packets; unreadable container chunks are skipped (logged), up to a bound per run of them."""
    import av

    errors = 0
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except (av.error.FFmpegError, OSError) as exc:
            errors += 1
            if errors > _MAX_DEMUX_ERRORS:
                raise VideoReadError(path, f"{errors} unreadable chunks in a row, stopped ({_reason(exc)})") from None
            logger.warning("%s: unreadable container data skipped: %s", path, _reason(exc))
            packets = container.demux(stream)
            continue
        errors = 0
        yield packet


def iter_video_frames(path, every: int = 1, start: int = 0, end: int | None = None) -> Iterator:
    """Decode the frames ``n`` of a video selected by :func:`frame_selected`, in order.

    Yields ``(n, rgb [H, W, 3] uint8)`` per decoded frame, or a :class:`FrameFailure` for a selected frame
    whose packet the decoder refused, whose frame it flagged corrupt, or that never came out of the decoder
    (the frames after it follow). Seeks to the key frame before ``start`` when the container allows (and
    decodes from the beginning instead when the seek lands past ``start``). Raises :class:`VideoReadError`
    for a file that is not a video, and ValueError for a bad selection.
    """
    check_selection(every, start, end)
    path = Path(path)
    reported: set[int] = set()
    if start > 0:
        try:
            for item in _decode(path, every, start, end, seek=True):
                if isinstance(item, FrameFailure):
                    reported.add(item.frame_number)
                yield item
            return
        except _SeekOvershot:
            logger.info("%s: seeking landed past frame %d; decoding from the first frame", path, start)
    for item in _decode(path, every, start, end, seek=False):
        if not (isinstance(item, FrameFailure) and item.frame_number in reported):
            yield item


class _SeekOvershot(Exception):
    """The first frame after a seek lies past the first frame wanted (an imprecise index)."""


def _decode(path: Path, every: int, start: int, end: int | None, seek: bool) -> Iterator:
    import av

    container, stream = _open(path)
    try:
        timeline = _Timeline(path, stream)
        seek = seek and _seek(container, stream, timeline, start)
        intra_only = bool(stream.codec_context.codec.intra_only)
        pending: list[int] = []  # selected frames whose packet went in and whose frame has not come out yet
        refused: dict[int, str] = {}  # of those, the ones whose packet the decoder refused, and why
        lost = "the decoder returned no frame for this packet"
        first = True

        def frames_out(frames) -> Iterator:
            nonlocal first
            for frame in frames:
                number = timeline.frame_number(frame.pts)
                if first and seek and number > start:
                    raise _SeekOvershot()
                first = False
                while pending and pending[0] < number:  # frames come out in presentation order: reported there
                    n = pending.pop(0)
                    yield FrameFailure(str(path), n, refused.pop(n, lost))
                if pending and pending[0] == number:
                    pending.pop(0)
                if not frame_selected(number, every, start, end):
                    continue
                if frame.is_corrupt:
                    yield FrameFailure(str(path), number, "the decoder flagged the frame as corrupt")
                else:
                    yield number, frame.to_ndarray(format="rgb24")

        last_packet = -1
        for packet in _packets(container, stream, path):
            n = timeline.number(packet.pts)
            if n is not None and packet.size:
                last_packet = max(last_packet, n)
            if n is not None and end is not None and n >= end + _REORDER_FRAMES:
                yield from frames_out(_flush(stream, path))
                break
            if n is not None and packet.size:
                if frame_selected(n, every, start, end):
                    bisect.insort(pending, n)
                elif intra_only:
                    continue  # every packet decodes alone: unselected ones need no decoding
            try:
                frames = packet.decode()
            except (av.error.FFmpegError, OSError) as exc:
                if n in pending:  # reported in presentation order, once the frames before it are out
                    refused[n] = f"cannot decode: {_reason(exc)}"
                continue
            yield from frames_out(frames)
        for n in pending:
            yield FrameFailure(str(path), n, refused.pop(n, lost))
        seen = max(timeline.last, last_packet)
        expected, exact = _expected_frames(container, stream, timeline)
        limit = expected if exact else expected - 1  # an estimate from the duration may be one frame long
        if end is not None:
            limit = min(limit, end)
        missing = [n for n in range(max(seen + 1, start), limit) if frame_selected(n, every, start, end)]
        if missing:
            logger.warning("%s: the file ends at frame %d, its header says %d frames: truncated or damaged",
                           path, seen, expected)
        for n in missing:
            yield FrameFailure(str(path), n, f"missing: the file ends at frame {seen} (truncated or damaged "
                                             f"container; the header says {expected} frames)")
    finally:
        container.close()


def _expected_frames(container, stream, timeline: _Timeline) -> tuple[int, bool]:
    """The frame count the header gives (True) or the duration implies (False; 0 when unknown)."""
    if stream.frames and stream.frames > 0:
        return int(stream.frames), True
    if stream.duration is not None:
        return int(round(stream.duration * timeline.step)), False
    if container.duration:
        return int(container.duration / 1_000_000 * float(timeline.step / Fraction(stream.time_base))), False
    return 0, False


def _flush(stream, path: Path) -> list:
    """The frames a decoder still holds (its reordering delay)."""
    import av

    try:
        return stream.codec_context.decode(None)
    except (av.error.FFmpegError, OSError) as exc:
        logger.warning("%s: flushing the decoder failed: %s", path, _reason(exc))
        return []


def video_encoder() -> str:
    """The encoder :class:`VideoWriter` uses: ``libx264`` (H.264) when this PyAV build has it, else ``mpeg4``."""
    import av

    for name in _ENCODER_PREFERENCE:
        try:
            av.codec.Codec(name, "w")
        except (av.error.FFmpegError, ValueError):  # UnknownCodecError: not in this build
            continue
        return name
    raise RuntimeError(f"this PyAV build has none of the encoders {_ENCODER_PREFERENCE}")


class VideoWriter:
    """Encode ``[H, W, 3]`` uint8 RGB frames into a video file, atomically::

        with VideoWriter("out.mp4", fps=25, size=(width, height)) as writer:
            for rgb in frames:
                writer.write(rgb)

    The container follows the extension (:data:`VIDEO_EXTENSIONS`); the codec is ``codec`` or
    :func:`video_encoder`'s choice, pixel format yuv420p (yuvj420p for MJPEG), so odd frame sides are padded
    by one replicated row/column to even ones. Frames are written to a temporary file beside ``path`` that is
    renamed onto it when the block ends without an exception (otherwise it is removed, ``path`` untouched).
    ``quality``: x264 CRF (lower is better; other encoders get a bit rate of a comparable level).
    """

    def __init__(self, path, fps: float, size: tuple[int, int], *, codec: str | None = None, quality: int = 18):
        self.path = Path(path)
        self.format = _CONTAINER_FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise ValueError(f"{path}: video files must end in one of {', '.join(VIDEO_EXTENSIONS)}")
        width, height = (int(v) for v in size)
        if width < 1 or height < 1 or not 0 < float(fps) < 10_000:
            raise ValueError(f"{path}: bad video size {size} or frame rate {fps}")
        self.size, self.fps, self.quality = (width, height), float(fps), int(quality)
        self.codec = codec or video_encoder()
        self.frames = 0
        self._stack: ExitStack | None = None
        self._container = self._stream = None

    def __enter__(self) -> "VideoWriter":
        import av

        self._stack = ExitStack()
        handle = self._stack.enter_context(atomic_output(self.path, "wb"))
        try:
            self._container = av.open(handle, "w", format=self.format)
            width, height = self.size
            stream = self._container.add_stream(self.codec, rate=Fraction(self.fps).limit_denominator(1001))
            stream.width, stream.height = width + width % 2, height + height % 2
            stream.pix_fmt = "yuvj420p" if self.codec == "mjpeg" else "yuv420p"
            if self.codec in ("libx264", "h264"):
                stream.options = {"crf": str(self.quality), "preset": "veryfast"}
            else:  # ~ the bits x264 spends at CRF 18 on aerial footage, scaled by the quality asked for
                stream.bit_rate = int(stream.width * stream.height * self.fps * 0.25 * 2 ** ((18 - self.quality) / 6))
            self._stream = stream
        except BaseException:
            self._abort()
            raise
        return self

    def write(self, rgb: np.ndarray) -> None:
        """Encode one ``[H, W, 3]`` uint8 RGB frame of the writer's size."""
        import av

        width, height = self.size
        rgb = np.asarray(rgb)
        if rgb.shape != (height, width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"{self.path}: expected a [{height}, {width}, 3] uint8 RGB frame, got {rgb.dtype} "
                             f"{list(rgb.shape)}")
        if width % 2 or height % 2:
            rgb = np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._abort(exc_type, exc, tb)
            return
        try:
            self._container.mux(self._stream.encode(None))  # drain the encoder
            self._container.close()
        except BaseException as error:
            self._abort(type(error), error, error.__traceback__)
            raise
        self._stack.close()  # fsync and rename onto the target

    def _abort(self, *exc_info) -> None:
        """Close whatever is open and remove the temporary file (the target is left as it was)."""
        import av

        if self._container is not None:
            try:
                self._container.close()
            except (av.error.FFmpegError, OSError) as exc:
                logger.debug("%s: closing an aborted video: %s", self.path, _reason(exc))
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.__exit__(*(exc_info or (RuntimeError, RuntimeError("aborted"), None)))
