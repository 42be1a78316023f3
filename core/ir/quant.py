"""Quantization annotations of the IR: a quantized weight describes itself.

These are data only. The math of each number format (choose parameters, quantize,
dequantize, pack) lives in `inferc.core.numerics`, keyed by `QuantFormat`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch


class QuantFormat(str, Enum):
    FP8_E4M3 = "fp8_e4m3"
    INT8 = "int8"
    INT4 = "int4"
    NVFP4 = "nvfp4"
    # llama.cpp block codecs: `data` holds the packed blocks, bit-exact to ggml's layout.
    GGUF_Q4_0 = "q4_0"
    GGUF_Q4_1 = "q4_1"
    GGUF_Q5_0 = "q5_0"
    GGUF_Q5_1 = "q5_1"
    GGUF_Q8_0 = "q8_0"
    GGUF_Q4_K = "q4_k"
    GGUF_Q5_K = "q5_k"
    GGUF_Q6_K = "q6_k"
    GGUF_F16 = "f16"
    GGUF_BF16 = "bf16"
    GGUF_F32 = "f32"


_GGUF_FORMATS = frozenset(f.value for f in QuantFormat if f.name.startswith("GGUF_"))


class Granularity(str, Enum):
    TENSOR = "tensor"
    CHANNEL = "channel"  # one scale per output row (weights)
    GROUP = "group"  # one scale per `group_size` inputs of a row
    TOKEN = "token"  # activations: one scale per token, computed at run time
    BLOCK = "block"  # codec-defined blocks (NVFP4 16, GGUF 32/256)


@dataclass
class QuantizedWeight:
    """A linear weight in a quantized number format.

    Shapes for a weight of logical shape [out, in]:
      data: codes, [out, in] (unpacked integer codes, or a float8 tensor), except for
            GGUF formats where it is the packed uint8 block bytes, [out, row_bytes].
      scale: [] per tensor, [out, 1] per channel, [out, in // group_size] per group/block.
      zero_point: same shape as scale (asymmetric integer formats) or None.
      global_scale: [] FP32 second-level scale (NVFP4), ModelOpt convention:
            dequantized = code * scale * global_scale.
      g_idx: [in] group index of each input column (GPTQ act-order), or None.

    Conventions per format (every exporter and dequantizer relies on them):
      FP8_E4M3: data float8_e4m3fn [out, in]; scale float32 [] or [out, 1];
            w = data.float() * scale.
      INT4 (bits=4): data int8 codes [out, in]. Symmetric: codes in [-8, 7],
            w = code * scale. Asymmetric: codes in [0, 15], zero_point int8 in [0, 15]
            with the shape of scale, w = (code - zero_point) * scale. scale float32
            [out, in // group_size] (GROUP) or [out, 1] (CHANNEL). Without g_idx input
            column c belongs to group c // group_size; with g_idx (int32 [in]) to g_idx[c].
      NVFP4 (bits=4): data uint8 E2M1 codes [out, in] in 0..15 (bit 3 the sign, bits
            0-2 index the magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6); scale float8_e4m3fn
            [out, in // 16]; global_scale float32 [] (ModelOpt's weight_scale_2, i.e.
            amax / (6 * 448)); w = e2m1(code) * scale.float() * global_scale.
            compressed-tensors stores the reciprocal as weight_global_scale.
      GGUF_*: data uint8 [out, row_bytes] holding ggml blocks exactly as llama.cpp
            lays them out; scale etc. unused (they live inside the blocks).
    """

    format: QuantFormat
    shape: tuple[int, int]
    data: torch.Tensor
    granularity: Granularity
    scale: torch.Tensor | None = None
    zero_point: torch.Tensor | None = None
    group_size: int | None = None
    global_scale: torch.Tensor | None = None
    g_idx: torch.Tensor | None = None
    symmetric: bool = True
    bits: int = 8
    algorithm: str = "rtn"
    meta: dict[str, Any] = field(default_factory=dict)

    def storage_bytes(self) -> int:
        """Bytes this weight takes when packed for export (codes plus scales)."""
        if self.format.value in _GGUF_FORMATS:  # data already holds the packed blocks
            codes = self.data.numel() * self.data.element_size()
        else:  # one unpacked code per weight, `bits` wide once packed
            codes = self.data.numel() * self.bits // 8
        extras = sum(t.numel() * t.element_size() for t in (self.scale, self.zero_point, self.global_scale) if t is not None)
        return codes + extras

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.storage_bytes() / (self.shape[0] * self.shape[1])


@dataclass
class ActivationQuant:
    """How the input activations of a linear are quantized at run time."""

    format: QuantFormat
    granularity: Granularity  # TENSOR (static or dynamic) or TOKEN (dynamic)
    dynamic: bool
    scale: torch.Tensor | None = None  # [] static per-tensor scale (amax / format max)
    # NVFP4 W4A4: per-16-block E4M3 scales are dynamic; this static FP32 per-tensor scale
    # (input amax / (6 * 448), ModelOpt's input_scale) comes from calibration.
    global_scale: torch.Tensor | None = None
