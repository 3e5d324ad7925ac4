"""VirtualEpochSampler: quotas, determinism, disjoint equal shards, no repeats before a dataset is exhausted, resume."""
from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import Sampler

from obbdet.datasets_registry import VirtualEpochSampler
from obbdet.datasets_registry.quotas import apportion, resolve_quotas

SIZES = [50, 7, 120]
QUOTAS = [20, 10, 30]


def dataset_of(indices, sizes=SIZES):
    return np.searchsorted(np.cumsum(sizes), indices, side="right")


def test_is_a_torch_sampler_with_quotas_respected():
    sampler = VirtualEpochSampler(SIZES, quotas=QUOTAS, seed=3)
    assert isinstance(sampler, Sampler) and len(sampler) == sum(QUOTAS)
    for epoch in range(4):
        sampler.set_epoch(epoch)
        indices = np.fromiter(sampler, np.int64)
        assert len(indices) == sum(QUOTAS) and indices.min() >= 0 and indices.max() < sum(SIZES)
        assert np.bincount(dataset_of(indices), minlength=3).tolist() == QUOTAS


def test_weights_apportion_the_epoch():
    sampler = VirtualEpochSampler(SIZES, weights=[1.0, 1.0, 2.0], num_samples=101, seed=0)
    counts = np.bincount(dataset_of(sampler.epoch_indices(0)), minlength=3).tolist()
    assert counts == [25, 25, 51] and sum(counts) == 101
    assert resolve_quotas([10, 10, 10], quotas=[5, None, None], weights=[None, 1, 3], num_samples=25).tolist() \
        == [5, 5, 15]
    assert apportion(10, [1, 1, 1]).tolist() == [4, 3, 3]
    with pytest.raises(ValueError, match="needs samples_per_epoch"):
        resolve_quotas([10], weights=[1.0])
    with pytest.raises(ValueError, match="quotas sum to 5"):
        resolve_quotas([10], quotas=[5], num_samples=6)


def test_deterministic_for_seed_and_epoch_and_epochs_differ():
    a = VirtualEpochSampler(SIZES, quotas=QUOTAS, seed=11)
    b = VirtualEpochSampler(SIZES, quotas=QUOTAS, seed=11)
    for epoch in (5, 0, 2):  # any order: an epoch depends only on (seed, epoch)
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert list(a) == list(b)
    assert not np.array_equal(a.epoch_indices(0), a.epoch_indices(1))
    assert not np.array_equal(a.epoch_indices(0), VirtualEpochSampler(SIZES, quotas=QUOTAS, seed=12).epoch_indices(0))


def test_every_image_seen_before_any_repeats():
    sampler = VirtualEpochSampler(SIZES, quotas=QUOTAS, seed=5)
    stream = {d: [] for d in range(3)}
    for epoch in range(12):
        indices = sampler.epoch_indices(epoch)
        for d in range(3):
            stream[d].extend(sorted(indices[dataset_of(indices) == d].tolist()))
    offsets = np.concatenate([[0], np.cumsum(SIZES)[:-1]])
    for d, size in enumerate(SIZES):
        drawn = np.asarray(stream[d]) - offsets[d]
        # epoch by epoch, the running count of each image never exceeds 1 + (draws so far) // size
        counts = np.zeros(size, np.int64)
        position = 0
        for epoch in range(12):
            counts += np.bincount(drawn[position:position + QUOTAS[d]], minlength=size)
            position += QUOTAS[d]
            assert counts.max() - counts.min() <= 1, f"dataset {d} repeated an image before exhausting it"
        assert counts.min() >= (12 * QUOTAS[d]) // size


def test_small_dataset_cycles_through_whole_permutations():
    sampler = VirtualEpochSampler([7], quotas=[3], seed=1)
    draws = np.concatenate([sampler.epoch_indices(e) for e in range(7)])  # 21 draws = 3 full passes
    for start in range(0, 21, 7):
        assert sorted(draws[start:start + 7].tolist()) == list(range(7))


@pytest.mark.parametrize("replicas", [2, 3, 4])
def test_shards_disjoint_equal_and_cover_the_epoch(replicas):
    samplers = [VirtualEpochSampler(SIZES, quotas=QUOTAS, seed=2, num_replicas=replicas, rank=r) for r in
                range(replicas)]
    for epoch in (0, 3):
        shards = []
        for sampler in samplers:
            sampler.set_epoch(epoch)
            shards.append(list(sampler))
        assert len({len(s) for s in shards}) == 1  # equal lengths
        flat = [i for s in shards for i in s]
        positions = samplers[0].epoch_indices(epoch)
        assert sorted(flat) == sorted(positions.tolist())  # together: the whole (rounded-up) epoch
        # disjoint: quotas <= sizes except the 7-image dataset, so compare positions, not values
        for r, shard in enumerate(shards):
            assert shard == positions[r::replicas].tolist()
        big = [set(i for i in s if dataset_of(i) != 1) for s in shards]
        for i in range(replicas):
            for j in range(i + 1, replicas):
                assert not big[i] & big[j]
    total = sum(QUOTAS)
    assert samplers[0].num_samples == -(-total // replicas) * replicas
    dropped = VirtualEpochSampler(SIZES, quotas=QUOTAS, seed=2, num_replicas=replicas, rank=0, drop_last=True)
    assert dropped.num_samples == total - total % replicas


def test_resume_mid_epoch():
    sampler = VirtualEpochSampler(SIZES, quotas=QUOTAS, seed=9)
    sampler.set_epoch(2)
    full = list(sampler)
    it = iter(sampler)
    first = [next(it) for _ in range(17)]
    state = sampler.state_dict()
    assert state["epoch"] == 2 and state["consumed"] == 17 and first == full[:17]
    resumed = VirtualEpochSampler(SIZES, quotas=QUOTAS, seed=9)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # a trainer calls set_epoch(start_epoch) after loading: the position is kept
    assert len(resumed) == len(full) - 17
    assert list(resumed) == full[17:]
    assert len(resumed) == len(full)  # the next pass is a whole epoch again
    resumed.set_epoch(3)
    assert list(resumed) == list(VirtualEpochSampler(SIZES, quotas=QUOTAS, seed=9).rank_indices(3))
    explicit = sampler.state_dict(consumed=10)  # what the trainer processed (DataLoader prefetches ahead)
    assert explicit["consumed"] == 10
    with pytest.raises(ValueError, match="quotas"):
        VirtualEpochSampler(SIZES, quotas=[1, 1, 1], seed=9).load_state_dict(state)


def test_resume_with_another_world_size_keeps_equal_lengths():
    two = [VirtualEpochSampler(SIZES, quotas=QUOTAS, seed=4, num_replicas=2, rank=r) for r in range(2)]
    state = two[0].state_dict(consumed=6)
    three = [VirtualEpochSampler(SIZES, quotas=QUOTAS, seed=4, num_replicas=3, rank=r) for r in range(3)]
    for sampler in three:
        sampler.load_state_dict(state)
    assert len({len(s) for s in three}) == 1 and len(three[0]) == three[0].per_rank - 4


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        VirtualEpochSampler(SIZES, quotas=QUOTAS, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="no training images"):
        VirtualEpochSampler([0, 5], quotas=[3, 2])
    with pytest.raises(ValueError, match="empty"):
        VirtualEpochSampler([5], quotas=[0])
