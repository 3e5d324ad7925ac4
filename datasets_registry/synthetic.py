"""Synthetic aerial scenes: the built-in default dataset (vehicles seen from straight above).

Every scene is a deterministic function of its integer seed (a ``numpy.random.Generator``; OpenCV draws,
no global random state). A scene is laid out in metres and drawn at ``vehicle_width`` pixels per car
width (1.8 m), so one option sets the ground sample distance:

- ground: grass, soil, asphalt, concrete and pavers with low- and high-frequency texture; roads with lanes,
  dashed and solid lines, sidewalks, medians, zebra crossings and parallel-parking lanes; parking lots with
  rows of stalls (perpendicular or angled), aisles, painted lines and planted islands; bus/truck depots;
- objects: buildings (gable, hip or flat roofs, eaves, chimneys, roof units) with shadows, trees and their
  shadows, all shadows cast along one sun direction per scene;
- vehicles, the labelled objects: ``car`` (sedan, hatchback, SUV, pickup), ``van``, ``truck`` (rigid, box,
  flatbed, tanker, articulated) and ``bus``, with real-world sizes (cars about 4.5 x 1.8 m, 2.4:1), body
  colours drawn from real fleet statistics, windshield / roof / rear-window detail that shows the heading,
  contact shadows and cast shadows. They park in stall rows (dense, angles following the row, nose- or
  tail-in), park along kerbs, drive in lanes (right-hand traffic), and stand at arbitrary angles on open
  paved ground;
- hard negatives (``hard_negatives=True``): roof windows, solar panels and eaves, car-sized shadows and oil
  stains, 2:1 flowerbeds and planted islands, white (and other) shipping containers, painted road text and
  arrows.

Labels: one oriented box per vehicle, exactly its footprint: ``[cx, cy, length, width, a]`` (xywha le90,
see ``obbdet.boxes``) in continuous pixel coordinates, where the image spans ``[0, W] x [0, H]`` and pixel
``(i, j)`` covers ``[i, i+1) x [j, j+1)``; ``heading`` is the direction the vehicle's front points
(radians, ``[-pi, pi)``). A vehicle cut by the image border is labelled with the fit of its visible part
(the polygon clipped to the image, refitted), and marked ``difficult`` when less than 60 % of it is
visible; slots less than 15 % visible are left empty.

Classes: ``SYNTHETIC_CLASSES = ("car", "truck", "bus", "van")``. The ``classes`` option chooses which of
them appear (the others are not drawn at all); in samples from :func:`load_synthetic`, ``labels`` index
``meta["classes"]`` (also ``meta["class_names"]``), which is the ``classes`` option in the order given (by
default the full tuple, so car=0, truck=1, bus=2, van=3).

Entry points: :func:`render_scene` (one image and its labels in memory), :func:`generate_synthetic_dataset`
(PNG images + obb_json labels in a folder, idempotent), :func:`load_synthetic` (the registry importer:
generates into a cache folder once and returns ``Sample`` records with ``meta['split']``);
``tools/make_synthetic.py`` is the CLI. The scene itself is generated in :mod:`datasets_registry.synthetic_scene`
(the pipeline and labels) from :mod:`~datasets_registry.synthetic_options` (options, classes, scene kinds),
:mod:`~datasets_registry.synthetic_state` (the scene being composed, occupancy masks),
:mod:`~datasets_registry.synthetic_layout` (scene kinds) with :mod:`~datasets_registry.synthetic_roads`,
:mod:`~datasets_registry.synthetic_lots` and :mod:`~datasets_registry.synthetic_dressing` (buildings, trees,
containers, flowerbeds), :mod:`~datasets_registry.synthetic_placement` (vehicle slots and placement),
:mod:`~datasets_registry.synthetic_ground` (materials, palette, texture, noise) and
:mod:`~datasets_registry.synthetic_render` (rendering order, shadows, camera look), and drawn with
:mod:`~datasets_registry.synthetic_draw` (primitives), :mod:`~datasets_registry.synthetic_vehicles` (vehicle
sizes, looks and drawers) and :mod:`~datasets_registry.synthetic_objects` (roofs, beds, containers, paint).

A 512 x 512 scene renders in about 30-40 ms on one CPU core (PNG writing adds about 15 ms).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from pathlib import Path

import cv2
import numpy as np

from .scale import CAR_WIDTH_M
from .synthetic_options import SCENE_KINDS, SYNTHETIC_CLASSES, SceneOptions
from .synthetic_scene import render_scene
from obbdet.boxes import BOX_DIM
from obbdet.io_utils import atomic_write_bytes, atomic_write_text
from obbdet.structures import ImageLabels, Sample

__all__ = ["CAR_WIDTH_M", "SCENE_KINDS", "SYNTHETIC_CLASSES", "SceneOptions", "cache_key",
           "generate_synthetic_dataset", "load_synthetic", "render_scene", "scene_seed", "synthetic_cache_dir"]

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1  # bump when the rendering changes: cached folders are keyed on it


def synthetic_cache_dir() -> Path:
    """Where :func:`load_synthetic` renders by default: ``$OBBDET_CACHE_DIR/synthetic``, else
    ``$XDG_CACHE_HOME/obbdet/synthetic``, else ``~/.cache/obbdet/synthetic`` (read at call time)."""
    base = os.environ.get("OBBDET_CACHE_DIR")
    if not base:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "obbdet"
    return Path(base) / "synthetic"


# ---------------------------------------------------------------------------------------------------
# Datasets on disk
# ---------------------------------------------------------------------------------------------------

MANIFEST_NAME = "manifest.json"


def scene_seed(seed: int, split: str, index: int) -> int:
    """The seed of image ``index`` of ``split`` in a dataset made with ``seed`` (independent streams)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(split.encode()), int(index)])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def image_stem(split: str, index: int) -> str:
    return f"{split}_{index:06d}"


def _dataset_params(seed: int, split: str, width: int, height: int, opts: SceneOptions) -> dict:
    return {"generator": "obbdet.synthetic", "version": GENERATOR_VERSION, "seed": int(seed), "split": split,
            "width": int(width), "height": int(height), "options": opts.to_json()}


def _write_scene(job: tuple) -> int:
    """Render and write one image and its labels (top level, so worker processes can run it)."""
    from obbdet.formats import write_obb_json

    root, seed, split, index, width, height, options = job
    stem = image_stem(split, index)
    image, labels = render_scene(scene_seed(seed, split, index), width, height, **options)
    labels.image = f"{stem}.png"
    # Huffman-only: sensor grain defeats LZ77 matching, so this is 4x faster than the default and smaller
    params = [cv2.IMWRITE_PNG_COMPRESSION, 3, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RuntimeError(f"{root}: could not encode {stem}.png")
    atomic_write_bytes(Path(root) / "images" / f"{stem}.png", png.tobytes())
    write_obb_json(Path(root) / "labels" / f"{stem}.json", labels)
    return len(labels)


def _read_manifest(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: corrupt synthetic dataset manifest: {exc.msg}") from None


def generate_synthetic_dataset(root, n_images: int, seed: int = 0, split: str = "train", *, width: int = 512,
                               height: int = 512, workers: int = 0, progress: bool = True,
                               **options) -> list[tuple[Path, Path]]:
    """Write ``n_images`` scenes to ``root/images/<split>_NNNNNN.png`` and ``root/labels/<split>_NNNNNN.json``.

    Image ``i`` is ``render_scene(scene_seed(seed, split, i), width, height, **options)``, so a set is a pure
    function of its parameters. ``root/manifest.json`` records them: re-running with the same parameters
    reuses every file already there (and only renders missing ones, e.g. a larger ``n_images`` or after an
    interruption); a folder made with other parameters raises ``ValueError`` rather than mixing two sets.
    Every file is written atomically. ``workers > 0`` renders in that many processes.

    Returns the ``(image_path, label_path)`` pairs of images ``0 .. n_images-1``.
    """
    opts = SceneOptions.from_kwargs(options)
    if n_images < 0:
        raise ValueError(f"n_images must be >= 0, got {n_images}")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    params = _dataset_params(seed, split, width, height, opts)
    manifest_path = root / MANIFEST_NAME
    manifest = _read_manifest(manifest_path)
    if manifest is not None and manifest.get("params") != params:
        theirs = manifest.get("params", {})
        diff = sorted(k for k in set(params) | set(theirs) if params.get(k) != theirs.get(k))
        raise ValueError(f"{root}: holds a synthetic set made with other parameters (differing: {', '.join(diff)}); "
                         "use another folder or delete this one")
    done = int(manifest.get("n_images", 0)) if manifest else 0
    if manifest is None:
        atomic_write_text(manifest_path, json.dumps({"params": params, "n_images": 0}, indent=1) + "\n")
    pairs = [(root / "images" / f"{image_stem(split, i)}.png", root / "labels" / f"{image_stem(split, i)}.json")
             for i in range(n_images)]
    todo = [i for i, (img, lbl) in enumerate(pairs) if not (img.is_file() and lbl.is_file())]
    if todo:
        _render_jobs([(str(root), seed, split, i, width, height, opts.to_json()) for i in todo], workers, progress,
                     f"synthetic {split}")
    if n_images > done or todo:
        atomic_write_text(manifest_path, json.dumps({"params": params, "n_images": max(n_images, done)},
                                                    indent=1) + "\n")
    return pairs


def _render_jobs(jobs: list, workers: int, progress: bool, desc: str) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit="img", disable=not progress)
    try:
        if workers and workers > 0 and len(jobs) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=workers) as pool:
                for _ in pool.map(_write_scene, jobs, chunksize=4):
                    bar.update()
        else:
            for job in jobs:
                _write_scene(job)
                bar.update()
    finally:
        bar.close()


def cache_key(seed: int, width: int, height: int, opts: SceneOptions) -> str:
    """Folder name of a synthetic set in the cache: a hash of everything that changes its pixels."""
    blob = json.dumps({"version": GENERATOR_VERSION, "seed": int(seed), "width": int(width), "height": int(height),
                       "options": opts.to_json()}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def load_synthetic(root=None, n_train: int = 400, n_val: int = 100, seed: int = 0, *, width: int = 512,
                   height: int = 512, workers: int = 0, progress: bool = True, strict: bool = True, summary=None,
                   **options) -> list[Sample]:
    """The synthetic dataset as registry samples, generated on first use.

    Scenes are written under ``root`` (or ``synthetic_cache_dir() / <hash of the parameters>``, by default
    ``~/.cache/obbdet/synthetic/...``) in ``train/`` and ``val/`` sub-folders (see
    :func:`generate_synthetic_dataset`); later calls with the same parameters reuse the files.

    Returns ``n_train + n_val`` samples: boxes ``[N, 5]`` float32 xywha le90, ``labels`` int64 indices into
    ``meta['classes']`` (also given as ``meta['class_names']``): the ``classes`` option in its order, by
    default ``SYNTHETIC_CLASSES`` = car 0, truck 1, bus 2, van 3; ``heading`` float32 radians;
    ``meta['split']`` in {'train', 'val'}. ``strict`` is accepted for the importer contract (generated
    labels are always well formed); ``summary`` (an ``ImportSummary``) receives the image/object counts and
    the label files read.
    """
    from obbdet.formats import read_obb_json

    opts = SceneOptions.from_kwargs(options)
    base = Path(root) if root is not None else synthetic_cache_dir() / cache_key(seed, width, height, opts)
    classes = tuple(opts.classes)
    index = {name: i for i, name in enumerate(classes)}
    samples = []
    for split, n in (("train", n_train), ("val", n_val)):
        pairs = generate_synthetic_dataset(base / split, n, seed, split, width=width, height=height,
                                           workers=workers, progress=progress, **opts.to_json())
        for image_path, label_path in pairs:
            labels = read_obb_json(label_path)
            samples.append(_sample(image_path, labels, index, split, classes, width, height))
            if summary is not None:
                summary.track_file(label_path)
    if summary is not None:
        summary.images += len(samples)
        summary.objects += sum(len(s) for s in samples)
    return samples


def _sample(image_path: Path, labels: ImageLabels, index: dict, split: str, classes: tuple,
            width: int, height: int) -> Sample:
    n = len(labels)
    heading = labels.heading if labels.heading is not None else np.full(n, np.nan)
    return Sample(image_path=str(image_path), width=int(labels.width or width), height=int(labels.height or height),
                  boxes=labels.boxes.astype(np.float32).reshape(n, BOX_DIM),
                  labels=np.array([index[c] for c in labels.classes], np.int64),
                  difficult=np.asarray(labels.difficult, bool), source="synthetic",
                  heading=np.asarray(heading, np.float32),
                  meta={"split": split, "classes": classes, "class_names": list(classes),
                        "label_path": str(label_path_of(image_path))})


def label_path_of(image_path) -> Path:
    """The obb_json label file of a generated image (``.../images/x.png`` -> ``.../labels/x.json``)."""
    image_path = Path(image_path)
    return image_path.parent.parent / "labels" / f"{image_path.stem}.json"
