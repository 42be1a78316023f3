"""llama.cpp (ggml) block codecs as vectorised numpy functions over whole tensors.

`quantize_<fmt>_blocks(x [rows, cols], importance=None) -> uint8 [rows, row_bytes]` and
`dequantize_<fmt>_blocks(data, shape) -> float32 [rows, cols]`. Importing this package
registers each codec as the dequantizer of its `QuantFormat.GGUF_*` member.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from inferc.core.ir.quant import QuantFormat, QuantizedWeight
from inferc.core.numerics.base import register_dequantizer
from inferc.core.numerics.ggml.kquants import (
    dequantize_q4_k_blocks,
    dequantize_q5_k_blocks,
    dequantize_q6_k_blocks,
    quantize_q4_k_blocks,
    quantize_q5_k_blocks,
    quantize_q6_k_blocks,
)
from inferc.core.numerics.ggml.legacy import (
    dequantize_q4_0_blocks,
    dequantize_q4_1_blocks,
    dequantize_q5_0_blocks,
    dequantize_q5_1_blocks,
    dequantize_q8_0_blocks,
    quantize_q4_0_blocks,
    quantize_q4_1_blocks,
    quantize_q5_0_blocks,
    quantize_q5_1_blocks,
    quantize_q8_0_blocks,
)


@dataclass(frozen=True)
class BlockCodec:
    format: QuantFormat
    block_size: int  # weights per block
    block_bytes: int
    quantize: Callable[..., torch.Tensor]
    dequantize: Callable[..., torch.Tensor]

    def row_bytes(self, cols: int) -> int:
        return cols // self.block_size * self.block_bytes

    def fits(self, cols: int) -> bool:
        return cols % self.block_size == 0


CODECS: dict[QuantFormat, BlockCodec] = {
    c.format: c
    for c in (
        BlockCodec(QuantFormat.GGUF_Q8_0, 32, 34, quantize_q8_0_blocks, dequantize_q8_0_blocks),
        BlockCodec(QuantFormat.GGUF_Q4_0, 32, 18, quantize_q4_0_blocks, dequantize_q4_0_blocks),
        BlockCodec(QuantFormat.GGUF_Q4_1, 32, 20, quantize_q4_1_blocks, dequantize_q4_1_blocks),
        BlockCodec(QuantFormat.GGUF_Q5_0, 32, 22, quantize_q5_0_blocks, dequantize_q5_0_blocks),
        BlockCodec(QuantFormat.GGUF_Q5_1, 32, 24, quantize_q5_1_blocks, dequantize_q5_1_blocks),
        BlockCodec(QuantFormat.GGUF_Q4_K, 256, 144, quantize_q4_k_blocks, dequantize_q4_k_blocks),
        BlockCodec(QuantFormat.GGUF_Q5_K, 256, 176, quantize_q5_k_blocks, dequantize_q5_k_blocks),
        BlockCodec(QuantFormat.GGUF_Q6_K, 256, 210, quantize_q6_k_blocks, dequantize_q6_k_blocks),
    )
}


def _make_dequantizer(codec: BlockCodec):
    def dequantize(q: QuantizedWeight) -> torch.Tensor:
        return codec.dequantize(q.data, tuple(q.shape))

    return dequantize


for _fmt, _codec in CODECS.items():
    register_dequantizer(_fmt)(_make_dequantizer(_codec))


@register_dequantizer(QuantFormat.GGUF_F16)
def _dequantize_f16(q: QuantizedWeight) -> torch.Tensor:
    return q.data.view(torch.float16).reshape(q.shape).float()


@register_dequantizer(QuantFormat.GGUF_BF16)
def _dequantize_bf16(q: QuantizedWeight) -> torch.Tensor:
    return q.data.view(torch.bfloat16).reshape(q.shape).float()


@register_dequantizer(QuantFormat.GGUF_F32)
def _dequantize_f32(q: QuantizedWeight) -> torch.Tensor:
    return q.data.view(torch.float32).reshape(q.shape)


__all__ = ["CODECS", "BlockCodec"] + [
    f"{verb}_{name}_blocks" for verb in ("quantize", "dequantize") for name in ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k")
]
