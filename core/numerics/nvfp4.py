"""NVFP4 as NVIDIA defines it: E2M1 codes, one FP8 E4M3 scale per block of 16 inputs,
one FP32 scale per tensor. Matches ModelOpt's NVFP4QTensor bit for bit:

    global_scale = amax(|W|) / (6 * 448)                     # weight_scale_2
    block_scale  = e4m3(clamp(amax_block / (6 * global_scale), 2^-9, 448))   # 0 -> 1.0 first
    code         = e2m1_round(W / (block_scale * global_scale))   # nearest, ties to even code
    W_hat        = e2m1(code) * block_scale * global_scale

A code is 4 bits: bit 3 the sign, bits 0-2 index E2M1_MAGNITUDES. `pack` puts two codes
in a byte, the even column in the low nibble (ModelOpt's and the kernels' order).

The global scale belongs to the whole tensor: `for_tensor(w)` fixes it, after which
`choose_qparams` / `quantize` work on any slice of whole blocks (GPTQ column blocks).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from inferc.core.ir.quant import ActivationQuant, Granularity, QuantFormat, QuantizedWeight
from inferc.core.numerics.base import QParams, register_activation_quantizer, register_dequantizer
from inferc.core.numerics.int4 import check_group_size, expand_groups
from inferc.core.numerics.packing import pack_nibbles, unpack_nibbles

NVFP4_BLOCK = 16
E2M1_MAX = 6.0
E4M3_MAX = 448.0
E4M3_MIN_SCALE = 2.0**-9  # smallest E4M3 subnormal; smaller block scales would become 0
E2M1_MAGNITUDES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
_MIDPOINTS = (E2M1_MAGNITUDES[1:] + E2M1_MAGNITUDES[:-1]) / 2  # [7]
# A magnitude exactly between two codes goes to the even code: at the midpoints whose
# lower neighbour is odd (0.75, 1.75, 3.5) that means rounding up.
_ROUND_UP_TIES = _MIDPOINTS[1::2]
E2M1_VALUES = torch.cat([E2M1_MAGNITUDES, -E2M1_MAGNITUDES])  # code -> value


def e2m1_codes(x: torch.Tensor) -> torch.Tensor:
    """Round float32 values (already divided by their scale) to E2M1 codes (uint8 0..15);
    saturates at +-6."""
    a = x.abs()
    idx = (a.unsqueeze(-1) > _MIDPOINTS).sum(-1)
    idx = idx + (a.unsqueeze(-1) == _ROUND_UP_TIES).any(-1).to(idx.dtype)
    return (idx + 8 * (x < 0).to(idx.dtype)).to(torch.uint8)


def e2m1_decode(codes: torch.Tensor) -> torch.Tensor:
    return E2M1_VALUES[codes.long()]


def global_scale_for(amax: torch.Tensor) -> torch.Tensor:
    """FP32 per-tensor scale amax / (6 * 448) (ModelOpt's weight_scale_2 / input_scale)."""
    return amax.float() / (E2M1_MAX * E4M3_MAX)


def block_scales(block_amax: torch.Tensor, global_scale: torch.Tensor) -> torch.Tensor:
    """float8_e4m3fn block scales for block amaxes (float32), given the tensor scale."""
    s = block_amax.float() / (E2M1_MAX * global_scale.float())
    s = torch.where(s == 0, torch.ones_like(s), s)
    return s.clamp(min=E4M3_MIN_SCALE, max=E4M3_MAX).to(torch.float8_e4m3fn)


@dataclass(frozen=True)
class NVFP4WeightFormat:
    """NVFP4 weights; `global_scale` (float) fixes the tensor scale for slice-wise use."""

    global_scale: float | None = None
    group_size: int | None = NVFP4_BLOCK
    format: QuantFormat = QuantFormat.NVFP4
    rows_independent = False  # the FP32 tensor scale comes from the whole weight

    def for_tensor(self, w: torch.Tensor) -> NVFP4WeightFormat:
        """This format with the global scale of the whole weight w fixed."""
        return dataclasses.replace(self, global_scale=float(global_scale_for(w.float().abs().amax())))

    def _global(self, w: torch.Tensor) -> torch.Tensor:
        if self.global_scale is None:
            return global_scale_for(w.float().abs().amax())
        return torch.tensor(self.global_scale, dtype=torch.float32)

    def choose_qparams(self, w: torch.Tensor, col_weights: torch.Tensor | None = None) -> QParams:
        rows, cols = w.shape
        check_group_size(cols, NVFP4_BLOCK, "an NVFP4 weight (blocks of 16)")
        gs = self._global(w)
        amax = w.float().abs().reshape(rows, cols // NVFP4_BLOCK, NVFP4_BLOCK).amax(-1)  # [rows, blocks]
        return QParams(scale=block_scales(amax, gs), global_scale=gs)

    def codes(self, w: torch.Tensor, qparams: QParams) -> torch.Tensor:
        denom = qparams.scale.float() * qparams.global_scale  # [rows, blocks]
        return e2m1_codes(w.float() / expand_groups(denom, w.shape[1]))

    def quantize(self, w: torch.Tensor, qparams: QParams) -> QuantizedWeight:
        rows, cols = w.shape
        return QuantizedWeight(
            format=self.format,
            shape=(rows, cols),
            data=self.codes(w, qparams),
            granularity=Granularity.BLOCK,
            scale=qparams.scale,
            group_size=NVFP4_BLOCK,
            global_scale=qparams.global_scale.float().reshape(()),
            bits=4,
        )

    def dequantize(self, q: QuantizedWeight) -> torch.Tensor:
        return dequantize_nvfp4(q)

    def fake_quantize(self, w: torch.Tensor, qparams: QParams) -> torch.Tensor:
        denom = expand_groups(qparams.scale.float() * qparams.global_scale, w.shape[1])
        return e2m1_decode(e2m1_codes(w.float() / denom)) * denom

    def pack(self, q: QuantizedWeight) -> dict[str, torch.Tensor]:
        """ModelOpt names: weight uint8 [out, in / 2] (even column in the low nibble),
        weight_scale float8_e4m3fn [out, in / 16], weight_scale_2 float32 []."""
        return {"weight": pack_e2m1(q.data), "weight_scale": q.scale, "weight_scale_2": q.global_scale.float()}


def pack_e2m1(codes: torch.Tensor) -> torch.Tensor:
    """E2M1 codes uint8 [..., cols] -> uint8 [..., cols / 2], even column in the low nibble."""
    return pack_nibbles(codes)


def unpack_e2m1(packed: torch.Tensor) -> torch.Tensor:
    return unpack_nibbles(packed)


@register_dequantizer(QuantFormat.NVFP4)
def dequantize_nvfp4(q: QuantizedWeight) -> torch.Tensor:
    scale = expand_groups(q.scale.float(), q.shape[1]) * q.global_scale.float()
    return e2m1_decode(q.data) * scale


@register_activation_quantizer(QuantFormat.NVFP4)
def fake_quantize_nvfp4_activation(aq: ActivationQuant, x: torch.Tensor) -> torch.Tensor:
    """W4A4: dynamic E4M3 scales per 16 inputs under the static FP32 tensor scale."""
    *lead, feat = x.shape
    xb = x.float().reshape(*lead, feat // NVFP4_BLOCK, NVFP4_BLOCK)
    gs = aq.global_scale.float()
    denom = (block_scales(xb.abs().amax(-1), gs).float() * gs).unsqueeze(-1)  # [..., blocks, 1]
    return (e2m1_decode(e2m1_codes(xb / denom)) * denom).reshape(x.shape).to(x.dtype)
