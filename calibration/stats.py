"""Activation statistics of every linear's input, collected in one pass over the
calibration set and shared: FP8 static scales use `amax`, AWQ `abs_mean`, GGUF's
importance matrix `sum_sq`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from inferc.calibration.dataset import CalibrationSet
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
) -> ActivationStats:
    """Run the unquantized reference forward over the calibration set once, recording
    the input statistics of every linear (and of lm_head)."""
    ref = ReferenceModel(model, device=device, quantized=False)
    stats = ActivationStats(source=calib.source)
    ref.observers.append(stats.observer())
    done = 0
    for batch in calib.batches(batch_size):
        ref.forward(batch)
        done += batch.shape[0]
        if progress is not None:
            progress("calibration statistics", done, calib.num_sequences)
    stats.num_tokens = calib.num_tokens
    return stats
