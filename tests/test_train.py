"""Training: config resolution, LR schedules, a tiny end-to-end run, SIGKILL + resume, 2-process gloo DDP."""
from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from obbdet.checkpoint import build_detector_from_checkpoint, load_checkpoint  # noqa: E402
from obbdet.config import (  # noqa: E402
    ConfigError, RunConfig, ScheduleConfig, config_to_dict, config_from_dict, load_yaml_config,
    resolve_config, variant_config,
)
from obbdet.optim import LRSchedule  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic_cache(tmp_path_factory):
    """One rendered tiny synthetic set shared by the tests of this module."""
    return tmp_path_factory.mktemp("synthetic")


def _tiny_args(out_dir, cache, *extra):
    return ["--config", "tiny", "--no-progress", f"train.out_dir={out_dir}", f"data.synthetic_cache={cache}",
            "train.threads=1", *extra]


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               NO_ALBUMENTATIONS_UPDATE="1", PYTHONUNBUFFERED="1")
    return env


# ---------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------

def test_overrides_are_type_checked():
    cfg = resolve_config(None, ["lr=0.01", "model.aspect_ratios=[1, 2]", "heading=true", "milestones=5",
                                "train.epochs=3"])
    assert cfg.optim.lr == 0.01 and cfg.model.aspect_ratios == (1.0, 2.0) and cfg.model.heading is True
    assert cfg.schedule.milestones == (5,) and cfg.train.epochs == 3
    assert resolve_config(None, ["optim.lr=1e-4"]).optim.lr == 1e-4  # YAML 1.1 reads 1e-4 as a string
    with pytest.raises(ConfigError, match="optim.lr: expected a number, got 'inf'"):
        resolve_config(None, ["optim.lr=inf"])
    with pytest.raises(ConfigError, match="unknown config key 'lrr'; did you mean lr"):
        resolve_config(None, ["lrr=1"])
    with pytest.raises(ConfigError, match="model.image_size: expected an integer, got 'big'"):
        resolve_config(None, ["model.image_size=big"])
    with pytest.raises(ConfigError, match="optim.ema: expected true/false"):
        resolve_config(None, ["ema=3"])
    with pytest.raises(ConfigError, match="not of the form key=value"):
        resolve_config(None, ["epochs"])
    with pytest.raises(ConfigError, match="optim.optimizer='adam' is not one of adamw, sgd"):
        resolve_config(None, ["optimizer=adam"])
    with pytest.raises(ConfigError, match="model.backbone_weights=/no/such/file.pth: file not found"):
        resolve_config(None, ["model.backbone_weights=/no/such/file.pth"])


def test_yaml_config_and_errors(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("variant: tiny\noptim:\n  lr: 0.003\nschedule: {name: multistep, milestones: [1]}\n")
    cfg = load_yaml_config(path)
    assert cfg.model.variant == "obbdet_micro" and cfg.optim.lr == 0.003 and cfg.schedule.name == "multistep"
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'optim.learning_rate'"):
        load_yaml_config(bad)
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_shipped_configs_resolve():
    assert resolve_config(str(ROOT / "configs" / "quickstart.yaml")) == RunConfig()
    assert resolve_config(str(ROOT / "configs" / "d0_512.yaml")) == variant_config("d0_512")
    assert variant_config("d0_512").model.variant == "tf_efficientdet_d0"


# ---------------------------------------------------------------------------------------------------
# LR schedules
# ---------------------------------------------------------------------------------------------------

def _schedule(name, **kw):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    cfg = ScheduleConfig(name=name, warmup_epochs=kw.pop("warmup_epochs", 1.0), warmup_factor=0.1, min_lr=0.01, **kw)
    return LRSchedule(optimizer, cfg, 1.0, steps_per_epoch=10, epochs=10)


def test_schedules_shapes_and_resume():
    cos = _schedule("cosine")
    assert cos.lr == pytest.approx(0.1)  # warmup start
    lrs = []
    for _ in range(100):
        lrs.append(cos.lr)
        cos.step()
    assert max(lrs) == pytest.approx(1.0, abs=0.01) and lrs[-1] < 0.02 and cos.lr == pytest.approx(0.01)
    multi = _schedule("multistep", milestones=(3, 6), gamma=0.5, warmup_epochs=0.0)
    for _ in range(65):
        multi.step()
    assert multi.lr == pytest.approx(0.25)
    one = _schedule("onecycle", warmup_epochs=0.0)
    values = [one.factor(s) for s in range(100)]
    assert values[0] == pytest.approx(0.04) and max(values) == pytest.approx(1.0, abs=1e-3) and values[-1] < 0.02
    plateau = _schedule("plateau", warmup_epochs=0.0, patience=1, plateau_factor=0.5)
    for metric in (0.1, 0.2, 0.2, 0.2, 0.2, 0.2):
        plateau.step_epoch(metric)
    assert plateau.lr == pytest.approx(0.25)
    resumed = _schedule("plateau", warmup_epochs=0.0, patience=1, plateau_factor=0.5)
    resumed.load_state_dict(plateau.state_dict())
    assert resumed.lr == plateau.lr


def test_amp_dtype_per_device_and_cpu_autocast_step():
    from obbdet import training
    from obbdet.config import ModelConfig
    from obbdet.engine import _autocast
    from obbdet.model.detector import build_detector

    cpu = torch.device("cpu")
    assert training.amp_dtype_for(cpu, False) is None
    expected = torch.bfloat16 if training.cpu_bf16_supported() else None
    assert training.amp_dtype_for(cpu, True) is expected
    # a bfloat16 autocast step on the CPU (runs emulated where not native): bf16 outputs, finite fp32 losses
    torch.manual_seed(0)
    model = build_detector(ModelConfig(variant="obbdet_tiny", image_size=128), ["car", "bus"]).train()
    model = model.to(memory_format=torch.channels_last)
    images = torch.rand(2, 3, 128, 128).contiguous(memory_format=torch.channels_last)
    with _autocast(cpu, torch.bfloat16):
        outputs = model(images)
    assert outputs["cls_logits"].dtype == torch.bfloat16
    loss = sum(value.float().square().mean() for value in outputs.values())
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert next(model.parameters()).dtype == torch.float32  # the weights stay float32


# ---------------------------------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------------------------------

def test_tiny_training_run(tmp_path, synthetic_cache, capsys):
    from obbdet.cli import train

    rc = train.main(["tiny_run", "3", *_tiny_args(tmp_path, synthetic_cache)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "[RESULT]: Train. Epoch: 1, summary_loss: " in out and "[RESULT]: Val. Epoch: 2, summary_loss: " in out
    assert "50-95%" in out  # the per-IoU table
    run = tmp_path / "tiny_run"
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert {"train_loss", "val_loss", "map_0.50", "map_0.95", "map_50-95", "lr"} <= set(records[-1])
    rows = list(csv.DictReader((run / "summary.csv").open()))
    assert len(rows) == 2 and "map_0.75" in rows[0]
    assert (run / "config.yaml").is_file() and list(run.glob("events.out.tfevents.*"))
    assert len(list(run.glob("best-checkpoint-*epoch.pt"))) == 1
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["run"] == {"name": "tiny_run", "seed": 3}
    assert ckpt["vehicle_width"] > 0 and ckpt["model"]["class_names"] == ["car", "truck", "bus", "van"]
    assert ckpt["ema_state_dict"] is not None and ckpt["config"]["model"]["variant"] == "obbdet_micro"
    detector = build_detector_from_checkpoint(ckpt)
    out = detector.predict(torch.rand(1, 3, 64, 96))
    assert out[0]["boxes"].shape[-1] == 5
    # an existing run is never overwritten silently
    assert train.main(["tiny_run", "3", *_tiny_args(tmp_path, synthetic_cache)]) == 2


def test_bad_override_exits_cleanly(tmp_path, capsys):
    from obbdet.cli import train

    assert train.main(["x", "0", f"train.out_dir={tmp_path}", "train.epochz=3"]) == 2
    assert "unknown config key 'train.epochz'" in capsys.readouterr().err


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(tmp_path, synthetic_cache):
    args = [sys.executable, str(ROOT / "train.py"), "killed", "0",
            *_tiny_args(tmp_path, synthetic_cache, "train.epochs=4", "data.virtual_epoch_size=24",
                        "data.batch_size=2")]
    last = tmp_path / "killed" / "last.pt"
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert last.exists(), proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "no checkpoint"
        time.sleep(0.3)  # into the next epoch
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    killed_at = load_checkpoint(last)["epoch"]
    assert 1 <= killed_at < 4
    resumed = subprocess.run(args + ["--resume"], env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming {last} at epoch {killed_at}" in resumed.stdout
    ckpt = load_checkpoint(last)
    assert ckpt["epoch"] == 4
    assert ckpt["sampler"]["epoch"] == 3  # the last epoch drawn by the virtual-epoch sampler
    for path in (tmp_path / "killed").glob("*.pt"):
        load_checkpoint(path)  # every checkpoint file is whole
    records = [json.loads(line) for line in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    rows = list(csv.DictReader((tmp_path / "killed" / "summary.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path, synthetic_cache):
    # render the synthetic set first so the two ranks start together
    from obbdet.training import synthetic_sources

    synthetic_sources(replace(variant_config("tiny").data, synthetic_cache=str(synthetic_cache)))
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
            str(ROOT / "train.py"), "ddp", "0",
            *_tiny_args(tmp_path, synthetic_cache, "train.epochs=1", "data.virtual_epoch_size=16",
                        "data.batch_size=2")]
    done = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("[RESULT]: Train. Epoch: 1") == 1  # only rank 0 prints and writes
    assert "device cpu x2" in done.stdout
    records = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["train_images"] == 8  # each rank drew half of the virtual epoch
    ckpt = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])
    assert math.isfinite(ckpt["metrics"]["val_loss"])


# ---------------------------------------------------------------------------------------------------
# LR finder
# ---------------------------------------------------------------------------------------------------

def test_suggest_lr_finds_the_steepest_descent():
    import numpy as np

    from obbdet.lr_finder import exponential_lrs, suggest_lr

    lrs = exponential_lrs(1e-5, 1.0, 100)
    x = np.log10(lrs)
    losses = 5 - 2 * np.tanh(2 * (x + 3)) + np.where(x > -1, 10 * (x + 1) ** 2, 0.0)
    steepest, min_over_10 = suggest_lr(lrs, losses)
    assert 5e-4 < steepest < 2e-3
    assert 5e-3 < min_over_10 < 2e-2


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_lr_finder_tool(tmp_path, synthetic_cache, optimizer, capsys):
    sys.path.insert(0, str(ROOT / "tools"))
    import lr_finder as tool

    rc = tool.main(["--config", "tiny", "--steps", "12", "--start-lr", "1e-4", "--end-lr", "1e-1", "--no-progress",
                    "--out", str(tmp_path), f"data.synthetic_cache={synthetic_cache}", "train.threads=1",
                    f"optim.optimizer={optimizer}"])
    assert rc == 0
    result = json.loads((tmp_path / "lr_finder.json").read_text())
    assert len(result["lrs"]) == len(result["losses"]) > 0 and result["lrs"][0] == pytest.approx(1e-4)
    assert (tmp_path / "lr_finder.png").stat().st_size > 1000
    assert "steps (" in capsys.readouterr().out
