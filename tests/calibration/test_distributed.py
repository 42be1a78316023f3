"""Sharding and the single-process Reducer (the torch.distributed one runs in
tests/compiler/test_distributed_build.py, as real processes)."""

from __future__ import annotations

import pytest
import torch

from inferc.calibration.dataset import CalibrationSet
from inferc.calibration.distributed import Reducer, owned_shards, shard_bounds
from inferc.calibration.stats import hessian_of
from inferc.core.errors import CalibrationError
from inferc.core.numerics.gptq import HessianAccumulator, accumulate_hessian


def _as_rank(rank: int, world: int, shards: int) -> Reducer:
    r = Reducer(shards)
    r.rank, r.world_size = rank, world
    return r


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_ranks_walk_every_sequence_once_in_batches_that_never_cross_a_shard(world):
    calib = CalibrationSet(torch.arange(11 * 4).reshape(11, 4), "arange")
    bounds = shard_bounds(11, 5)
    seen = []
    for rank in range(world):
        for b in _as_rank(rank, world, 5).batches(calib, batch_size=2):
            start, stop = bounds[b.shard]
            assert start <= b.first and b.first + b.tokens.shape[0] <= stop
            assert torch.equal(b.tokens, calib.tokens[b.first : b.first + b.tokens.shape[0]])
            seen += range(b.first, b.first + b.tokens.shape[0])
    assert seen == list(range(11))  # rank order is shard order is sequence order


def test_more_ranks_than_shards_is_refused():
    assert len(shard_bounds(3, 8)) == 3  # never an empty shard
    with pytest.raises(CalibrationError, match="4 ranks but the calibration set has only 3 shard"):
        owned_shards(3, 0, 4)


def test_fold_adds_shard_partials_in_order_in_float64():
    g = torch.Generator().manual_seed(0)
    parts = [torch.randn(100, generator=g) * 10 ** (k % 5) for k in range(7)]
    expected = parts[0].double()
    for p in parts[1:]:
        expected = expected + p.double()
    assert torch.equal(Reducer().fold(iter(parts)), expected)


def test_hessian_is_summed_per_shard_and_counts_every_token():
    g = torch.Generator().manual_seed(0)
    calib = CalibrationSet(torch.zeros(6, 5, dtype=torch.int64), "zeros")
    reducer = Reducer(shards=3)
    batches = reducer.batches(calib, batch_size=1)  # shards of two sequences, one batch each
    inputs = [torch.randn(1, 5, 8, generator=g) for _ in batches]
    acc = hessian_of(inputs, batches, reducer)
    assert acc.count == 30
    shard_sums = []
    for k in range(3):
        part = HessianAccumulator.zeros(8)
        for x, b in zip(inputs, batches):
            if b.shard == k:
                accumulate_hessian(part, x)
        shard_sums.append(part.sum_xxt.double())
    assert torch.equal(acc.sum_xxt, (shard_sums[0] + shard_sums[1] + shard_sums[2]).float())
    whole = torch.cat(inputs).reshape(-1, 8)
    torch.testing.assert_close(acc.sum_xxt, whole.T @ whole, rtol=1e-5, atol=1e-5)
