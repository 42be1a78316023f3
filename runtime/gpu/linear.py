"""Linears prepared once at load for the GPU kernels, by (weight format, device).

`prepare_linear` takes a graph linear's parts (one per stored tensor; a fused q|k|v or
gate|up has several) and returns one callable computing the whole fused product in one
launch. The packed layouts come from the number formats (`pack_int4_to_int32` is the
INT4 format's `weight_packed` layout; NVFP4's E2M1 codes go into the same nibble
layout); scales are put in the form the kernel reads (fp32, one per row or group).

| weight format | decode (<= 16 rows) | prefill |
| --- | --- | --- |
| none (bf16) | cuBLAS | cuBLAS |
| FP8 E4M3, W8A8 | `fp8_linear_rows` (Triton, activations quantized inside) | `torch._scaled_mm` (cuBLAS, row-wise scales) |
| INT4, W4A16 | `w4_matmul` skinny tiles | `w4_matmul` wide tiles |
| NVFP4, emulated W4A16 | `w4_matmul` (E2M1 decoded in the kernel) | same |

FP8 activations are quantized as the IR says (dynamic per token, dynamic per tensor or
static per tensor); an FP8 weight without an activation annotation runs W8A8 with
dynamic per-token activations. NVFP4 activations stay in bf16 (W4A16): an NVFP4 W4A4
annotation is not applied, and the backend says so (`notes`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from inferc.core.errors import UnsupportedError
from inferc.core.ir import ActivationQuant, Granularity, QuantFormat, QuantizedWeight
from inferc.core.numerics import concat_rows, dequantize
from inferc.core.numerics.fp8 import FP8_E4M3_MAX
from inferc.core.numerics.int4 import pack_int4_to_int32
from inferc.runtime.gpu import kernels

SKINNY_ROWS = 16  # up to this many rows a product takes the bandwidth-bound decode kernels


@dataclass
class DenseLinear:
    weight: torch.Tensor  # [N, K]
    bias: torch.Tensor | None
    kind = "bf16"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def weight_bytes(self) -> int:
        return self.weight.numel() * self.weight.element_size()


@dataclass
class FP8Linear:
    weight: torch.Tensor  # [N, K] float8_e4m3fn
    scale: torch.Tensor  # [N] fp32
    act: ActivationQuant | None
    bias: torch.Tensor | None
    act_scale: torch.Tensor | None = None  # a static activation scale [1] fp32, on the device
    kind = "fp8"

    def _tensor_scale(self, x: torch.Tensor) -> torch.Tensor | None:
        """The per-tensor activation scale [1] fp32, or None for dynamic per-token."""
        act = self.act
        if act is None or (act.dynamic and act.granularity is Granularity.TOKEN):
            return None
        if act.dynamic:
            return (x.abs().amax().float() / FP8_E4M3_MAX).clamp(min=1e-12).reshape(1)
        return self.act_scale

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        lead, k = x.shape[:-1], x.shape[-1]
        x2 = x.reshape(-1, k).contiguous()
        static = self._tensor_scale(x2)
        if x2.shape[0] <= SKINNY_ROWS:  # quantized inside the kernel: one launch
            y = kernels.fp8_linear_rows(x2, static, self.weight, self.scale)
        else:
            if static is None:
                xq, xs = kernels.fp8_quantize_rows(x2)
            else:
                xq = (x2.float() / static).clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(torch.float8_e4m3fn)
                xs = static.expand(x2.shape[0]).contiguous()
            y = torch._scaled_mm(xq, self.weight.t(), scale_a=xs[:, None], scale_b=self.scale[None, :], out_dtype=x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, -1)

    def weight_bytes(self) -> int:
        return self.weight.numel() + self.scale.numel() * 4


@dataclass
class W4Linear:
    packed: torch.Tensor  # int32 [N, K / 8]
    scale: torch.Tensor  # fp32 [N, K / group]
    zero: torch.Tensor | None  # fp32 [N, K / group] (INT4 with zero points)
    group: int
    e2m1: bool  # NVFP4 codes
    perm: torch.Tensor | None  # input columns in group order (act-order), or None
    bias: torch.Tensor | None

    @property
    def kind(self) -> str:
        return "nvfp4 (emulated W4A16)" if self.e2m1 else "int4"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        lead, k = x.shape[:-1], x.shape[-1]
        x2 = x.reshape(-1, k)
        if self.perm is not None:
            x2 = x2.index_select(1, self.perm)
        y = kernels.w4_matmul(x2.contiguous(), self.packed, self.scale, self.zero, self.group, self.e2m1)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, -1)

    def weight_bytes(self) -> int:
        extra = 0 if self.zero is None else self.zero.numel() * 4
        return self.packed.numel() * 4 + self.scale.numel() * 4 + extra


Prepared = DenseLinear | FP8Linear | W4Linear


def _group_order(q: QuantizedWeight) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Codes with columns in group order, and that order (None when already in it).
    GPTQ's act-order g_idx need not be monotone; any g_idx whose groups each hold
    `group_size` columns can be run by permuting the input the same way."""
    cols, g = q.shape[1], q.group_size or q.shape[1]
    if q.g_idx is None:
        return q.data, None
    g_idx = q.g_idx.long()
    natural = torch.arange(cols, device=g_idx.device) // g
    if torch.equal(g_idx, natural):
        return q.data, None
    if not bool((torch.bincount(g_idx, minlength=cols // g) == g).all()):
        raise UnsupportedError("an INT4 g_idx whose groups are not all group_size columns wide has no GPU kernel; "
                               "quantize with static groups or without act-order")
    perm = torch.argsort(g_idx, stable=True)
    return q.data[:, perm], perm


def _prepare_w4(q: QuantizedWeight, device: torch.device) -> W4Linear:
    if q.format is QuantFormat.NVFP4:  # the parts' global scales folded into fp32 block scales
        codes, perm = q.data, None
        scale = q.scale.float()
        group, zero = q.group_size or 16, None
        packed = pack_int4_to_int32(codes.to(torch.int16))
    else:
        codes, perm = _group_order(q)
        group = q.group_size or q.shape[1]
        scale = q.scale.float()
        zero = None if q.symmetric else q.zero_point.float()
        packed = pack_int4_to_int32(codes, offset=8 if q.symmetric else 0)
    to = lambda t: None if t is None else t.to(device).contiguous()  # noqa: E731
    return W4Linear(to(packed), to(scale), to(zero), group, q.format is QuantFormat.NVFP4, to(perm), None)


def _prepare_fp8(parts: list[QuantizedWeight], act: ActivationQuant | None, device: torch.device) -> FP8Linear:
    data = torch.cat([p.data for p in parts]).to(device).contiguous()
    scale = torch.cat([p.scale.float().reshape(-1).expand(p.shape[0]) for p in parts]).to(device).contiguous()
    static = act is not None and not act.dynamic
    act_scale = act.scale.float().reshape(1).to(device) if static else None
    return FP8Linear(data, scale, act, None, act_scale)


def prepare_linear(
    parts: list[QuantizedWeight | torch.Tensor],
    bias: torch.Tensor | None,
    act: ActivationQuant | None,
    device: torch.device,
    dtype: torch.dtype,
) -> Prepared:
    """One prepared product for a linear's parts (all quantized in one format, or all dense)."""
    quantized = [p for p in parts if isinstance(p, QuantizedWeight)]
    bias = None if bias is None else bias.to(device=device, dtype=dtype)
    if not quantized:
        w = torch.cat([p.to(device=device, dtype=dtype) for p in parts]) if len(parts) > 1 else parts[0].to(device=device, dtype=dtype)
        return DenseLinear(w.contiguous(), bias)
    if len(quantized) != len(parts):
        raise UnsupportedError("a fused linear mixes quantized and dense parts; quantize all of its parts or none")
    fmt = quantized[0].format
    if any(p.format is not fmt for p in quantized):
        raise UnsupportedError("a fused linear's parts are in different number formats; the GPU runs one format per product")
    if fmt is QuantFormat.FP8_E4M3:
        prepared: Prepared = _prepare_fp8(quantized, act, device)
    elif fmt is QuantFormat.NVFP4:
        folded = [dataclasses.replace(p, scale=p.scale.float() * p.global_scale.float(), global_scale=None) for p in quantized]
        prepared = _prepare_w4(dataclasses.replace(folded[0], data=torch.cat([p.data for p in folded]),
                                                   scale=torch.cat([p.scale for p in folded]),
                                                   shape=(sum(p.shape[0] for p in folded), folded[0].shape[1])), device)
    elif fmt is QuantFormat.INT4:
        prepared = _prepare_w4(concat_rows(quantized) if len(quantized) > 1 else quantized[0], device)
    else:
        raise UnsupportedError(f"the CUDA backend has no kernel for {fmt.value} weights; it runs FP8, INT4 and NVFP4 "
                               "(use the torch backend for other formats)")
    prepared.bias = bias
    return prepared


def reference_product(parts: list[QuantizedWeight], x: torch.Tensor, act: ActivationQuant | None = None) -> torch.Tensor:
    """The CPU-checkable reference of a prepared product: x (fake-quantized as the IR
    says) times the dequantized weight, in float32."""
    from inferc.core.numerics import fake_quantize_activation

    w = torch.cat([dequantize(p) for p in parts]).to(x.device)
    if act is not None:
        x = fake_quantize_activation(act, x)
    return x.float() @ w.T
