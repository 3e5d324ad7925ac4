"""Learning-rate range test: ramp the LR exponentially over a few hundred steps and watch the loss.

The loss is smoothed with a bias-corrected exponential moving average; the test stops when the smoothed loss
exceeds ``diverge_factor`` times its minimum (divergence). The suggested LR is the one where the smoothed loss
falls fastest (steepest negative slope against log LR), a common and robust choice; the LR of the minimum
loss divided by 10 is reported too. Works with any optimizer (AdamW, SGD): only the ``lr`` of its groups is
driven.
"""
from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from obbdet.data import targets_to_device
from obbdet.distributed import unwrap

logger = logging.getLogger(__name__)


@dataclass
class LRFinderResult:
    """lrs / losses (smoothed) / raw_losses per step; suggested_lr (steepest descent); min_loss_lr / 10."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    raw_losses: list[float] = field(default_factory=list)
    suggested_lr: float | None = None
    min_loss_lr: float | None = None
    diverged: bool = False

    def to_json(self) -> dict:
        return asdict(self)


def exponential_lrs(start_lr: float, end_lr: float, num_steps: int) -> np.ndarray:
    """``num_steps`` LRs from ``start_lr`` to ``end_lr``, evenly spaced in log scale."""
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr}, {end_lr}")
    return start_lr * (end_lr / start_lr) ** (np.arange(num_steps) / max(1, num_steps - 1))


def suggest_lr(lrs, losses, skip_fraction: float = 0.2, window: int = 5) -> tuple[float | None, float | None]:
    """(steepest-descent LR, min-loss LR / 10) of a smoothed curve; None when it is too short.

    The slope is a least-squares fit of loss against log LR over ``window`` neighbouring points, so one noisy
    batch cannot produce the suggestion; the first ``skip_fraction`` of the curve (where the bias-corrected
    average is still settling) and everything after the minimum are not considered.
    """
    lrs, losses = np.asarray(lrs, float), np.asarray(losses, float)
    if len(lrs) < 2 * window:
        return None, None
    best = int(np.argmin(losses))
    start, end = int(len(lrs) * skip_fraction), best
    log_lr = np.log(lrs)
    slopes = [np.polyfit(log_lr[i:i + window], losses[i:i + window], 1)[0]
              for i in range(start, max(start + 1, end - window + 2))]
    steepest = float(lrs[start + int(np.argmin(slopes)) + window // 2])
    return steepest, float(lrs[best] / 10)


def lr_range_test(model, criterion, loader, optimizer, device, *, start_lr: float = 1e-6, end_lr: float = 1.0,
                  num_steps: int = 100, smoothing: float | None = None, diverge_factor: float = 4.0,
                  show_progress: bool = True) -> LRFinderResult:
    """Run the range test (the model and optimizer are changed: use fresh ones for training afterwards).

    loader yields ``(images [B, 3, H, W] uint8, targets)`` as in training; it is cycled if shorter than
    ``num_steps``. ``smoothing``: the moving-average factor (default: ``1 - 8 / num_steps`` within
    [0.8, 0.98], so the average remembers about an eighth of the ramp whatever its length).
    """
    if smoothing is None:
        smoothing = min(0.98, max(0.8, 1 - 8 / num_steps))
    model.train()
    result = LRFinderResult()
    average, best = 0.0, math.inf
    lrs = exponential_lrs(start_lr, end_lr, num_steps)
    batches = itertools.cycle(loader)
    for step in tqdm(range(num_steps), desc="lr range test", disable=not show_progress):
        images, targets = next(batches)
        if images is None:
            continue
        for group in optimizer.param_groups:
            group["lr"] = float(lrs[step])
        images = images.to(device).float().div_(255.0)
        losses = criterion(model(images), targets_to_device(targets, device),
                           unwrap(model).anchors_for(*images.shape[-2:]))
        loss = losses["loss"]
        optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            result.diverged = True
            break
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        average = smoothing * average + (1 - smoothing) * value
        smoothed = average / (1 - smoothing ** (len(result.raw_losses) + 1))
        result.lrs.append(float(lrs[step]))
        result.raw_losses.append(value)
        result.losses.append(smoothed)
        best = min(best, smoothed)
        if smoothed > diverge_factor * best and step > num_steps // 10:
            result.diverged = True
            break
    result.suggested_lr, result.min_loss_lr = suggest_lr(result.lrs, result.losses)
    return result


def plot_lr_finder(result: LRFinderResult, path, title: str = "LR range test") -> None:
    """PNG: smoothed (and raw) loss against LR (log scale), the suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(result.lrs, result.raw_losses, color="0.8", lw=1, label="loss")
    ax.plot(result.lrs, result.losses, color="C0", lw=2, label="smoothed loss")
    if result.suggested_lr:
        ax.axvline(result.suggested_lr, color="C3", ls="--", label=f"suggested {result.suggested_lr:.2e}")
    if result.min_loss_lr:
        ax.axvline(result.min_loss_lr, color="C2", ls=":", label=f"min-loss / 10 {result.min_loss_lr:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    if result.losses:
        low, high = min(result.losses), np.percentile(result.raw_losses, 95)
        ax.set_ylim(low - 0.05 * (high - low), high)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_result(result: LRFinderResult, path) -> None:
    from obbdet.io_utils import atomic_write_text

    atomic_write_text(path, json.dumps(result.to_json(), indent=1) + "\n")
