"""``--resume`` is bit-exact: a run killed mid-epoch and resumed logs the same losses and ends with the same
weights as an uninterrupted one (on the CPU), and two uninterrupted runs agree."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from obbdet.checkpoint import load_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3


@pytest.fixture(scope="module")
def synthetic_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("synthetic")


def _args(run, out_dir, cache, *extra):
    # data.workers=0 is the tiny default: the augmentation then runs in the main process with its own stream
    return [run, "0", "--config", "tiny", "--no-progress", f"train.out_dir={out_dir}",
            f"data.synthetic_cache={cache}", "train.threads=1", f"train.epochs={EPOCHS}", *extra]


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]


TIMINGS = ("time", "train_minutes", "val_minutes", "data_wait_fraction")


def _losses(run_dir: Path) -> list[dict]:
    """Per epoch every logged value but the timings: losses, lr, mAP, images seen."""
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in _records(run_dir)]


def _assert_same_weights(a: Path, b: Path) -> None:
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    for key in ("state_dict", "ema_state_dict"):
        assert ca[key].keys() == cb[key].keys()
        different = [name for name in ca[key] if not torch.equal(ca[key][name], cb[key][name])]
        assert not different, f"{key}: {len(different)} tensors differ, first {different[0]}"
    assert ca["global_step"] == cb["global_step"] and ca["vehicle_width"] == cb["vehicle_width"]


@pytest.mark.slow
def test_sigkill_resume_is_bit_exact(tmp_path, synthetic_cache):
    from obbdet.cli import train

    assert train.main(_args("straight", tmp_path, synthetic_cache)) == 0
    assert [r["epoch"] for r in _records(tmp_path / "straight")] == [1, 2, 3]

    # the same run killed once its first checkpoint is written (i.e. during epoch 2), then resumed
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               NO_ALBUMENTATIONS_UPDATE="1")
    last = tmp_path / "killed" / "last.pt"
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *_args("killed", tmp_path, synthetic_cache)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert last.exists(), proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "no checkpoint"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    killed_at = load_checkpoint(last)["epoch"]
    assert 1 <= killed_at < EPOCHS
    assert train.main(_args("killed", tmp_path, synthetic_cache, "--resume")) == 0

    straight, resumed = _losses(tmp_path / "straight"), _losses(tmp_path / "killed")
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    assert all("val_loss" in r and "train_loss" in r for r in straight)
    assert resumed == straight  # every loss to the last digit
    _assert_same_weights(tmp_path / "straight" / "last.pt", last)

    # and a second uninterrupted run agrees with the first
    assert train.main(_args("again", tmp_path, synthetic_cache)) == 0
    assert _losses(tmp_path / "again") == straight
    _assert_same_weights(tmp_path / "straight" / "last.pt", tmp_path / "again" / "last.pt")
