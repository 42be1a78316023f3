"""Shared by the 4-bit pass tests: a tiny model, a calibration set, a context, a KL."""

from __future__ import annotations

import torch

from inferc.calibration.dataset import CalibrationSet
from inferc.calibration.stats import collect_activation_stats
from inferc.formats.hf.reader import load_checkpoint
from inferc.passes.base import PassContext
from inferc.runtime.reference import ReferenceModel


def calib_set(vocab: int = 256, n: int = 8, length: int = 64, seed: int = 0) -> CalibrationSet:
    g = torch.Generator().manual_seed(seed)
    return CalibrationSet(tokens=torch.randint(0, vocab, (n, length), generator=g), source=f"random seed {seed}")


def context(model, calib: CalibrationSet) -> PassContext:
    return PassContext(calibration=calib, _stats_factory=lambda: collect_activation_stats(model, calib))


def logits(model, ids: torch.Tensor, quantized: bool = True) -> torch.Tensor:
    return ReferenceModel(model, quantized=quantized).forward(ids)


def mean_kl(ref: torch.Tensor, cand: torch.Tensor) -> float:
    lp, lq = ref.log_softmax(-1), cand.log_softmax(-1)
    return (lp.exp() * (lp - lq)).sum(-1).mean().item()


def load(path):
    return load_checkpoint(path)
