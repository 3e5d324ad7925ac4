"""Folder runs: ``infer.py``'s loop over a Predictor, writing one obb_json per image.

Everything that can fail before any image is touched is checked first (:func:`prepare_run`, which also finds
the videos of the input: ``obbdet.inference.sequences`` runs those); then images are read in a background
thread (:func:`read_images`), detected by :meth:`Predictor.stream` and written atomically
(:func:`run_inference`). A failing image is listed with its reason and the run goes on.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from obbdet.formats import IMAGE_EXTENSIONS, OVERLAY_DIR, write_obb_json
from obbdet.imageio import ImageReadError, discover_images, image_size, read_image_rgb
from obbdet.io_utils import remove_stale_temporaries
from obbdet.video import VIDEO_EXTENSIONS, FrameFailure, check_selection, video_info
from obbdet.inference.options import ImageFailure, InferenceSetupError, RescaleRangeError
from obbdet.inference.pipeline import detector_device
from obbdet.inference.predictor import Detections, Predictor, load_detector
from obbdet.inference.rescale import NO_RESCALE
from obbdet.inference.sharding import Shard, barrier, pending
from obbdet.raster import WINDOWED_READ_PIXELS
from obbdet.inference.tiling import network_tile

logger = logging.getLogger(__name__)


@dataclass
class InferenceSummary:
    """Totals of one run. ``seconds`` is wall time over all images and frames (reading, predicting, writing),
    ``frame_seconds`` the part of it spent on video frames. ``failures``: images; ``video_failures``: videos
    that could not be opened (or stopped being readable, or whose output folder is taken); ``frame_failures``:
    single video frames that could not be decoded or processed."""

    images: int = 0
    detections: int = 0
    megapixels: float = 0.0
    seconds: float = 0.0
    failures: list[ImageFailure] = field(default_factory=list)
    capped: list[str] = field(default_factory=list)
    outside: int = 0  # detections centred outside their image (tile padding), dropped
    skipped: int = 0  # inputs whose output an earlier run completed (--resume)
    videos: int = 0
    frames: int = 0
    frame_seconds: float = 0.0
    frame_failures: list[FrameFailure] = field(default_factory=list)
    video_failures: list[ImageFailure] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        seconds = self.seconds - self.frame_seconds
        return self.images / seconds if seconds > 0 else 0.0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.frame_seconds if self.frame_seconds > 0 else 0.0

    @property
    def seconds_per_megapixel(self) -> float:
        return self.seconds / self.megapixels if self.megapixels > 0 else 0.0

    @property
    def failed(self) -> bool:
        """Whether anything failed (infer.py then exits with EXIT_IMAGE_FAILURES)."""
        return bool(self.failures or self.frame_failures or self.video_failures)

    def add(self, other: "InferenceSummary") -> "InferenceSummary":
        """Add ``other``'s totals to this summary (returns it)."""
        for name in ("images", "detections", "megapixels", "seconds", "outside", "skipped", "videos", "frames",
                     "frame_seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("failures", "capped", "frame_failures", "video_failures"):
            getattr(self, name).extend(getattr(other, name))
        return self

    @classmethod
    def combine(cls, summaries: Sequence["InferenceSummary"]) -> "InferenceSummary":
        """The summaries of the processes of one run as one: counts added, wall times the longest."""
        total = cls()
        for summary in summaries:
            total.add(summary)
        total.seconds = max((s.seconds for s in summaries), default=0.0)
        total.frame_seconds = max((s.frame_seconds for s in summaries), default=0.0)
        return total

    def format(self) -> str:
        video = bool(self.videos or self.frames or self.frame_failures or self.video_failures)
        skipped = f", {self.skipped} skipped (output complete)" if self.skipped else ""
        lines = [f"images: {self.images} processed, {len(self.failures)} failed{skipped}"] \
            if self.images or self.failures or not video else []
        if video:
            lines.append(f"video frames: {self.frames} processed, {len(self.frame_failures)} failed ("
                         f"{self.videos} video(s)" + (f", {len(self.video_failures)} failed" if self.video_failures
                                                      else "") + ")")
        rates = ([f"{self.images_per_second:.2f} images/s"] if self.images or not video else []) \
            + ([f"{self.frames_per_second:.2f} frames/s"] if video else [])
        lines += [f"detections: {self.detections}"
                  + (f" ({len(self.capped)} image(s) reached the detection cap)" if self.capped else "")
                  + (f"; {self.outside} centred outside their image dropped" if self.outside else ""),
                  f"speed: {', '.join(rates)}, {1000 * self.seconds_per_megapixel:.0f} ms per megapixel "
                  f"({self.megapixels:.1f} MP in {self.seconds:.1f} s)"]
        if self.failures or self.video_failures:
            lines.append("failures:")
            lines.extend(f"  {failure}" for failure in [*self.failures, *self.video_failures])
        if self.frame_failures:
            lines.append("frame failures:")
            lines.extend(f"  {failure}" for failure in self.frame_failures)
        return "\n".join(lines)


def output_paths(images: Sequence[Path], root: Path, out_dir: Path) -> tuple[dict, list[ImageFailure]]:
    """``{image: out_dir / relative_parent / (stem + '.json')}`` for every image, and a failure for each image
    whose output name is already taken by an earlier one (``a.jpg`` and ``a.png`` in one folder)."""
    taken: dict[Path, Path] = {}
    mapping, failures = {}, []
    for path in images:
        target = out_dir / path.relative_to(root).with_suffix(".json")
        if target in taken:
            failures.append(ImageFailure(str(path), f"output {target} already used by {taken[target]}"))
            continue
        taken[target] = path
        mapping[path] = target
    return mapping, failures


def check_output_dir(out_dir) -> Path:
    """Create ``out_dir`` and prove it writable; raises :class:`InferenceSetupError` (one line) otherwise."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise InferenceSetupError(f"output folder {out_dir} is not writable: {exc.strerror or exc}") from None
    return out_dir


_END = object()


def read_ahead(items: Iterable) -> Iterator:
    """The items of ``items``, the next one produced in a background thread while the caller works on the
    current one (image and video decoders release the GIL). An exception raised producing an item is raised
    here, in the caller; a generator ``items`` is closed when the caller stops early."""
    iterator = iter(items)
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="obbdet-read") as pool:
            future = pool.submit(next, iterator, _END)
            while True:
                item = future.result()
                if item is _END:
                    return
                future = pool.submit(next, iterator, _END)
                yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def read_images(paths: Sequence[Path], read=read_image_rgb) -> Iterator:
    """Yield ``(path, image [H, W, 3] uint8 RGB)`` per readable image (``read(path)``), or an
    :class:`ImageFailure`, decoding the next image in a background thread while the current one is predicted
    (OpenCV releases the GIL)."""

    def load(path):
        try:
            return path, read(path)
        except ImageReadError as exc:
            return ImageFailure(str(path), exc.reason)

    return read_ahead(load(path) for path in paths)


def overlay_path(target: Path, out_dir: Path) -> Path:
    """Where ``--draw`` puts the overlay of the detections written to ``target``: ``<out>/overlays/<same
    relative path>.jpg``, apart from the JSON files so that the output folder stays a clean label folder."""
    return Path(out_dir) / OVERLAY_DIR / Path(target).relative_to(out_dir).with_suffix(".jpg")


def _write_outputs(path: Path, detections: Detections, original, target: Path, mode: str,
                   overlay: Path | None, draw_thresholds: dict | None, gis: str = "none") -> None:
    from obbdet.inference.rasters import write_gis_layer

    labels = detections.to_labels(image=path.name, mode=mode)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_gis_layer(path, target, labels, gis)  # before the JSON: an existing JSON means a complete output
    write_obb_json(target, labels)
    if overlay is not None:
        from obbdet.imageio import write_image_rgb
        from obbdet.visualize import draw_labels

        # the JSON keeps every detection above --score; the overlay only those worth looking at (the
        # checkpoint's operating point), so low-scoring candidates do not bury the vehicles under labels
        shown = detections.above(draw_thresholds).to_labels(image=path.name, mode=mode)
        overlay.parent.mkdir(parents=True, exist_ok=True)
        write_image_rgb(overlay, draw_labels(original, shown))


def _record(summary: InferenceSummary, path: Path, detections: Detections) -> None:
    summary.images += 1
    summary.detections += len(detections)
    summary.outside += detections.outside
    summary.megapixels += detections.image_size[0] * detections.image_size[1] / 1e6
    if detections.capped:
        summary.capped.append(str(path))


def _run_huge_rasters(predictor: Predictor, rasters: Sequence[Path], targets: dict, out_dir: Path, scale, mode: str,
                      gis: str, shard: Shard, summary: InferenceSummary, bar) -> None:
    """Each huge raster, read window by window, its tiles shared among the processes; rank 0 writes."""
    from obbdet.inference.rasters import detect_huge_raster

    for path in rasters:
        outcome = detect_huge_raster(predictor, path, scale, shard)
        bar.update(1)
        if outcome is None:  # another process writes it
            continue
        if isinstance(outcome, ImageFailure):
            summary.failures.append(outcome)
            logger.warning("skipped %s", outcome)
            continue
        detections, _, damaged = outcome
        try:
            _write_outputs(path, detections, None, targets[path], mode, None, predictor.operating_point, gis)
        except (OSError, ValueError) as exc:
            summary.failures.append(ImageFailure(str(path), f"cannot write output: {exc}"))
            continue
        if damaged:
            summary.failures.append(ImageFailure(str(path), f"{len(damaged)} window(s) could not be read and were "
                                                            f"treated as empty (first: {damaged[0][4]})"))
        _record(summary, path, detections)


def run_inference(predictor: Predictor, images: Sequence[Path], root, out_dir, *,
                  vehicle_width: float | None = None, scale: float | None = None, mode: str = "obb",
                  draw: bool = False, progress: bool = True, window_read_above: int = WINDOWED_READ_PIXELS,
                  gis: str = "gpkg", resume: bool = False, shard: Shard = Shard()) -> InferenceSummary:
    """Detect on every image of ``images`` (paths under ``root``) and write one obb_json each under ``out_dir``
    (same relative folder, same stem). ``vehicle_width`` / ``scale`` as in :meth:`Predictor.stream`.

    Images that cannot be read, decoded or written are listed in the summary's ``failures`` with the reason;
    the run goes on with the others. ``draw=True`` also writes an overlay per image (:func:`overlay_path`).
    TIFFs over ``window_read_above`` pixels are read window by window (``obbdet.inference.rasters``);
    georeferenced TIFFs also get a GIS layer (``gis``: gpkg, geojson or none). ``resume``: images whose obb_json
    exists are skipped (counted in ``skipped``). ``shard``: this process's share of a torchrun job (whole
    images round-robin; the tiles of huge rasters shared by all processes, rank 0 writing them).
    """
    from tqdm import tqdm

    from obbdet.inference.rasters import huge_rasters

    root, out_dir = Path(root), Path(out_dir)
    targets, failures = output_paths(images, root, out_dir)
    summary = InferenceSummary(failures=failures if shard.is_main else [])
    todo, summary.skipped = pending({p: targets[p] for p in images if p in targets}, resume)
    if not shard.is_main:
        summary.skipped = 0  # counted once, by rank 0
    rasters = huge_rasters(todo, window_read_above)
    barrier(shard)  # every process listed the same work before any of them writes an output
    windowed = set(rasters)
    todo = shard.take([p for p in todo if p not in windowed])
    start = time.perf_counter()
    bar = tqdm(total=len(todo) + len(rasters) + len(failures), unit="img", desc="infer",
               disable=not progress or not shard.is_main, dynamic_ncols=True)
    bar.update(len(failures))
    _run_huge_rasters(predictor, rasters, targets, out_dir, scale if scale is not None else
                      predictor.scale_for(vehicle_width), mode, gis, shard, summary, bar)
    for result in predictor.stream(read_images(todo, predictor.read), vehicle_width=vehicle_width, scale=scale,
                                   keep_original=draw):
        bar.update(1)
        if isinstance(result, ImageFailure) or result.failure is not None:
            failure = result if isinstance(result, ImageFailure) else ImageFailure(str(result.key), result.failure)
            summary.failures.append(failure)
            logger.warning("skipped %s", failure)
            continue
        path, job = result.key, result.job
        detections = Detections.from_raw(result.detections, predictor.class_names, job.original_size,
                                         result.capped, result.outside)
        target = targets[path]
        try:
            _write_outputs(path, detections, job.original, target, mode,
                           overlay_path(target, out_dir) if draw else None, predictor.operating_point, gis)
        except (OSError, ValueError) as exc:
            summary.failures.append(ImageFailure(str(path), f"cannot write output: {exc}"))
            logger.warning("%s: cannot write output: %s", path, exc)
            continue
        _record(summary, path, detections)
        bar.set_postfix(det=summary.detections, failed=len(summary.failures), refresh=False)
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


@dataclass
class PreparedRun:
    """A validated run: the predictor, the images and videos (paths under ``folder``; a video given alone has
    its folder there), where outputs go, how images are rescaled, which frames are taken (``selection``:
    ``(every, start, end)``, for videos and, with ``track``, for folders of frames) and whether tracks are
    followed."""

    predictor: Predictor
    folder: Path
    images: list[Path]
    out_dir: Path
    scale: float
    vehicle_width: float
    device: str
    videos: list[Path] = field(default_factory=list)
    selection: tuple[int, int, int | None] = (1, 0, None)
    track: bool = False

    def settings(self, mode: str) -> dict:
        """What decides the detections besides the checkpoint (the run record of ``--resume``)."""
        o, p = self.predictor.options, self.predictor
        return {"scale": round(self.scale, 9), "mode": mode, "tile": None if o.whole else o.tile,
                "overlap": o.overlap, "score": "auto" if p.score_auto else o.score_threshold, "nms_iou": o.nms_iou,
                "vote_iou": o.vote_iou, "tta": o.tta, "pre_nms_topk": o.pre_nms_topk, "max_det": o.max_det,
                "max_det_per_megapixel": o.max_det_per_megapixel, "width_scale": o.width_scale,
                "length_scale": o.length_scale, "depth": repr(p.depth), "bands": p.bands,
                "frames": list(self.selection), "track": self.track, "backend": type(p.detector).__name__,
                "precision": "bf16" if o.bfloat16 else "fp16" if o.half else "fp32"}

    def describe(self) -> str:
        p, o = self.predictor, self.predictor.options
        stride = int(getattr(p.detector, "stride", 128))
        how = "whole images" if o.whole else (f"tiles {network_tile(o.tile, stride)} px on the {stride}-px grid, "
                                              f"overlap >= {o.overlap} px, batch {o.batch}")
        if self.vehicle_width == NO_RESCALE:
            rescale = "no rescaling (vehicle_width -1)"
        else:
            rescale = (f"rescale x{self.scale:.4g} (training vehicle width {p.train_vehicle_width:.3g} px / "
                       f"{self.vehicle_width:g} px)")
        sources = {k: "--width-scale" if v == "argument" and k == "width" else
                   "--length-scale" if v == "argument" else v for k, v in p.option_sources.items()}
        topk = "the model's" if o.pre_nms_topk is None else str(o.pre_nms_topk)
        score = (f"score >= the checkpoint's per-class operating point (lowest {o.score_threshold:.3g})"
                 if p.score_auto else f"score >= {o.score_threshold:g}")
        every, start, end = self.selection
        frames = "" if (every, start, end) == (1, 0, None) else \
            f"; frames {start}..{'end' if end is None else end - 1} every {every}"
        sequences = " (each folder of images one tracked sequence)" if self.track and self.images else ""
        videos = f" and {len(self.videos)} video(s)" if self.videos else ""
        return (f"{len(self.images)} image(s){sequences}{videos} under {self.folder} -> {self.out_dir}{frames}"
                f"{'; tracking' if self.track else ''}\n"
                f"{rescale}; {how}; device {self.device}{' (float16)' if o.half else ' (bfloat16)' if o.bfloat16 else ''}\n"
                f"{score}, NMS IoU {o.nms_iou:g}, "
                f"{f'box voting at IoU {o.vote_iou:g}' if o.vote_iou else 'no box voting'}"
                f"{'' if o.tta == 'none' else f', test-time augmentation {o.tta}'}, "
                f"{topk} candidates per class before NMS, "
                f"max {o.max_det} detections/tile and max({o.max_det}, {o.max_det_per_megapixel:g}/MP)/image, "
                f"width scale {o.width_scale:g} ({sources.get('width', 'default')}), "
                f"length scale {o.length_scale:g} ({sources.get('length', 'default')})")


def largest_image(images: Sequence[Path], videos: Sequence[Path] = ()) -> tuple[int, int] | None:
    """``(width, height)`` of the image or video frame with the most pixels, from the file headers (nothing
    decoded); files whose header cannot be read are skipped (they fail, with their reason, when the run reads
    them)."""
    best, best_pixels = None, -1
    for path in [*images, *videos]:
        try:
            if path in videos:
                info = video_info(path)
                width, height = info.width, info.height
            else:
                width, height = image_size(path)
        except Exception:  # noqa: BLE001 - any unreadable header: the read during the run gives the reason
            continue
        if width * height > best_pixels:
            best, best_pixels = (int(width), int(height)), width * height
    return best


def check_output_location(folder: Path, out_dir: Path) -> None:
    """Refuse an output folder that is the input folder or lies inside it.

    Its obb_json files and overlays would sit among the images (overlay JPEGs are images: the next run would
    detect on them, and label tools would read the input folder as a mix). Discovery used to skip such a
    folder; a separate folder is now required, which also keeps the input folder untouched."""
    source, target = os.path.realpath(folder), os.path.realpath(out_dir)
    if target == source:
        raise InferenceSetupError(f"output folder {out_dir} is the input folder; choose another --out "
                                  f"(default: {Path(source).name}_det beside it)")
    if os.path.commonpath([source, target]) == source:
        raise InferenceSetupError(f"output folder {out_dir} lies inside the input folder {folder}; choose a "
                                  f"folder outside it (default: {Path(source).name}_det beside it)")


def find_inputs(source: Path) -> tuple[Path, list[Path], list[Path]]:
    """``(folder, images, videos)`` of an input: a video file (its folder, no images, the video), an image file
    (e.g. one orthomosaic: its folder, the image) or a folder searched recursively; raises
    :class:`InferenceSetupError` for anything else or a folder with neither."""
    if source.is_file() and source.suffix.lower() in VIDEO_EXTENSIONS:
        return source.parent, [], [source]
    if source.is_file() and source.suffix.lower() in IMAGE_EXTENSIONS:
        return source.parent, [source], []
    if not source.is_dir():
        kind = "not a folder, an image or a video file (" + ", ".join(VIDEO_EXTENSIONS) + ")" if source.exists() \
            else "not found"
        raise InferenceSetupError(f"input {source} {kind}")
    images = discover_images(source)
    videos = discover_images(source, extensions=VIDEO_EXTENSIONS)
    if not images and not videos:
        raise InferenceSetupError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) or videos "
                                  f"({', '.join(VIDEO_EXTENSIONS)}) found under {source}")
    return source, images, videos


def check_frame_selection(every, start, end, *, videos: bool, track: bool) -> tuple[int, int, int | None]:
    """``(every, start, end)`` with defaults for None; raises :class:`InferenceSetupError` when they are set but
    nothing is a sequence (no videos, no --track) or do not select frames."""
    if (every, start, end) != (None, None, None) and not videos and not track:
        raise InferenceSetupError("--every/--start/--end select frames of videos, and of folders of images with "
                                  "--track; this input has no videos")
    selection = (1 if every is None else every, 0 if start is None else start, end)
    try:
        check_selection(*selection)
    except ValueError as exc:
        raise InferenceSetupError(str(exc)) from None
    return selection


def prepare_run(source, vehicle_width: float, checkpoint, *, out_dir=None, device: str | None = None,
                detector_loader=load_detector, every: int | None = None, start: int | None = None,
                end: int | None = None, track: bool = False, clean: bool = True, **options) -> PreparedRun:
    """Validate everything before any image is processed; raises :class:`InferenceSetupError` (one line).

    ``source``: a folder of images and/or videos, or one video file. ``every``, ``start``, ``end``: the
    frames taken of videos (and, with ``track``, of folders of images; see ``obbdet.video.frame_selected``).
    Checks, in order: the input, the output folder's place (not the input folder, not inside it), the
    input's images and videos, the frame selection, the options (``**options``: the keyword options of
    :meth:`Predictor.from_checkpoint`),
    the device, the checkpoint (an obbdet checkpoint with a training vehicle width unless
    ``vehicle_width == -1``), the rescale factor (within the options' range; the largest image's size, read
    from its header, is named when it is refused), and that the output folder (default ``<folder>_det``) can
    be created and written. Temporary files that killed writes left in the output folder are then removed
    (logged with their number) when ``clean`` (under torchrun only rank 0 cleans, before the others write).
    """
    source = Path(source)
    folder, images, videos = find_inputs(source)
    resolved = source.resolve()
    out_dir = Path(out_dir) if out_dir is not None else resolved.parent / f"{resolved.stem}_det"
    if source.is_dir():
        check_output_location(folder, out_dir)
    selection = check_frame_selection(every, start, end, videos=bool(videos), track=track)
    predictor = Predictor.from_checkpoint(checkpoint, device, detector_loader=detector_loader, **options)
    try:
        try:
            scale = predictor.scale_for(vehicle_width)
        except RescaleRangeError:  # refused: say what the biggest image would have become (headers only)
            scale = predictor.scale_for(vehicle_width, largest_image(images, videos))
    except RescaleRangeError as exc:
        raise InferenceSetupError(f"vehicle_width {vehicle_width:g}: {exc}") from None
    except ValueError as exc:
        raise InferenceSetupError(f"{checkpoint}: {exc}") from None
    check_output_dir(out_dir)
    removed = remove_stale_temporaries(out_dir, recursive=True) if clean else 0
    if removed:
        logger.info("removed %d temporary file(s) left in %s by an interrupted earlier run", removed, out_dir)
    return PreparedRun(predictor, folder, images, out_dir, scale, vehicle_width,
                       str(detector_device(predictor.detector)), videos, selection, track)
