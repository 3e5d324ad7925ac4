"""Optimizer construction and the learning-rate schedule (the whole schedule is ``LRSchedule.factor``)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights with decay; biases, norm parameters and BiFPN edge weights (1-d) without.

    Frozen parameters are included, so that unfreezing later keeps the optimizer state layout.
    """
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, optim_cfg) -> torch.optim.Optimizer:
    """AdamW (default) or SGD with (Nesterov) momentum, from an ``OptimConfig``.

    Every parameter is registered, frozen ones too, so that unfreezing later keeps the optimizer state layout.
    """
    groups = parameter_groups(model, optim_cfg.weight_decay)
    if optim_cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=optim_cfg.lr, momentum=optim_cfg.momentum,
                               nesterov=optim_cfg.nesterov and optim_cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=optim_cfg.lr, betas=(optim_cfg.momentum, 0.999))


class LRSchedule:
    """Learning rate per optimizer step (warmup, then cosine / one-cycle / multistep / constant) or, for
    ``plateau``, a factor reduced when the watched metric stops improving (checked once per epoch).

    ``step()`` after every optimizer step; ``step_epoch(metric)`` after each evaluation. Resumable through
    ``state_dict`` / ``load_state_dict``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule_cfg, base_lr: float, steps_per_epoch: int,
                 epochs: int):
        self.optimizer = optimizer
        self.cfg = schedule_cfg
        self.base_lr = float(base_lr)
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.total_steps = self.steps_per_epoch * int(epochs)
        self.warmup_steps = int(round(schedule_cfg.warmup_epochs * self.steps_per_epoch))
        self.step_count = 0
        self.plateau_scale = 1.0
        self.best_metric = -math.inf
        self.bad_epochs = 0
        self._apply()

    def factor(self, step: int) -> float:
        """LR / base LR at optimizer step ``step`` (0-based)."""
        cfg, base = self.cfg, self.base_lr
        min_factor = min(1.0, cfg.min_lr / base) if base > 0 else 0.0
        progress = min(1.0, max(0.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)))
        if cfg.name == "cosine":
            value = min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))
        elif cfg.name == "onecycle":  # torch's OneCycleLR shape: cosine up from base/25, cosine down to min_lr
            rise = max(1, int(cfg.pct_start * self.total_steps))
            if step < rise:
                start = 1.0 / 25.0
                return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * step / rise))
            down = (step - rise) / max(1, self.total_steps - rise)
            return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(1.0, down)))
        elif cfg.name == "multistep":
            epoch = step // self.steps_per_epoch
            value = cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
        elif cfg.name == "plateau":
            value = max(self.plateau_scale, min_factor)
        else:  # constant
            value = 1.0
        if step < self.warmup_steps:
            value *= cfg.warmup_factor + (1 - cfg.warmup_factor) * step / self.warmup_steps
        return value

    def _apply(self) -> None:
        lr = self.base_lr * self.factor(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def step_epoch(self, metric: float | None) -> None:
        """Reduce-on-plateau bookkeeping (only ``plateau`` uses it): metric is higher-is-better."""
        if self.cfg.name != "plateau" or metric is None:
            return
        if metric > self.best_metric + 1e-6:
            self.best_metric, self.bad_epochs = metric, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.cfg.patience:
                self.plateau_scale *= self.cfg.plateau_factor
                self.bad_epochs = 0
        self._apply()

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "plateau_scale": self.plateau_scale,
                "best_metric": self.best_metric, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self.plateau_scale = float(state["plateau_scale"])
        self.best_metric = float(state["best_metric"])
        self.bad_epochs = int(state["bad_epochs"])
        self._apply()
