"""FP8 E4M3 (OCP `float8_e4m3fn`): weights per tensor or per output channel, activations
static per tensor or dynamic per token. Dequantized value = code * scale."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from inferc.core.ir.quant import (
    ActivationQuant,
    Granularity,
    QuantFormat,
    QuantizedWeight,
)
from inferc.core.numerics.base import (
    QParams,
    register_activation_quantizer,
    register_dequantizer,
)

FP8_E4M3_MAX = 448.0
_MIN_SCALE = 1e-12  # keeps all-zero rows from dividing by zero


def fp8_round(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest E4M3 value (saturating), returned as a float8 tensor."""
    return x.clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(torch.float8_e4m3fn)


def fp8_scale(amax: torch.Tensor) -> torch.Tensor:
    return (amax.float() / FP8_E4M3_MAX).clamp(min=_MIN_SCALE)


@dataclass(frozen=True)
class FP8WeightFormat:
    """FP8 E4M3 weights; `per_channel` picks one scale per output row, else one per tensor."""

    per_channel: bool = True
    format: QuantFormat = QuantFormat.FP8_E4M3
    group_size: int | None = None

    @property
    def rows_independent(self) -> bool:
        return self.per_channel

    def choose_qparams(self, w: torch.Tensor, col_weights: torch.Tensor | None = None) -> QParams:
        w = w.float()
        amax = w.abs().amax(dim=1, keepdim=True) if self.per_channel else w.abs().amax()  # [out, 1] or []
        return QParams(scale=fp8_scale(amax))

    def quantize(self, w: torch.Tensor, qparams: QParams) -> QuantizedWeight:
        codes = fp8_round(w.float() / qparams.scale)
        return QuantizedWeight(
            format=self.format,
            shape=(w.shape[0], w.shape[1]),
            data=codes,
            granularity=Granularity.CHANNEL if self.per_channel else Granularity.TENSOR,
            scale=qparams.scale,
            bits=8,
        )

    def dequantize(self, q: QuantizedWeight) -> torch.Tensor:
        return q.data.float() * q.scale

    def fake_quantize(self, w: torch.Tensor, qparams: QParams) -> torch.Tensor:
        return fp8_round(w.float() / qparams.scale).float() * qparams.scale

    def pack(self, q: QuantizedWeight) -> dict[str, torch.Tensor]:
        return {"weight": q.data, "weight_scale": q.scale.float()}


@register_dequantizer(QuantFormat.FP8_E4M3)
def _dequantize_fp8(q: QuantizedWeight) -> torch.Tensor:
    return q.data.float() * q.scale


@register_activation_quantizer(QuantFormat.FP8_E4M3)
def fake_quantize_fp8_activation(aq: ActivationQuant, x: torch.Tensor) -> torch.Tensor:
    """Quantize-dequantize activations [..., features] as compressed-tensors does when
    transformers runs the exported checkpoint: every step in x's dtype (the model's), with
    the scale in that dtype too (a static input_scale is loaded in the model's dtype), x /
    scale saturated to +-448 and rounded to nearest-even E4M3, then code * scale. Dynamic
    scales are amax / 448 per token (or per tensor), a zero scale replaced by the dtype's
    eps."""
    dtype = x.dtype
    if aq.dynamic:
        amax = x.abs().amax(dim=-1, keepdim=True) if aq.granularity is Granularity.TOKEN else x.abs().amax()  # [..., 1] or []
        scale = amax / FP8_E4M3_MAX
        scale = torch.where(scale == 0, torch.tensor(torch.finfo(dtype).eps, dtype=dtype, device=x.device), scale)
    else:
        scale = aq.scale.to(device=x.device, dtype=dtype)
    return fp8_round(x / scale).to(dtype) * scale
