"""Training-step time on the CPU: float32 (baseline) vs channels_last vs bfloat16 autocast + channels_last.

    python bench/cpu_precision.py [--variant obbdet_tiny] [--size 256] [--batch 8] [--steps 10]

Backs the CPU defaults of ``optim.channels_last`` and ``optim.amp`` (``training.amp_dtype_for``): each mode runs
forward + a float32 loss + backward + AdamW step on the same random batch, and the median step time is printed
with its ratio to the float32 baseline measured in the same process. bfloat16 is timed even where the CPU has no
native support (the run says which), so the slowdown of emulated bfloat16 shows too.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

MODES = (("float32", False, False), ("channels_last", True, False), ("bf16 + channels_last", True, True))


def step_times(variant: str, size: int, batch: int, steps: int, channels_last: bool, bf16: bool) -> float:
    """Median seconds per optimizer step of a fresh ``variant`` model in one precision mode."""
    from obbdet.config import ModelConfig
    from obbdet.engine import _autocast
    from obbdet.model.detector import build_detector

    torch.manual_seed(0)
    model = build_detector(ModelConfig(variant=variant, image_size=size), ["car", "truck", "bus", "van"]).train()
    images = torch.rand(batch, 3, size, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    cpu = torch.device("cpu")
    times = []
    for i in range(steps + 2):  # two warm-up steps
        start = time.perf_counter()
        with _autocast(cpu, torch.bfloat16 if bf16 else None):
            outputs = model(images)
        loss = sum(value.float().square().mean() for value in outputs.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="obbdet_tiny")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from obbdet.training import cpu_bf16_supported

    print(f"{args.variant} @ {args.size}px, batch {args.batch}, {args.threads} CPU thread(s), native bfloat16: "
          f"{'yes' if cpu_bf16_supported() else 'no (emulated)'}")
    baseline = None
    for name, channels_last, bf16 in MODES:
        seconds = step_times(args.variant, args.size, args.batch, args.steps, channels_last, bf16)
        baseline = baseline or seconds
        print(f"  {name:22s} {1000 * seconds:8.1f} ms/step  speed-up x{baseline / seconds:4.2f} vs float32", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
