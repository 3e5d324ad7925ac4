"""Folder runs: ``infer.py``'s loop over a Predictor, writing one obb_json per image.

Everything that can fail before any image is touched is checked first (:func:`prepare_run`); then images are
read in a background thread (:func:`read_images`), detected by :meth:`Predictor.stream` and written
atomically (:func:`run_inference`). A failing image is listed with its reason and the run goes on.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from obbdet.formats import IMAGE_EXTENSIONS, OVERLAY_DIR, write_obb_json
from obbdet.imageio import ImageReadError, discover_images, image_size, read_image_rgb
from obbdet.io_utils import remove_stale_temporaries
from obbdet.inference.options import ImageFailure, InferenceSetupError, RescaleRangeError
from obbdet.inference.pipeline import detector_device
from obbdet.inference.predictor import Detections, Predictor, load_detector
from obbdet.inference.rescale import NO_RESCALE
from obbdet.inference.tiling import network_tile

logger = logging.getLogger(__name__)


@dataclass
class InferenceSummary:
    """Totals of one run. ``seconds`` is wall time over all images (reading, predicting, writing)."""

    images: int = 0
    detections: int = 0
    megapixels: float = 0.0
    seconds: float = 0.0
    failures: list[ImageFailure] = field(default_factory=list)
    capped: list[str] = field(default_factory=list)
    outside: int = 0  # detections centred outside their image (tile padding), dropped

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def seconds_per_megapixel(self) -> float:
        return self.seconds / self.megapixels if self.megapixels > 0 else 0.0

    def format(self) -> str:
        lines = [f"images: {self.images} processed, {len(self.failures)} failed",
                 f"detections: {self.detections}"
                 + (f" ({len(self.capped)} image(s) reached the detection cap)" if self.capped else "")
                 + (f"; {self.outside} centred outside their image dropped" if self.outside else ""),
                 f"speed: {self.images_per_second:.2f} images/s, {1000 * self.seconds_per_megapixel:.0f} ms per "
                 f"megapixel ({self.megapixels:.1f} MP in {self.seconds:.1f} s)"]
        if self.failures:
            lines.append("failures:")
            lines.extend(f"  {failure}" for failure in self.failures)
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


def read_images(paths: Sequence[Path], read=read_image_rgb) -> Iterator:
    """Yield ``(path, image [H, W, 3] uint8 RGB)`` per readable image (``read(path)``), or an
    :class:`ImageFailure`, decoding the next image in a background thread while the current one is predicted
    (OpenCV releases the GIL)."""

    def load(path):
        try:
            return path, read(path)
        except ImageReadError as exc:
            return ImageFailure(str(path), exc.reason)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="obbdet-read") as pool:
        future = pool.submit(load, paths[0]) if paths else None
        for i in range(len(paths)):
            result = future.result()
            future = pool.submit(load, paths[i + 1]) if i + 1 < len(paths) else None
            yield result


def overlay_path(target: Path, out_dir: Path) -> Path:
    """Where ``--draw`` puts the overlay of the detections written to ``target``: ``<out>/overlays/<same
    relative path>.jpg``, apart from the JSON files so that the output folder stays a clean label folder."""
    return Path(out_dir) / OVERLAY_DIR / Path(target).relative_to(out_dir).with_suffix(".jpg")


def _write_outputs(path: Path, detections: Detections, original, target: Path, mode: str,
                   overlay: Path | None, draw_thresholds: dict | None) -> None:
    labels = detections.to_labels(image=path.name, mode=mode)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_obb_json(target, labels)
    if overlay is not None:
        from obbdet.imageio import write_image_rgb
        from obbdet.visualize import draw_labels

        # the JSON keeps every detection above --score; the overlay only those worth looking at (the
        # checkpoint's operating point), so low-scoring candidates do not bury the vehicles under labels
        shown = detections.above(draw_thresholds).to_labels(image=path.name, mode=mode)
        overlay.parent.mkdir(parents=True, exist_ok=True)
        write_image_rgb(overlay, draw_labels(original, shown))


def run_inference(predictor: Predictor, images: Sequence[Path], root, out_dir, *,
                  vehicle_width: float | None = None, scale: float | None = None, mode: str = "obb",
                  draw: bool = False, progress: bool = True) -> InferenceSummary:
    """Detect on every image of ``images`` (paths under ``root``) and write one obb_json each under ``out_dir``
    (same relative folder, same stem). ``vehicle_width`` / ``scale`` as in :meth:`Predictor.stream`.

    Images that cannot be read, decoded or written are listed in the summary's ``failures`` with the reason;
    the run goes on with the others. ``draw=True`` also writes an overlay per image (:func:`overlay_path`).
    """
    from tqdm import tqdm

    root, out_dir = Path(root), Path(out_dir)
    targets, failures = output_paths(images, root, out_dir)
    summary = InferenceSummary(failures=failures)
    todo = [p for p in images if p in targets]
    start = time.perf_counter()
    bar = tqdm(total=len(images), unit="img", desc="infer", disable=not progress, dynamic_ncols=True)
    bar.update(len(failures))
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
                           overlay_path(target, out_dir) if draw else None, predictor.operating_point)
        except (OSError, ValueError) as exc:
            summary.failures.append(ImageFailure(str(path), f"cannot write output: {exc}"))
            logger.warning("%s: cannot write output: %s", path, exc)
            continue
        summary.images += 1
        summary.detections += len(detections)
        summary.outside += detections.outside
        summary.megapixels += job.original_size[0] * job.original_size[1] / 1e6
        if result.capped:
            summary.capped.append(str(path))
        bar.set_postfix(det=summary.detections, failed=len(summary.failures), refresh=False)
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


@dataclass
class PreparedRun:
    """A validated run: the predictor, the images, where outputs go and how images are rescaled."""

    predictor: Predictor
    folder: Path
    images: list[Path]
    out_dir: Path
    scale: float
    vehicle_width: float
    device: str

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
        return (f"{len(self.images)} image(s) under {self.folder} -> {self.out_dir}\n"
                f"{rescale}; {how}; device {self.device}{' (float16)' if o.half else ''}\n"
                f"{score}, NMS IoU {o.nms_iou:g}, {topk} candidates per class before NMS, "
                f"max {o.max_det} detections/image, "
                f"width scale {o.width_scale:g} ({sources.get('width', 'default')}), "
                f"length scale {o.length_scale:g} ({sources.get('length', 'default')})")


def largest_image(images: Sequence[Path]) -> tuple[int, int] | None:
    """``(width, height)`` of the image with the most pixels, from the file headers (nothing decoded); files
    whose header cannot be read are skipped (they fail, with their reason, when the run reads them)."""
    best, best_pixels = None, -1
    for path in images:
        try:
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


def prepare_run(folder, vehicle_width: float, checkpoint, *, out_dir=None, device: str | None = None,
                detector_loader=load_detector, **options) -> PreparedRun:
    """Validate everything before any image is processed; raises :class:`InferenceSetupError` (one line).

    Checks, in order: the input folder, the output folder's place (not the input folder, not inside it), the
    input's images, the options (``**options``: the keyword options of :meth:`Predictor.from_checkpoint`),
    the device, the checkpoint (an obbdet checkpoint with a training vehicle width unless
    ``vehicle_width == -1``), the rescale factor (within the options' range; the largest image's size, read
    from its header, is named when it is refused), and that the output folder (default ``<folder>_det``) can
    be created and written. Temporary files that killed writes left in the output folder are then removed
    (logged with their number).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InferenceSetupError(f"input folder {folder} not found or not a folder")
    resolved = folder.resolve()
    out_dir = Path(out_dir) if out_dir is not None else resolved.parent / f"{resolved.name}_det"
    check_output_location(folder, out_dir)
    images = discover_images(folder)
    if not images:
        raise InferenceSetupError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {folder}")
    predictor = Predictor.from_checkpoint(checkpoint, device, detector_loader=detector_loader, **options)
    try:
        try:
            scale = predictor.scale_for(vehicle_width)
        except RescaleRangeError:  # refused: say what the biggest image would have become (headers only)
            scale = predictor.scale_for(vehicle_width, largest_image(images))
    except RescaleRangeError as exc:
        raise InferenceSetupError(f"vehicle_width {vehicle_width:g}: {exc}") from None
    except ValueError as exc:
        raise InferenceSetupError(f"{checkpoint}: {exc}") from None
    check_output_dir(out_dir)
    removed = remove_stale_temporaries(out_dir, recursive=True)
    if removed:
        logger.info("removed %d temporary file(s) left in %s by an interrupted earlier run", removed, out_dir)
    return PreparedRun(predictor, folder, images, out_dir, scale, vehicle_width,
                       str(detector_device(predictor.detector)))
