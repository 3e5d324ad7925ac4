"""Synthetic traffic sequences on disk: frames, per-frame labels, videos and a manifest.

:func:`generate_traffic_sequences` writes ``n_sequences`` sequences of
:func:`~datasets_registry.synthetic_traffic.render_traffic_sequence` as::

    <out>/frames/seq000/000000.jpg ...      JPEG quality 95
    <out>/labels/seq000/000000.json ...     obb_json (heading in degrees, track_id, speed, parked, occluded)
    <out>/videos/seq000.mp4                 the frames as a video (obbdet.video.VideoWriter)
    <out>/manifest.json                     parameters, options and per-sequence counts

Sequence ``i`` is rendered from ``sequence_seed(seed, i)``, so a folder is a pure function of its parameters.
Every file is written atomically.
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

from .synthetic import scene_seed
from .synthetic_traffic import TrafficOptions, render_traffic_sequence
from obbdet.formats import write_obb_json
from obbdet.imageio import write_image_rgb
from obbdet.io_utils import atomic_write_text
from obbdet.video import VideoWriter

MANIFEST_NAME = "manifest.json"
JPEG_QUALITY = 95


def sequence_seed(seed: int, index: int) -> int:
    """The seed of sequence ``index`` of a set made with ``seed`` (independent of the still scenes' streams)."""
    return scene_seed(seed, "traffic", index)


def sequence_name(index: int) -> str:
    return f"seq{index:03d}"


def _write_sequence(job: tuple, on_frame=None) -> dict:
    """Render and write one sequence (top level, so worker processes can run it); returns its counts."""
    root, seed, index, n_frames, width, height, fps, video, options = job
    name = sequence_name(index)
    frames_dir, labels_dir = Path(root) / "frames" / name, Path(root) / "labels" / name
    frames_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    tracks: dict[int, bool] = {}  # track id -> parked
    occlusion_frames = occluded_objects = difficult = objects = 0
    writer = VideoWriter(Path(root) / "videos" / f"{name}.mp4", fps, (width, height)) if video else None
    with writer if writer is not None else nullcontext():
        for k, (frame, labels) in enumerate(render_traffic_sequence(sequence_seed(seed, index), n_frames, width,
                                                                    height, **options)):
            stem = f"{k:06d}"
            labels.image = f"{stem}.jpg"
            write_image_rgb(frames_dir / f"{stem}.jpg", frame, jpeg_quality=JPEG_QUALITY)
            write_obb_json(labels_dir / f"{stem}.json", labels)
            if writer is not None:
                writer.write(frame)
            extras = labels.extras or []
            for e in extras:
                tracks[e["track_id"]] = e["parked"]
            occluded = sum(e["occluded"] > 0 for e in extras)
            occlusion_frames += occluded > 0
            occluded_objects += occluded
            difficult += int(labels.difficult.sum())
            objects += len(labels)
            if on_frame is not None:
                on_frame()
    return {"name": name, "seed": sequence_seed(seed, index), "frames": n_frames, "objects": objects,
            "tracks": len(tracks), "moving_vehicles": sum(not p for p in tracks.values()),
            "parked_vehicles": sum(tracks.values()), "occlusion_frames": occlusion_frames,
            "occluded_objects": occluded_objects, "difficult_objects": difficult}


def generate_traffic_sequences(out, n_sequences: int, n_frames: int, seed: int = 0, *, width: int = 768,
                               height: int = 768, vehicle_width: float = 18.0, workers: int = 0, fps: float = 25.0,
                               video: bool = True, progress: bool = True, **options) -> dict:
    """Write ``n_sequences`` synthetic traffic sequences of ``n_frames`` frames to ``out`` (layout in the
    module docstring). ``options``: further :class:`TrafficOptions` fields. ``workers > 0`` renders that many
    sequences in parallel processes. Returns the manifest (also written to ``out/manifest.json``)."""
    from tqdm import tqdm

    opts = TrafficOptions.from_kwargs(dict(options, vehicle_width=vehicle_width))
    if n_sequences < 0 or n_frames < 1:
        raise ValueError(f"need n_sequences >= 0 and n_frames >= 1, got {n_sequences} and {n_frames}")
    root = Path(out)
    for sub in ("frames", "labels") + (("videos",) if video else ()):
        (root / sub).mkdir(parents=True, exist_ok=True)
    jobs = [(str(root), int(seed), i, int(n_frames), int(width), int(height), float(fps), bool(video),
             opts.to_json()) for i in range(n_sequences)]
    bar = tqdm(total=n_sequences * n_frames, desc="synthetic traffic", unit="frame", disable=not progress)
    try:
        if workers and workers > 0 and n_sequences > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=workers) as pool:
                stats = []
                for result in pool.map(_write_sequence, jobs):  # in order: the manifest lists seq000 first
                    stats.append(result)
                    bar.update(n_frames)
        else:
            stats = [_write_sequence(job, bar.update) for job in jobs]
    finally:
        bar.close()
    manifest = {"generator": "obbdet.synthetic_traffic", "seed": int(seed), "n_sequences": int(n_sequences),
                "n_frames": int(n_frames), "width": int(width), "height": int(height), "fps": float(fps),
                "options": opts.to_json(), "sequences": stats}
    atomic_write_text(root / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")
    return manifest
