"""Rotary embedding frequencies, shared by the reference forward and every lowering."""

from __future__ import annotations

import math

import torch

from inferc.core.ir.spec import RopeSpec


def rope_inv_freq(rope: RopeSpec, dim: int) -> torch.Tensor:
    """Inverse frequencies [dim / 2] of the `dim` rotated dims of a head, computed in
    float32 in the order transformers (and vLLM) compute them. A float64 computation
    rounds some of them 1 ulp apart, which FP8 activation rounding amplifies into
    different logits."""
    inv = 1.0 / (rope.theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    if rope.kind == "linear":
        inv = inv / rope.factor
    elif rope.kind == "llama3":
        low_wavelen = rope.original_max_position / rope.low_freq_factor
        high_wavelen = rope.original_max_position / rope.high_freq_factor
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > low_wavelen, inv / rope.factor, inv)
        smooth = (rope.original_max_position / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor)
        mid = (1 - smooth) * scaled / rope.factor + smooth * scaled
        is_mid = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        inv = torch.where(is_mid, mid, scaled)
    return inv
