"""VirtualEpochSampler: a fixed number of samples per epoch, drawn from several datasets by quota.

Indices are global positions in the concatenated training list (datasets contiguous, in order). Each dataset
has an endless *stream*: a seeded permutation of its images, then another permutation, and so on. Epoch
``e`` takes positions ``[e * q, (e + 1) * q)`` of a dataset's stream (``q`` its quota), so every image of a
dataset is drawn once before any is drawn again, across epoch boundaries, and a dataset smaller than its
quota is cycled (reshuffled each pass). The picks of all datasets are then shuffled together with a
generator seeded by ``(seed, epoch)``: the epoch is a pure function of ``(seed, epoch, quotas, sizes,
num_replicas)``, whatever happened before, so ``set_epoch`` can jump anywhere.

Distributed training: the epoch list is dealt round-robin to ``num_replicas`` ranks (disjoint positions,
equal lengths). When the epoch size is not a multiple of ``num_replicas`` it is rounded up, the few extra
draws going to the datasets in proportion to their quotas (so no rank repeats another's sample), or down
with ``drop_last=True``.
"""
from __future__ import annotations

import logging
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from .quotas import apportion, resolve_quotas

logger = logging.getLogger(__name__)

_STREAM_TAG = 0x5EED5  # keeps the stream and shuffle generators of equal integers apart
_SHUFFLE_TAG = 0xE90C4


class VirtualEpochSampler(Sampler[int]):
    """Samples global indices of the concatenated training list, ``len(self)`` per rank per epoch.

    dataset_sizes: training images per dataset, in the order of the concatenated list.
    quotas / weights / num_samples: per-dataset quotas (see :func:`datasets_registry.quotas.resolve_quotas`).
    seed: the run seed. num_replicas / rank: distributed sharding. drop_last: round the epoch down to a
    multiple of ``num_replicas`` instead of up.

    Resuming: ``state_dict()`` holds the epoch and the samples consumed so far (pass ``consumed=`` the count
    the trainer actually processed when a DataLoader prefetches ahead); after ``load_state_dict`` the next
    iteration over that epoch starts where it stopped.
    """

    def __init__(self, dataset_sizes: Sequence[int], *, quotas: Sequence[int | None] | None = None,
                 weights: Sequence[float | None] | None = None, num_samples: int | None = None, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, drop_last: bool = False):
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas), got rank={rank}, num_replicas={num_replicas}")
        self.sizes = np.asarray(dataset_sizes, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.requested = resolve_quotas(self.sizes.tolist(), quotas, weights, num_samples)
        if self.requested.sum() == 0:
            raise ValueError("the virtual epoch is empty: every quota is 0 or no dataset has training images")
        self.seed, self.num_replicas, self.rank, self.drop_last = int(seed), num_replicas, rank, drop_last
        self.quotas = self._shard_quotas()
        total = int(self.quotas.sum())
        self.num_samples = total - total % num_replicas  # already a multiple unless drop_last
        self.per_rank = self.num_samples // num_replicas
        self.epoch = 0
        self._skip = 0  # positions of this rank already consumed (resume)
        self._consumed = 0
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

    def _shard_quotas(self) -> np.ndarray:
        """Quotas rounded up to a multiple of ``num_replicas`` (extra draws by quota) unless ``drop_last``."""
        total = int(self.requested.sum())
        extra = -total % self.num_replicas
        if self.drop_last or extra == 0:
            return self.requested.copy()
        logger.info("virtual epoch of %d samples rounded up to %d for %d replicas", total, total + extra,
                    self.num_replicas)
        return self.requested + apportion(extra, self.requested)

    # ------------------------------------------------------------------ epoch contents

    def _permutation(self, dataset: int, cycle: int) -> np.ndarray:
        key = (dataset, cycle)
        perm = self._perm_cache.get(key)
        if perm is None:
            rng = np.random.default_rng([self.seed, dataset, cycle, _STREAM_TAG])
            perm = rng.permutation(int(self.sizes[dataset]))
            if len(self._perm_cache) > 2 * len(self.sizes):
                self._perm_cache.clear()
            self._perm_cache[key] = perm
        return perm

    def _stream(self, dataset: int, start: int, count: int) -> np.ndarray:
        """Positions ``[start, start + count)`` of one dataset's stream (local indices)."""
        size = int(self.sizes[dataset])
        parts, position = [], start
        while count > 0:
            cycle, offset = divmod(position, size)
            take = min(size - offset, count)
            parts.append(self._permutation(dataset, cycle)[offset:offset + take])
            position += take
            count -= take
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """Every rank's global indices of ``epoch``, ``[num_samples]`` int64 (rank ``r`` gets ``[r::R]``)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        picks = [self.offsets[i] + self._stream(i, epoch * int(q), int(q))
                 for i, q in enumerate(self.quotas) if q > 0]
        indices = np.concatenate(picks)
        rng = np.random.default_rng([self.seed, epoch, _SHUFFLE_TAG])
        return rng.permutation(indices)[:self.num_samples]

    def rank_indices(self, epoch: int) -> np.ndarray:
        """This rank's global indices of ``epoch``, ``[len(self) + consumed]`` int64."""
        return self.epoch_indices(epoch)[self.rank::self.num_replicas][:self.per_rank]

    # ------------------------------------------------------------------ Sampler protocol

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch the next iteration yields (a resumed position is kept for the resumed epoch)."""
        if epoch != self.epoch:
            self._skip = 0
        self.epoch = int(epoch)
        self._consumed = self._skip

    def __len__(self) -> int:
        return self.per_rank - self._skip

    def __iter__(self) -> Iterator[int]:
        indices = self.rank_indices(self.epoch)
        start, self._skip = self._skip, 0
        self._consumed = start
        for index in indices[start:].tolist():
            self._consumed += 1
            yield index

    # ------------------------------------------------------------------ resuming

    def state_dict(self, consumed: int | None = None) -> dict:
        """``{'epoch', 'consumed', 'seed', 'num_replicas', 'quotas'}``; ``consumed`` counts this rank's samples."""
        done = self._consumed if consumed is None else int(consumed)
        return {"epoch": self.epoch, "consumed": done, "consumed_global": done * self.num_replicas,
                "seed": self.seed, "num_replicas": self.num_replicas, "quotas": self.requested.tolist()}

    def load_state_dict(self, state: dict) -> None:
        """Resume at ``state``'s epoch and position (the world size may differ: positions are global)."""
        if state["seed"] != self.seed or list(state["quotas"]) != self.requested.tolist():
            raise ValueError(f"sampler state is for seed {state['seed']} and quotas {state['quotas']}; this sampler "
                             f"has seed {self.seed} and quotas {self.requested.tolist()}")
        self.epoch = int(state["epoch"])
        consumed_global = int(state.get("consumed_global", state["consumed"] * state["num_replicas"]))
        # equal lengths on every rank: skip the same count everywhere (< num_replicas positions are re-seen)
        self._skip = min(consumed_global // self.num_replicas, self.per_rank)
        self._consumed = self._skip

    def __repr__(self) -> str:
        return (f"VirtualEpochSampler(quotas={self.quotas.tolist()}, sizes={self.sizes.tolist()}, seed={self.seed}, "
                f"rank={self.rank}/{self.num_replicas}, epoch={self.epoch}, per_rank={self.per_rank})")

