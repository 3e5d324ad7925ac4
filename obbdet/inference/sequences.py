"""Sequence runs: the frames of videos (and, when tracking, folders of images) through a Predictor, in order.

A video ``<rel>/<stem>.mp4`` under the input folder gives one obb_json per frame,
``<out>/<rel>/<stem>/<frame:06d>.json`` (``"image": "<stem>/<frame:06d>"``; frame = 0-based number on the
video's timeline, see ``obbdet.video``), written atomically; ``draw`` also writes
``<out>/overlays/<rel>/<stem>.mp4``, one overlay frame per frame processed, encoded as it goes (memory does not
grow with the video). Frames are decoded in a background thread while the current one is detected. A frame
that cannot be decoded or detected is listed in the summary with its number and reason and the video goes on;
a video that cannot be opened is listed like a failing image.

:func:`run_prepared` runs everything a :class:`~obbdet.inference.runner.PreparedRun` found: its images
(``runner.run_inference``) and its videos.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from obbdet.formats import OVERLAY_DIR, write_obb_json
from obbdet.inference.options import ImageFailure
from obbdet.inference.predictor import Detections, Predictor, class_thresholds
from obbdet.inference.runner import InferenceSummary, PreparedRun, output_paths, read_ahead, run_inference
from obbdet.structures import ImageLabels
from obbdet.video import FrameFailure, VideoReadError, VideoWriter, iter_video_frames, video_info

logger = logging.getLogger(__name__)

Selection = tuple[int, int, "int | None"]  # (every, start, end) frames, see obbdet.video.frame_selected


@dataclass
class VideoOutputs:
    """Where one video's results go: the folder of its per-frame obb_json files and its overlay video."""

    video: Path
    folder: Path
    overlay: Path

    def target(self, frame: int) -> Path:
        return self.folder / f"{frame:06d}.json"

    def image_name(self, frame: int) -> str:
        return f"{self.folder.name}/{frame:06d}"


def video_outputs(videos: Sequence[Path], root: Path, out_dir: Path, taken: Sequence[Path] = ()
                  ) -> tuple[list[VideoOutputs], list[ImageFailure]]:
    """:class:`VideoOutputs` of each video (``<out>/<rel>/<stem>/``, overlay ``<out>/overlays/<rel>/<stem>.mp4``),
    and a failure for a video whose output folder an earlier video (``a.mp4`` and ``a.avi``) or the images'
    obb_json files (``taken``: their targets, e.g. a frame folder ``a/`` beside ``a.mp4``) already use."""
    used = {Path(t).parent: Path(t) for t in taken}
    outputs, failures = [], []
    for video in videos:
        rel = video.relative_to(root)
        folder = out_dir / rel.with_suffix("")
        if folder in used:
            failures.append(ImageFailure(str(video), f"output folder {folder} already used by {used[folder]}"))
            continue
        used[folder] = video
        outputs.append(VideoOutputs(video, folder, out_dir / OVERLAY_DIR / rel.with_suffix(".mp4")))
    return outputs, failures


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


class _Overlay:
    """The overlay video of one sequence, opened on its first frame (whose size it takes)."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = path, fps
        self.writer: VideoWriter | None = None

    def write(self, image: np.ndarray) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = VideoWriter(self.path, self.fps, (image.shape[1], image.shape[0])).__enter__()
        self.writer.write(image)

    def close(self, error: BaseException | None = None) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            if error is None:
                writer.__exit__(None, None, None)
            else:
                writer.__exit__(type(error), error, error.__traceback__)


def _selected_count(path: Path, selection: Selection) -> int | None:
    """How many frames the selection takes of a video (from its header; None when unknown)."""
    every, start, end = selection
    try:
        frames = video_info(path).frames
    except VideoReadError:
        return None
    stop = frames if end is None else min(frames, end)
    return max(0, (stop - start + every - 1) // every)


def run_video(predictor: Predictor, outputs: VideoOutputs, summary: InferenceSummary, *, selection: Selection,
              scale: float, mode: str = "obb", draw: bool = False, progress: bool = True) -> None:
    """Detect on the selected frames of one video, writing what :class:`VideoOutputs` names; totals and
    failures go into ``summary``. A video that cannot be opened (or stops being readable) is a failure of the
    whole video (the frames written before stay)."""
    from tqdm import tqdm

    video = outputs.video
    try:
        fps = video_info(video).fps / selection[0]
    except VideoReadError as exc:
        summary.failures.append(ImageFailure(str(video), exc.reason))
        logger.warning("skipped %s", exc)
        return
    summary.videos += 1
    overlay = _Overlay(outputs.overlay, fps) if draw else None
    bar = tqdm(total=_selected_count(video, selection), unit="frame", desc=video.name, disable=not progress,
               dynamic_ncols=True)
    error = None
    try:
        frames = read_ahead(iter_video_frames(video, *selection))
        for result in predictor.stream(frames, scale=scale, keep_original=draw):
            bar.update(1)
            if isinstance(result, FrameFailure) or result.failure is not None:
                failure = result if isinstance(result, FrameFailure) else FrameFailure(str(video), result.key,
                                                                                      result.failure)
                summary.frame_failures.append(failure)
                logger.warning("skipped %s", failure)
                continue
            _write_frame(predictor, outputs, result, summary, mode, overlay)
            bar.set_postfix(det=summary.detections, failed=len(summary.frame_failures), refresh=False)
    except VideoReadError as exc:
        summary.failures.append(ImageFailure(str(video), exc.reason))
        logger.warning("stopped reading %s", exc)
    except BaseException as exc:
        error = exc
        raise
    finally:
        bar.close()
        if overlay is not None:
            overlay.close(error)


def _write_frame(predictor: Predictor, outputs: VideoOutputs, result, summary: InferenceSummary, mode: str,
                 overlay: _Overlay | None) -> None:
    frame, job = result.key, result.job
    detections = Detections.from_raw(result.detections, predictor.class_names, job.original_size, result.capped,
                                     result.outside)
    labels = detections.to_labels(image=outputs.image_name(frame), mode=mode)
    target = outputs.target(frame)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_obb_json(target, labels)
    except (OSError, ValueError) as exc:
        summary.frame_failures.append(FrameFailure(str(outputs.video), frame, f"cannot write output: {exc}"))
        logger.warning("%s: frame %d: cannot write output: %s", outputs.video, frame, exc)
        return
    if overlay is not None:
        # as for images: the JSON keeps every detection, the overlay those above the operating point
        overlay.write(overlay_frame(job.original, labels_above(labels, predictor.operating_point)))
    summary.frames += 1
    summary.detections += len(detections)
    summary.outside += detections.outside
    summary.megapixels += job.original_size[0] * job.original_size[1] / 1e6
    if result.capped:
        summary.capped.append(f"{outputs.video}: frame {frame}")


def run_videos(predictor: Predictor, videos: Sequence[Path], root, out_dir, *, selection: Selection = (1, 0, None),
               scale: float | None = None, vehicle_width: float | None = None, mode: str = "obb",
               draw: bool = False, taken: Sequence[Path] = (), progress: bool = True) -> InferenceSummary:
    """Run every video of ``videos`` (paths under ``root``) with :func:`run_video`; ``taken``: obb_json targets
    of images written into the same ``out_dir`` (a video whose output folder clashes with them fails)."""
    root, out_dir = Path(root), Path(out_dir)
    scale = predictor.scale_for(vehicle_width) if scale is None else scale
    outputs, failures = video_outputs(videos, root, out_dir, taken)
    summary = InferenceSummary(failures=failures)
    start = time.perf_counter()
    for item in outputs:
        run_video(predictor, item, summary, selection=selection, scale=scale, mode=mode, draw=draw,
                  progress=progress)
    summary.seconds = summary.frame_seconds = time.perf_counter() - start
    return summary


def run_prepared(run: PreparedRun, *, mode: str = "obb", draw: bool = False, progress: bool = True
                 ) -> InferenceSummary:
    """Everything ``run`` found: its images (one obb_json each, as :func:`run_inference`), then its videos."""
    summary = InferenceSummary()
    if run.images:
        summary.add(run_inference(run.predictor, run.images, run.folder, run.out_dir, scale=run.scale, mode=mode,
                                  draw=draw, progress=progress))
    if run.videos:
        taken = list(output_paths(run.images, run.folder, run.out_dir)[0].values())
        summary.add(run_videos(run.predictor, run.videos, run.folder, run.out_dir, selection=run.selection,
                               scale=run.scale, mode=mode, draw=draw, taken=taken, progress=progress))
    return summary

