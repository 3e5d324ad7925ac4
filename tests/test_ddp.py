"""2-process gloo DDP: skip decisions agreed across ranks, backbone freezing under DDP, sharded validation."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from obbdet.config import variant_config

ROOT = Path(__file__).resolve().parents[1]

DRIVER = r'''
import os, sys, math, torch
from obbdet import engine
from obbdet.distributed import unwrap
from obbdet.model import loss as loss_mod

rank = int(os.environ["RANK"])
bad_steps = int(os.environ.get("BAD_STEPS_ON_RANK1", "0"))
original_forward = loss_mod.OBBCriterion.forward
calls = {"n": 0}

def forward(self, outputs, targets, anchors):
    losses = original_forward(self, outputs, targets, anchors)
    if rank == 1 and torch.is_grad_enabled() and calls["n"] < bad_steps:
        calls["n"] += 1
        losses = dict(losses, loss=losses["loss"] * float("nan"))
    return losses

loss_mod.OBBCriterion.forward = forward
original_epoch = engine.train_one_epoch

def train_one_epoch(model, *args, **kwargs):
    backbone = unwrap(model).net.backbone
    before = [p.detach().clone() for p in backbone.parameters()]
    result = original_epoch(model, *args, **kwargs)
    moved = any(not torch.equal(a, p) for a, p in zip(before, backbone.parameters()))
    total = sum(float(p.double().sum()) for p in unwrap(model).parameters())
    # one write per line: with PYTHONUNBUFFERED print() writes the text and its newline separately, and the two
    # ranks finish their epochs together, so their lines could interleave in the shared pipe
    sys.stdout.write(f"EPOCH rank={rank} backbone_moved={moved} checksum={total:.10e} "
                     f"skipped={result[0]['skipped_steps']}\n")
    sys.stdout.flush()
    return result

engine.train_one_epoch = train_one_epoch
from obbdet.cli import train
sys.exit(train.main(sys.argv[1:]))
'''


def _run(tmp_path, synthetic_cache, name, *extra, bad_steps=0):
    from obbdet.training import synthetic_sources

    synthetic_sources(replace(variant_config("tiny").data, synthetic_cache=str(synthetic_cache)))
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", NO_ALBUMENTATIONS_UPDATE="1",
               PYTHONUNBUFFERED="1", BAD_STEPS_ON_RANK1=str(bad_steps))
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
            str(driver), name, "0", "--config", "tiny", "--no-progress", f"train.out_dir={tmp_path}",
            f"data.synthetic_cache={synthetic_cache}", "train.threads=1", "data.virtual_epoch_size=16",
            "data.batch_size=2", *extra]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    epochs = [dict(re.findall(r"(\w+)=(\S+)", line)) for line in done.stdout.splitlines()
              if line.startswith("EPOCH ")]
    return done, epochs


@pytest.mark.slow
def test_non_finite_loss_on_one_rank_is_skipped_by_both(tmp_path, synthetic_cache):
    done, epochs = _run(tmp_path, synthetic_cache, "nan", "train.epochs=1", bad_steps=2)
    assert len(epochs) == 2
    assert {e["skipped"] for e in epochs} == {"2"}  # rank 0 skipped the same two steps as rank 1
    assert epochs[0]["checksum"] == epochs[1]["checksum"]  # the replicas stayed identical
    assert "non-finite loss (on another process)" in done.stderr
    records = [json.loads(line) for line in (tmp_path / "nan" / "log.jsonl").read_text().splitlines()]
    assert len(records) == 1 and "map_50-95" in json.dumps(records[0])


@pytest.mark.slow
def test_backbone_freezing_under_ddp(tmp_path, synthetic_cache):
    _, epochs = _run(tmp_path, synthetic_cache, "freeze", "train.epochs=2", "model.freeze_backbone_epochs=1")
    by_rank = {rank: [e for e in epochs if e["rank"] == rank] for rank in ("0", "1")}
    for rank, rows in by_rank.items():
        assert [r["backbone_moved"] for r in rows] == ["False", "True"], rank
    assert [r["checksum"] for r in by_rank["0"]] == [r["checksum"] for r in by_rank["1"]]


@pytest.fixture(scope="module")
def synthetic_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("synthetic")
