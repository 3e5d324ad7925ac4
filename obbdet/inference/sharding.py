"""Inference spread over processes with torchrun, and runs that resume.

``torchrun --nproc_per_node=G [--nnodes=M --node_rank=R --rdzv_endpoint=HOST:PORT] infer.py ...`` starts one
process per device; torch.distributed (NCCL between GPUs, gloo on CPUs) is the engine: it starts, names and
connects the processes, and we only split the work statically. Whole images and videos go round-robin by their
sorted position (rank ``r`` of ``W`` takes items ``r, r + W, ...``); the tiles of a huge raster go round-robin
to every process, and rank 0 merges the shares (detections only travel, never pixels) and writes the result.
Per-process summaries are gathered and added on rank 0. Each output is written atomically by the process that
made it, so a killed run leaves complete files only, and ``--resume`` skips every input whose output exists.

A run folder remembers how it was made (``.obbdet-infer``, JSON: the checkpoint's size and SHA-256, the
options that change detections); ``--resume`` into a folder made otherwise is refused, so a resumed folder never
mixes two models' detections.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from obbdet.inference.options import InferenceSetupError
from obbdet.io_utils import atomic_write_text

logger = logging.getLogger(__name__)

RUN_RECORD = ".obbdet-infer"  # JSON, without the .json suffix: the output folder stays a clean label folder


@dataclass(frozen=True)
class Shard:
    """This process's place among the processes of a run (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def take(self, items: Sequence) -> list:
        """This process's share of ``items`` (round-robin by position)."""
        return list(items[self.rank::self.world])


def join_processes(device: str | None) -> tuple[Shard, str | None]:
    """Join torchrun's process group when its environment says so (``WORLD_SIZE`` > 1): NCCL when the run uses
    CUDA, gloo otherwise. Returns the shard and the device this process uses (``cuda:LOCAL_RANK`` when CUDA
    is asked for or available, one device per process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shard(), device
    import torch

    from obbdet.distributed import init_distributed

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = (device is None and torch.cuda.is_available()) or (device is not None and device.startswith("cuda"))
    info = init_distributed("cuda" if cuda else "cpu")
    return Shard(info.rank, info.world_size), (f"cuda:{local_rank}" if cuda else "cpu")


def leave_processes() -> None:
    from obbdet.distributed import cleanup

    cleanup()


def barrier(shard: Shard) -> None:
    if shard.world > 1:
        from obbdet.distributed import barrier as dist_barrier

        dist_barrier()


def gather(shard: Shard, obj) -> list | None:
    """Every process's ``obj`` as a list on rank 0 (None on the others); ``[obj]`` in one process."""
    if shard.world == 1:
        return [obj]
    from obbdet.distributed import gather_to_main

    return gather_to_main(obj)


def file_digest(path) -> str:
    """SHA-256 of a file (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_record(checkpoint, settings: dict) -> dict:
    """What makes a run folder's detections what they are: the checkpoint (size, SHA-256) and ``settings``."""
    checkpoint = Path(checkpoint)
    return {"checkpoint": {"name": checkpoint.name, "bytes": checkpoint.stat().st_size,
                           "sha256": file_digest(checkpoint)},
            "settings": {k: settings[k] for k in sorted(settings)}}


def check_resume(out_dir: Path, record: dict, resume: bool) -> None:
    """With ``resume``, refuse (:class:`InferenceSetupError`) an output folder whose run record differs from
    ``record`` (another checkpoint or other settings), naming what differs."""
    path = Path(out_dir) / RUN_RECORD
    if not resume or not path.exists():
        return
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InferenceSetupError(f"--resume: cannot read {path}: {exc}") from None
    differs = []
    if earlier.get("checkpoint", {}).get("sha256") != record["checkpoint"]["sha256"]:
        differs.append(f"checkpoint ({earlier.get('checkpoint', {}).get('name')} before)")
    before = earlier.get("settings", {})
    differs += [f"{k} ({before.get(k)!r} before, {v!r} now)" for k, v in record["settings"].items()
                if before.get(k) != v]
    if differs:
        raise InferenceSetupError(f"--resume: {out_dir} was made with another " + "; ".join(differs)
                                  + "; use another --out, or run without --resume to overwrite")


def write_run_record(out_dir: Path, record: dict) -> None:
    atomic_write_text(Path(out_dir) / RUN_RECORD, json.dumps(record, indent=1) + "\n")


def pending(targets: dict, resume: bool) -> tuple[list, int]:
    """``(inputs whose output must be made, number skipped)``: with ``resume``, inputs whose output file
    already exists are done (outputs are written atomically: an existing file is complete)."""
    if not resume:
        return list(targets), 0
    todo = [key for key, target in targets.items() if not Path(target).exists()]
    return todo, len(targets) - len(todo)
