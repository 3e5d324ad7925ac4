"""A run folder's outputs (rank 0 only): the ``[RESULT]`` lines, config.yaml, log.jsonl, summary.csv,
tensorboard events and checkpoints, each written atomically."""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from pathlib import Path

from obbdet.checkpoint import save_checkpoint
from obbdet.config import RunConfig, config_to_yaml
from obbdet.io_utils import atomic_write_text, remove_stale_temporaries
from obbdet.model.loss import LOSS_NAMES

logger = logging.getLogger(__name__)

BEST_CHECKPOINT_GLOB = "best-checkpoint-*epoch.pt"  # a run keeps one: RunOutputs.save_best removes the previous


def format_result_line(stage: str, epoch: int, loss: float, seconds: float) -> str:
    """The line users grep: ``[RESULT]: Train. Epoch: 35, summary_loss: 0.08144, time: 16.2 mins``."""
    return f"[RESULT]: {stage}. Epoch: {epoch}, summary_loss: {loss:.5f}, time: {seconds / 60:.1f} mins"


class RunOutputs:
    """``runs/<name>/``: config.yaml, log.jsonl, summary.csv, tensorboard events, checkpoints (all atomic).

    On a non-main rank every method is a no-op, so only rank 0 writes.
    """

    def __init__(self, run_dir: Path, enabled: bool, purge_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.writer = None
        if enabled:
            from tensorboardX import SummaryWriter

            self.run_dir.mkdir(parents=True, exist_ok=True)
            # a run killed mid-write leaves .last.pt.<random>.tmp and the like; nothing of this run writes yet
            removed = remove_stale_temporaries(self.run_dir)
            if removed:
                logger.info("removed %d temporary file(s) left in %s by an interrupted earlier run", removed,
                            self.run_dir)
            self.writer = SummaryWriter(str(self.run_dir), purge_step=purge_step)

    @property
    def log_path(self) -> Path:
        return self.run_dir / "log.jsonl"

    def write_config(self, cfg: RunConfig) -> None:
        if self.enabled:
            atomic_write_text(self.run_dir / "config.yaml", config_to_yaml(cfg))

    def records(self) -> list[dict]:
        if not self.log_path.is_file():
            return []
        return [json.loads(line) for line in self.log_path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def truncate_after(self, epoch: int) -> None:
        """On resume: forget log rows of epochs after the checkpoint (they will be redone)."""
        if self.enabled:
            self._write_logs([r for r in self.records() if r.get("epoch", 0) <= epoch])

    def log_epoch(self, record: dict) -> None:
        """Append one epoch's record to log.jsonl and summary.csv and its scalars to tensorboard."""
        if not self.enabled:
            return
        self._write_logs([r for r in self.records() if r.get("epoch") != record["epoch"]] + [record])
        epoch = record["epoch"]
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "epoch" and math.isfinite(value):
                self.writer.add_scalar(key.replace("map_", "val_map/").replace("train_loss", "train/loss")
                                       .replace("val_loss", "val/loss"), value, epoch)
        self.writer.flush()

    def _write_logs(self, records: list[dict]) -> None:
        atomic_write_text(self.log_path, "".join(json.dumps(r) + "\n" for r in records))
        columns = []
        for r in records:
            columns += [k for k in r if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        for r in records:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        atomic_write_text(self.run_dir / "summary.csv", buffer.getvalue())

    def save_last(self, payload: dict) -> Path:
        path = self.run_dir / "last.pt"
        if self.enabled:
            save_checkpoint(payload, path)
        return path

    def save_best(self, payload: dict, epoch: int) -> Path:
        """``best-checkpoint-NNNepoch.pt``; the previous best file is removed after the new one is written."""
        path = self.run_dir / f"best-checkpoint-{epoch:03d}epoch.pt"
        if self.enabled:
            save_checkpoint(payload, path)
            for old in self.run_dir.glob(BEST_CHECKPOINT_GLOB):
                if old != path:
                    old.unlink()
        return path

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def best_checkpoint(run_dir: Path) -> Path | None:
    """The run folder's ``best-checkpoint-NNNepoch.pt`` (the latest epoch if several), or None."""
    found = sorted(Path(run_dir).glob(BEST_CHECKPOINT_GLOB))
    return found[-1] if found else None


def epoch_record(epoch: int, train_stats: dict, val_losses: dict | None, result, lr: float,
                 val_seconds: float) -> dict:
    """One row of log.jsonl / summary.csv."""
    record = {"epoch": epoch, "lr": lr, "train_loss": train_stats["loss"],
              "train_minutes": train_stats["seconds"] / 60, "train_images": train_stats["images"],
              "data_wait_fraction": train_stats["data_seconds"] / max(train_stats["seconds"], 1e-9)}
    record.update({f"train_{k}": train_stats[k] for k in LOSS_NAMES if k in train_stats})
    if val_losses is not None:
        record["val_loss"] = val_losses["loss"]
        record.update({f"val_{k}": val_losses[k] for k in LOSS_NAMES if k in val_losses})
        record["val_minutes"] = val_seconds / 60
    if result is not None:
        record.update({f"map_{k}": float(v) for k, v in result.map.items()})
    record["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return record
