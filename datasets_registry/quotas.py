"""Per-dataset quotas of a virtual epoch (numpy only, shared by the registry table and the sampler)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def apportion(total: int, weights: Sequence[float]) -> np.ndarray:
    """Split the integer ``total`` in proportion to ``weights`` (largest remainder; ties go to the lower index).

    Returns ``[len(weights)]`` int64 summing to ``total``.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if total < 0 or (weights < 0).any() or (total > 0 and weights.sum() <= 0):
        raise ValueError(f"cannot apportion {total} over weights {weights.tolist()}")
    if total == 0:
        return np.zeros(len(weights), np.int64)
    raw = total * weights / weights.sum()
    base = np.floor(raw).astype(np.int64)
    leftover = int(total - base.sum())
    order = np.lexsort((np.arange(len(raw)), -(raw - base)))  # largest fractional part first, stable
    base[order[:leftover]] += 1
    return base


def resolve_quotas(sizes: Sequence[int], quotas: Sequence[int | None] | None = None,
                   weights: Sequence[float | None] | None = None, num_samples: int | None = None,
                   names: Sequence[str] | None = None) -> np.ndarray:
    """Samples drawn from each dataset per virtual epoch, ``[len(sizes)]`` int64.

    sizes: training images per dataset. quotas: a fixed count per dataset (or None). weights: for datasets
    without a quota, their share of ``num_samples - sum(quotas)`` (or None). A dataset with neither gets
    weight = its size when ``num_samples`` is given, else quota = its size (a plain pass over it).
    Datasets with no training images get 0.
    """
    n = len(sizes)
    names = list(names) if names is not None else [f"dataset {i}" for i in range(n)]
    quotas = list(quotas) if quotas is not None else [None] * n
    weights = list(weights) if weights is not None else [None] * n
    _check_lengths(n, quotas, weights, names)
    out = np.zeros(n, np.int64)
    weighted = []
    for i in range(n):
        if sizes[i] == 0:
            if quotas[i]:
                raise ValueError(f"{names[i]}: quota {quotas[i]} but no training images")
            continue
        if quotas[i] is not None:
            out[i] = int(quotas[i])
        elif weights[i] is not None or num_samples is not None:
            weighted.append((i, float(weights[i]) if weights[i] is not None else float(sizes[i])))
        else:
            out[i] = sizes[i]
    _fill_weighted(out, weighted, num_samples, names)
    return out


def _check_lengths(n: int, quotas: list, weights: list, names: list) -> None:
    if not len(quotas) == len(weights) == len(names) == n:
        raise ValueError("sizes, quotas, weights and names must have one entry per dataset")
    for name, quota, weight in zip(names, quotas, weights):
        if quota is not None and weight is not None:
            raise ValueError(f"{name}: give a quota or a weight, not both")
        if quota is not None and (int(quota) != quota or quota < 0):
            raise ValueError(f"{name}: quota must be an integer >= 0, got {quota!r}")
        if weight is not None and not weight > 0:
            raise ValueError(f"{name}: weight must be > 0, got {weight!r}")


def _fill_weighted(out: np.ndarray, weighted: list, num_samples: int | None, names: list) -> None:
    fixed = int(out.sum())
    if not weighted:
        if num_samples is not None and num_samples != fixed:
            raise ValueError(f"samples_per_epoch is {num_samples} but the quotas sum to {fixed}")
        return
    if num_samples is None:
        raise ValueError(f"{names[weighted[0][0]]}: a weight needs samples_per_epoch")
    remaining = num_samples - fixed
    if remaining < 0:
        raise ValueError(f"samples_per_epoch {num_samples} is smaller than the fixed quotas ({fixed})")
    indices = [i for i, _ in weighted]
    out[indices] = apportion(remaining, [w for _, w in weighted])
