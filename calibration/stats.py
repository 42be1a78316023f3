"""Activation statistics of every linear's input, collected in one pass over the
calibration set and shared: FP8 static scales use `amax`, AWQ `abs_mean`, GGUF's
importance matrix `sum_sq`. Under torch.distributed each rank observes its shards of the
calibration set; sums are kept per shard and folded in shard order, maxima all-reduced
(calibration/distributed.py), so every rank ends with the same statistics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from inferc.calibration.dataset import CalibrationSet
from inferc.calibration.distributed import Batch, Reducer
from inferc.core.numerics.gptq import HessianAccumulator, accumulate_hessian
from inferc.core.ir import ModelIR
from inferc.runtime.reference import ReferenceModel


@dataclass
class ChannelStats:
    """Running statistics of one linear's input, [in_features] unless noted."""

    amax: torch.Tensor  # [] max |x| over all tokens
    abs_sum: torch.Tensor  # sum |x|
    abs_max: torch.Tensor  # max |x|
    sum_sq: torch.Tensor  # sum x^2 (llama.cpp's importance matrix)
    count: int = 0  # tokens seen

    @property
    def abs_mean(self) -> torch.Tensor:
        return self.abs_sum / max(self.count, 1)

    @property
    def mean_sq(self) -> torch.Tensor:
        return self.sum_sq / max(self.count, 1)

    def update(self, x: torch.Tensor) -> None:
        """Fold a batch of inputs [..., in] (any device) into the running statistics (CPU)."""
        x = x.detach().reshape(-1, x.shape[-1]).float()  # [tokens, in]
        a = x.abs()
        self.amax = torch.maximum(self.amax, a.max().cpu())
        self.abs_sum += a.sum(0).cpu()
        self.abs_max = torch.maximum(self.abs_max, a.amax(0).cpu())
        self.sum_sq += (x * x).sum(0).cpu()
        self.count += x.shape[0]

    @classmethod
    def zeros(cls, features: int) -> ChannelStats:
        z = torch.zeros(features, dtype=torch.float32)
        return cls(amax=torch.zeros(()), abs_sum=z.clone(), abs_max=z.clone(), sum_sq=z.clone())


@dataclass
class ActivationStats:
    """Per-linear input statistics, keyed by the linear's weight name."""

    by_weight: dict[str, ChannelStats] = field(default_factory=dict)
    num_tokens: int = 0
    source: str = ""

    def __getitem__(self, weight_name: str) -> ChannelStats:
        return self.by_weight[weight_name]

    def __contains__(self, weight_name: str) -> bool:
        return weight_name in self.by_weight

    def importance_sums(self) -> dict[str, tuple[torch.Tensor, int]]:
        """(sum of squared inputs per column, tokens) per weight: an imatrix's content."""
        return {name: (st.sum_sq, st.count) for name, st in self.by_weight.items()}

    def observer(self) -> Callable[[str, torch.Tensor], None]:
        def observe(name: str, x: torch.Tensor) -> None:
            st = self.by_weight.get(name)
            if st is None:
                st = self.by_weight[name] = ChannelStats.zeros(x.shape[-1])
            st.update(x)

        return observe


def collect_activation_stats(
    model: ModelIR,
    calib: CalibrationSet,
    device: str = "cpu",
    batch_size: int = 4,
    progress: Callable[[str, int, int], None] | None = None,
    reducer: Reducer | None = None,
) -> ActivationStats:
    """Run the unquantized reference forward over the calibration set once (this rank's
    shards of it), recording the input statistics of every linear (and of lm_head)."""
    reducer = reducer or Reducer()
    ref = ReferenceModel(model, device=device, quantized=False)
    batches = reducer.batches(calib, batch_size)
    shards: list[ActivationStats] = []
    ref.observers.append(lambda name, x: shards[-1].observer()(name, x))
    done, total = 0, sum(b.tokens.shape[0] for b in batches)
    for k, b in enumerate(batches):
        if k == 0 or b.shard != batches[k - 1].shard:
            shards.append(ActivationStats())
        ref.forward(b.tokens)
        done += b.tokens.shape[0]
        if progress is not None:
            progress("calibration statistics", done, total)
    stats = reduce_stats(shards, reducer)
    stats.source, stats.num_tokens = calib.source, calib.num_tokens
    return stats


def reduce_stats(shards: list[ActivationStats], reducer: Reducer) -> ActivationStats:
    """One ActivationStats from per-shard ones (this rank's, in shard order): sums folded
    in shard order over every rank, maxima and counts all-reduced."""
    names = sorted(shards[0].by_weight)
    sizes = [shards[0][n].sum_sq.numel() for n in names]

    def flat(st: ActivationStats, fields: Callable[[ChannelStats], list[torch.Tensor]]) -> torch.Tensor:
        return torch.cat([t.reshape(-1) for n in names for t in fields(st[n])])

    sums = reducer.fold(flat(st, lambda c: [c.abs_sum, c.sum_sq]) for st in shards).float()
    maxima = reducer.max(torch.stack([flat(st, lambda c: [c.amax, c.abs_max]) for st in shards]).amax(0))
    counts = reducer.total(torch.tensor([[st[n].count for n in names] for st in shards], dtype=torch.int64).sum(0))
    out = ActivationStats()
    s_off = m_off = 0
    for k, (n, size) in enumerate(zip(names, sizes)):
        abs_sum, sum_sq = sums[s_off : s_off + 2 * size].split(size)
        out.by_weight[n] = ChannelStats(amax=maxima[m_off].clone(), abs_sum=abs_sum.clone(), abs_max=maxima[m_off + 1 : m_off + 1 + size].clone(),
                                        sum_sq=sum_sq.clone(), count=int(counts[k]))
        s_off, m_off = s_off + 2 * size, m_off + 1 + size
    return out


def hessian_of(inputs: list[torch.Tensor], batches: list[Batch], reducer: Reducer) -> HessianAccumulator:
    """sum x x^T and the token count of a linear's inputs (one [b, t, in] per batch of
    this rank), over every rank: float32 per shard, the shards folded in order in float64."""

    def partials():
        acc = None
        for k, (x, b) in enumerate(zip(inputs, batches)):
            if k == 0 or b.shard != batches[k - 1].shard:
                if acc is not None:
                    yield acc.sum_xxt
                acc = HessianAccumulator.zeros(x.shape[-1])
            accumulate_hessian(acc, x)
        yield acc.sum_xxt

    total = reducer.fold(partials())
    count = reducer.total(torch.tensor([sum(x[..., 0].numel() for x in inputs)], dtype=torch.int64))
    return HessianAccumulator(total.float(), int(count[0]))
