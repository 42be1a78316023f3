"""INT4 weights, symmetric or asymmetric, per group of input columns or per output channel.

Symmetric: codes in [-8, 7], w = code * scale, scale = amax / 7.5 (the compressed-tensors
choice: the full code range is used and +amax rounds to 7 within half a step).
Asymmetric: codes in [0, 15], w = (code - zero_point) * scale, scale = (max - min) / 15
with the range stretched to include 0 so zero is exact.

`quantize` and `fake_quantize` infer the group width from the parameters: a [rows, cols]
slice with scale [rows, g] is cut into g groups of cols // g columns, so GPTQ can
quantize one column (g = 1) with the parameters of the group it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from inferc.compiler.errors import RecipeError
from inferc.compiler.ir.quant import Granularity, QuantFormat, QuantizedWeight
from inferc.passes.numerics.base import QParams, register_dequantizer

INT4_SYM_MIN, INT4_SYM_MAX = -8, 7
INT4_ASYM_MAX = 15
_MIN_SCALE = 1e-12  # an all-zero group keeps a finite scale


def expand_groups(t: torch.Tensor, cols: int) -> torch.Tensor:
    """[rows, g] per-group values -> [rows, cols], each repeated over its cols // g columns."""
    if t.ndim == 0 or t.shape[-1] == cols:
        return t
    assert cols % t.shape[-1] == 0, (cols, t.shape)
    return t.repeat_interleave(cols // t.shape[-1], dim=-1)


def check_group_size(cols: int, group_size: int | None, what: str = "weight") -> None:
    if group_size is not None and (group_size <= 0 or cols % group_size):
        raise RecipeError(
            f"group size {group_size} does not divide the input dimension {cols} of {what}; "
            f"choose a group size that divides {cols} (e.g. group_size: auto picks the largest of 128/64/32 that does)"
        )


@dataclass(frozen=True)
class INT4WeightFormat:
    """INT4 codes with one scale (and zero point) per `group_size` inputs, or per row if None."""

    group_size: int | None = 128
    symmetric: bool = True
    format: QuantFormat = QuantFormat.INT4

    def _grouped(self, w: torch.Tensor) -> torch.Tensor:
        rows, cols = w.shape
        check_group_size(cols, self.group_size)
        g = self.group_size or cols
        return w.float().reshape(rows, cols // g, g)  # [rows, groups, g]

    def choose_qparams(self, w: torch.Tensor) -> QParams:
        wg = self._grouped(w)
        if self.symmetric:
            amax = wg.abs().amax(dim=-1)  # [rows, groups]
            return QParams(scale=(amax / 7.5).clamp(min=_MIN_SCALE))
        lo = wg.amin(dim=-1).clamp(max=0.0)
        hi = wg.amax(dim=-1).clamp(min=0.0)
        scale = ((hi - lo) / INT4_ASYM_MAX).clamp(min=_MIN_SCALE)
        zero = torch.round(-lo / scale).clamp(0, INT4_ASYM_MAX).to(torch.int8)
        return QParams(scale=scale, zero_point=zero)

    def codes(self, w: torch.Tensor, qparams: QParams) -> torch.Tensor:
        """Integer codes (int8 tensor) of w [rows, cols] under per-group qparams."""
        cols = w.shape[1]
        q = torch.round(w.float() / expand_groups(qparams.scale, cols))
        if self.symmetric:
            return q.clamp(INT4_SYM_MIN, INT4_SYM_MAX).to(torch.int8)
        zero = expand_groups(qparams.zero_point, cols).float()
        return (q + zero).clamp(0, INT4_ASYM_MAX).to(torch.int8)

    def _decode(self, codes: torch.Tensor, qparams: QParams) -> torch.Tensor:
        cols = codes.shape[1]
        q = codes.float()
        if not self.symmetric:
            q = q - expand_groups(qparams.zero_point, cols).float()
        return q * expand_groups(qparams.scale, cols)

    def quantize(self, w: torch.Tensor, qparams: QParams) -> QuantizedWeight:
        rows, cols = w.shape
        per_channel = self.group_size is None
        return QuantizedWeight(
            format=self.format,
            shape=(rows, cols),
            data=self.codes(w, qparams),
            granularity=Granularity.CHANNEL if per_channel else Granularity.GROUP,
            scale=qparams.scale.float(),
            zero_point=None if self.symmetric else qparams.zero_point,
            group_size=None if per_channel else cols // qparams.scale.shape[1],
            symmetric=self.symmetric,
            bits=4,
        )

    def dequantize(self, q: QuantizedWeight) -> torch.Tensor:
        return dequantize_int4(q)

    def fake_quantize(self, w: torch.Tensor, qparams: QParams) -> torch.Tensor:
        return self._decode(self.codes(w, qparams), qparams)

    def pack(self, q: QuantizedWeight) -> dict[str, torch.Tensor]:
        """weight_packed: int32 [out, in / 8], eight unsigned nibbles per word (symmetric
        codes offset by +8), column 8k+j in bits 4j..4j+3; plus scales, zero points, g_idx."""
        out: dict[str, torch.Tensor] = {"weight_packed": pack_int4_to_int32(q.data, offset=8 if q.symmetric else 0)}
        out["weight_scale"] = q.scale.float()
        if q.zero_point is not None:
            out["weight_zero_point"] = q.zero_point
        if q.g_idx is not None:
            out["weight_g_idx"] = q.g_idx.to(torch.int32)
        out["weight_shape"] = torch.tensor(q.shape, dtype=torch.int64)
        return out


def pack_int4_to_int32(codes: torch.Tensor, offset: int = 0) -> torch.Tensor:
    rows, cols = codes.shape
    if cols % 8:
        raise RecipeError(f"INT4 packing needs an input dimension divisible by 8, found {cols}")
    u = (codes.to(torch.int64) + offset).reshape(rows, cols // 8, 8)
    assert int(u.min()) >= 0 and int(u.max()) <= 15
    shifts = torch.arange(0, 32, 4, dtype=torch.int64)
    words = (u << shifts).sum(-1)  # [rows, cols // 8] in [0, 2^32)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


@register_dequantizer(QuantFormat.INT4)
def dequantize_int4(q: QuantizedWeight) -> torch.Tensor:
    cols = q.shape[1]
    if q.g_idx is not None:
        idx = q.g_idx.long()
        scale = q.scale.float()[:, idx]
        zero = q.zero_point[:, idx].float() if q.zero_point is not None else None
    else:
        scale = expand_groups(q.scale.float(), cols)
        zero = expand_groups(q.zero_point, cols).float() if q.zero_point is not None else None
    codes = q.data.float()
    return (codes if zero is None else codes - zero) * scale
