"""Sequence runs: the frames of videos (and, when tracking, folders of images) through a Predictor, in order.

A video ``<rel>/<stem>.mp4`` under the input folder gives one obb_json per frame,
``<out>/<rel>/<stem>/<frame:06d>.json`` (``"image": "<stem>/<frame:06d>"``; frame = 0-based number on the
video's timeline, see ``obbdet.video``), written atomically; ``draw`` also writes
``<out>/overlays/<rel>/<stem>.mp4``, one overlay frame per frame processed, encoded as it goes (memory does not
grow with the video). Frames are decoded in a background thread while the current one is detected. A frame
that cannot be decoded or detected is listed in the summary with its number and reason and the video goes on;
a video that cannot be opened is listed like a failing image.

With tracking (``obbdet.tracking``), each video and each folder of images is one sequence: the tracks of its
frames replace the detections in the per-frame files (``track_id``, ``heading``, ``speed`` added) and
``<out>/<rel>/<stem>.tracks.csv`` receives the tracks CSV (``obbdet.tracking.sequence`` documents its columns).

:func:`run_prepared` runs everything a :class:`~obbdet.inference.runner.PreparedRun` found.
"""
from __future__ import annotations

import csv
import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from obbdet.formats import IMAGE_EXTENSIONS, OVERLAY_DIR, write_obb_json
from obbdet.frames import frame_folder
from obbdet.imageio import ImageReadError, read_image_rgb, write_image_rgb
from obbdet.inference.options import ImageFailure
from obbdet.inference.predictor import Detections, Predictor, class_thresholds
from obbdet.inference.runner import (InferenceSummary, PreparedRun, output_paths, overlay_path, read_ahead,
                                     run_inference)
from obbdet.inference.sharding import Shard
from obbdet.io_utils import atomic_output
from obbdet.structures import ImageLabels
from obbdet.tracking import TrackerOptions, track_sequence, tracks_csv_rows
from obbdet.video import (FrameFailure, VideoReadError, VideoWriter, frame_selected,
                          iter_video_frames, video_info)

logger = logging.getLogger(__name__)

Selection = tuple[int, int, "int | None"]  # (every, start, end) frames, see obbdet.video.frame_selected
TRACKS_CSV_SUFFIX = ".tracks.csv"


@dataclass
class VideoSequence:
    """A video run as a sequence: where its results go (``folder`` of per-frame obb_json files, the overlay
    video, the tracks CSV beside the folder), its frames, and how its failures are recorded."""

    video: Path
    folder: Path
    overlay_path: Path
    images = False  # its frames count as video frames in the summary

    @property
    def tracks_csv(self) -> Path:
        return self.folder.with_name(self.folder.name + TRACKS_CSV_SUFFIX)

    def target(self, frame: int) -> Path:
        return self.folder / f"{frame:06d}.json"

    def image_name(self, frame: int) -> str:
        return f"{self.folder.name}/{frame:06d}"

    def frames(self, selection: Selection) -> Iterator:
        return iter_video_frames(self.video, *selection)

    def expected(self, selection: Selection) -> int | None:
        """How many frames the selection takes (from the header; None when unknown)."""
        every, start, end = selection
        try:
            frames = video_info(self.video).frames
        except VideoReadError:
            return None
        stop = frames if end is None else min(frames, end)
        return max(0, (stop - start + every - 1) // every)

    def failure(self, frame, reason: str) -> FrameFailure:
        return FrameFailure(str(self.video), frame, reason)

    def check(self) -> None:
        """Raise :class:`VideoReadError` for a file that is not a readable video (nothing is written then)."""
        self.fps = video_info(self.video).fps

    def overlay(self, selection: Selection) -> "_VideoOverlay":
        """The overlay video, at the source's speed (its frame rate over ``every``)."""
        return _VideoOverlay(self.overlay_path, self.fps / selection[0])


def video_sequences(videos: Sequence[Path], root: Path, out_dir: Path, taken: Sequence[Path] = ()
                    ) -> tuple[list[VideoSequence], list[ImageFailure]]:
    """:class:`VideoSequence` of each video (``<out>/<rel>/<stem>/``, overlay ``<out>/overlays/<rel>/<stem>.mp4``),
    and a failure for a video whose output folder an earlier video (``a.mp4`` and ``a.avi``) or the images'
    obb_json files (``taken``: their targets, e.g. a frame folder ``a/`` beside ``a.mp4``) already use."""
    used = {Path(t).parent: Path(t) for t in taken}
    sequences, failures = [], []
    for video in videos:
        rel = video.relative_to(root)
        folder = out_dir / rel.with_suffix("")
        if folder in used:
            failures.append(ImageFailure(str(video), f"output folder {folder} already used by {used[folder]}"))
            continue
        used[folder] = video
        sequences.append(VideoSequence(video, folder, out_dir / OVERLAY_DIR / rel.with_suffix(".mp4")))
    return sequences, failures


def overlay_frame(image: np.ndarray, labels: ImageLabels) -> np.ndarray:
    """``image`` ``[H, W, 3]`` uint8 RGB with ``labels`` drawn: boxes in their class colours, heading arrows
    where known, captions "class score" plus ``#<track id>`` for objects whose ``extras`` carry one."""
    from obbdet.visualize import class_color, draw_obbs, label_captions

    extras = labels.extras or [{}] * len(labels)
    ids = [f"#{extra['track_id']}" if extra.get("track_id") is not None else "" for extra in extras]
    return draw_obbs(image, labels.boxes, [class_color(name) for name in labels.classes],
                     captions=label_captions(labels, extra=ids), headings=labels.heading)


def labels_above(labels: ImageLabels, thresholds: dict | None) -> ImageLabels:
    """The objects of ``labels`` scoring at least their class's threshold (all of them when None)."""
    if not thresholds or labels.scores is None or not len(labels):
        return labels
    names = sorted(set(labels.classes))
    cut = dict(zip(names, class_thresholds(thresholds, names)))
    keep = np.flatnonzero([score >= cut[name] for name, score in zip(labels.classes, labels.scores)])
    return ImageLabels(labels.image, labels.width, labels.height, labels.boxes[keep],
                       [labels.classes[i] for i in keep], labels.scores[keep], labels.difficult[keep],
                       labels.ignore[keep], None if labels.heading is None else labels.heading[keep],
                       None if labels.aabb is None else labels.aabb[keep],
                       None if labels.extras is None else [labels.extras[i] for i in keep])


class _VideoOverlay:
    """The overlay video of one sequence, opened on its first frame (whose size it takes)."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = path, fps
        self.writer: VideoWriter | None = None

    def write(self, frame: int, image: np.ndarray) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = VideoWriter(self.path, self.fps, (image.shape[1], image.shape[0])).__enter__()
        self.writer.write(image)

    def close(self, error: BaseException | None = None) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.__exit__(*((None, None, None) if error is None else (type(error), error, error.__traceback__)))


@dataclass
class FolderSequence:
    """A folder of images run as one ordered sequence (tracking): ``frames`` ``[(frame, path)]`` in order
    (``obbdet.video.frame_folder``), ``targets`` the obb_json file of each image (as for any image)."""

    folder: Path
    frame_paths: list[tuple[int, Path]]
    targets: dict[Path, Path]
    out_dir: Path
    tracks_csv: Path
    read: Callable = read_image_rgb
    images = True  # its frames count as images in the summary

    def __post_init__(self):
        self.path_of = dict(self.frame_paths)

    @property
    def video(self) -> Path:  # the name failures and messages use
        return self.folder

    def frames(self, selection: Selection) -> Iterator:
        for n, path in self.frame_paths:
            if frame_selected(n, *selection):
                try:
                    yield n, self.read(path)
                except ImageReadError as exc:
                    yield ImageFailure(str(path), exc.reason)

    def expected(self, selection: Selection) -> int:
        return sum(frame_selected(n, *selection) for n, _ in self.frame_paths)

    def target(self, frame: int) -> Path:
        return self.targets[self.path_of[frame]]

    def image_name(self, frame: int) -> str:
        return self.path_of[frame].name

    def failure(self, frame, reason: str):
        return ImageFailure(str(self.path_of[frame]), reason)

    def check(self) -> None:
        """Nothing to check before the run: unreadable images fail one by one."""

    def overlay(self, selection: Selection) -> "_ImageOverlays":
        return _ImageOverlays(self)


class _ImageOverlays:
    """Overlays of a folder sequence: one image per frame, where ``--draw`` puts any image's overlay."""

    def __init__(self, sequence: FolderSequence):
        self.sequence = sequence

    def write(self, frame: int, image: np.ndarray) -> None:
        path = overlay_path(self.sequence.target(frame), self.sequence.out_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image_rgb(path, image)

    def close(self, error: BaseException | None = None) -> None:
        pass


def folder_sequences(images: Sequence[Path], root: Path, out_dir: Path, read=read_image_rgb
                     ) -> tuple[list[FolderSequence], list[ImageFailure]]:
    """Each folder of ``images`` (paths under ``root``) as a :class:`FolderSequence`; failures: images whose
    output name is taken (as in a folder run) and folders whose frame numbers clash (``2.jpg``, ``002.png``)."""
    targets, failures = output_paths(images, root, out_dir)
    folders: dict[Path, list[Path]] = {}
    for path in images:
        if path in targets:
            folders.setdefault(path.parent, []).append(path)
    sequences = []
    for folder, paths in folders.items():
        try:
            frames = frame_folder(folder, paths)
        except ValueError as exc:
            failures.extend(ImageFailure(str(path), f"not one sequence: {exc}") for path in paths)
            continue
        rel = folder.relative_to(root)
        csv_path = out_dir / (rel.as_posix() if rel.parts else root.resolve().name)
        sequences.append(FolderSequence(folder, frames, targets, out_dir,
                                        csv_path.with_name(csv_path.name + TRACKS_CSV_SUFFIX), read))
    return sequences, failures


def run_sequence(predictor: Predictor, sequence, summary: InferenceSummary, *, selection: Selection,
                 scale: float, mode: str = "obb", draw: bool = False, tracking: TrackerOptions | None = None,
                 progress: bool = True) -> bool:
    """Detect on the selected frames of one sequence (:class:`VideoSequence` or :class:`FolderSequence`) in
    order, writing one obb_json per frame (and overlays with ``draw``); totals and failures go into ``summary``.

    ``tracking``: follow tracks (``obbdet.tracking.track_sequence``) over the frames' detections; each frame's
    file then holds the confirmed tracks matched in it (filtered boxes, ``track_id``, ``heading``, ``speed``)
    and ``sequence.tracks_csv`` gets the tracks CSV (``obbdet.tracking.sequence``), written as frames come.
    A video that cannot be opened fails as a whole (False returned, nothing written); one that stops being
    readable keeps the frames written before.
    """
    from tqdm import tqdm

    try:
        sequence.check()
    except VideoReadError as exc:
        summary.video_failures.append(ImageFailure(str(sequence.video), exc.reason))
        logger.warning("skipped %s", exc)
        return False

    bar = tqdm(total=sequence.expected(selection), unit="frame", desc=sequence.video.name, disable=not progress,
               dynamic_ncols=True)
    done: dict = {}  # frame -> its stream result (rescaled and original image), until its file is written

    def detected() -> Iterator[tuple[int, ImageLabels]]:
        for result in predictor.stream(read_ahead(sequence.frames(selection)), scale=scale, keep_original=draw):
            bar.update(1)
            failed = result if isinstance(result, (FrameFailure, ImageFailure)) else \
                sequence.failure(result.key, result.failure) if result.failure is not None else None
            if failed is not None:
                (summary.frame_failures if isinstance(failed, FrameFailure) else summary.failures).append(failed)
                logger.warning("skipped %s", failed)
                continue
            detections = Detections.from_raw(result.detections, predictor.class_names, result.job.original_size,
                                             result.capped, result.outside)
            done[result.key] = result
            yield result.key, detections.to_labels(image=sequence.image_name(result.key), mode=mode)

    error = None
    with ExitStack() as stack:
        frames = detected()
        if tracking is not None:
            frames = track_sequence(frames, tracking, class_names=list(predictor.class_names))
            sequence.tracks_csv.parent.mkdir(parents=True, exist_ok=True)
            rows = csv.writer(stack.enter_context(atomic_output(sequence.tracks_csv, "w", newline="")),
                              lineterminator="\n")
        overlay = sequence.overlay(selection) if draw else None
        try:
            for frame, labels in frames:
                result = done.pop(frame)
                if _write_frame(predictor, sequence, frame, labels, result, summary, overlay) and tracking:
                    rows.writerows(tracks_csv_rows(frame, labels))
                bar.set_postfix(det=summary.detections, refresh=False)
        except VideoReadError as exc:
            summary.video_failures.append(ImageFailure(str(sequence.video), exc.reason))
            logger.warning("stopped reading %s", exc)
        except BaseException as exc:
            error = exc
            raise
        finally:
            bar.close()
            if overlay is not None:
                overlay.close(error)
    return True


def _write_frame(predictor: Predictor, sequence, frame: int, labels: ImageLabels, result,
                 summary: InferenceSummary, overlay) -> bool:
    """Write one frame's obb_json (and overlay) and count it; False (a failure recorded) when it cannot be."""
    target = sequence.target(frame)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_obb_json(target, labels)
    except (OSError, ValueError) as exc:
        failed = sequence.failure(frame, f"cannot write output: {exc}")
        (summary.frame_failures if isinstance(failed, FrameFailure) else summary.failures).append(failed)
        logger.warning("%s", failed)
        return False
    if overlay is not None:
        # as for images: the JSON keeps every detection, the overlay those above the operating point
        overlay.write(frame, overlay_frame(result.job.original, labels_above(labels, predictor.operating_point)))
    width, height = result.job.original_size
    if sequence.images:
        summary.images += 1
    else:
        summary.frames += 1
    summary.detections += len(labels)
    summary.outside += result.outside
    summary.megapixels += width * height / 1e6
    if result.capped:
        summary.capped.append(f"{sequence.video}: frame {frame}")
    return True


def run_sequences(predictor: Predictor, sequences: Sequence, failures: Sequence = (), *,
                  selection: Selection = (1, 0, None), scale: float, mode: str = "obb", draw: bool = False,
                  tracking: TrackerOptions | None = None, progress: bool = True) -> InferenceSummary:
    """:func:`run_sequence` over each sequence; ``failures`` (made while planning outputs: images of folder
    sequences, or videos) start the summary."""
    summary = InferenceSummary()
    for failed in failures:
        (summary.failures if Path(failed.path).suffix.lower() in IMAGE_EXTENSIONS else
         summary.video_failures).append(failed)
    start = time.perf_counter()
    for sequence in sequences:
        readable = run_sequence(predictor, sequence, summary, selection=selection, scale=scale, mode=mode,
                                draw=draw, tracking=tracking, progress=progress)
        summary.videos += readable and not sequence.images
    summary.seconds = time.perf_counter() - start
    if not summary.images:
        summary.frame_seconds = summary.seconds
    return summary


def run_prepared(run: PreparedRun, *, mode: str = "obb", draw: bool = False, progress: bool = True,
                 tracking: TrackerOptions | None = None, shard: Shard = Shard(), **image_options) -> InferenceSummary:
    """Everything ``run`` found: its images (one obb_json each as :func:`run_inference` writes them, with
    ``image_options``: ``window_read_above``, ``gis``, ``resume``; each folder of them a tracked sequence with
    ``run.track``), then its videos. ``tracking``: the tracker's options (default ``TrackerOptions()`` when
    ``run.track``). ``shard``: under torchrun, this process's share (whole videos and sequences round-robin)."""
    tracking = (tracking or TrackerOptions()) if run.track else None
    options = dict(selection=run.selection, scale=run.scale, mode=mode, draw=draw, tracking=tracking,
                   progress=progress)
    summary = InferenceSummary()
    if run.images and tracking is not None:
        folders, failures = folder_sequences(run.images, run.folder, run.out_dir, run.predictor.read)
        summary.add(run_sequences(run.predictor, shard.take(folders), failures if shard.is_main else [], **options))
    elif run.images:
        summary.add(run_inference(run.predictor, run.images, run.folder, run.out_dir, scale=run.scale, mode=mode,
                                  draw=draw, progress=progress, shard=shard, **image_options))
    if run.videos:
        taken = list(output_paths(run.images, run.folder, run.out_dir)[0].values())
        videos, failures = video_sequences(run.videos, run.folder, run.out_dir, taken)
        summary.add(run_sequences(run.predictor, shard.take(videos), failures if shard.is_main else [], **options))
    return summary
