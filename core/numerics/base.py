"""The weight-format protocol and the registry that maps a QuantFormat to its math.

A weight format is an object with four operations; algorithms (RTN, AWQ, GPTQ) drive
any format through them, so "GPTQ into NVFP4 blocks" needs no new code:

    qparams = fmt.choose_qparams(w)            # scales (and zero points) for w
    qweight = fmt.quantize(w, qparams)         # codes -> QuantizedWeight
    w_hat   = fmt.dequantize(qweight)          # float32 [out, in]
    blobs   = fmt.pack(qweight)                # exporter-ready tensors

`choose_qparams` and `quantize` accept any [rows, cols] slice whose columns are whole
groups, which is what GPTQ's column-block updates need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from inferc.core.errors import UnsupportedError
from inferc.core.ir.quant import ActivationQuant, QuantFormat, QuantizedWeight


@dataclass
class QParams:
    """Quantization parameters for a [rows, cols] weight (or a slice of whole groups)."""

    scale: torch.Tensor  # [rows, cols // group] (or [rows, 1], or [])
    zero_point: torch.Tensor | None = None
    global_scale: torch.Tensor | None = None


class WeightFormat(Protocol):
    format: QuantFormat
    group_size: int | None  # None: per output channel
    rows_independent: bool  # each row's parameters come from that row alone (no tensor-wide scale)

    def choose_qparams(self, w: torch.Tensor, col_weights: torch.Tensor | None = None) -> QParams:
        """Parameters for w [rows, cols]; `col_weights` [cols] (the input energy of each
        column, diag(H) in GPTQ) may weight a searching format's error, others ignore it."""
        ...

    def quantize(self, w: torch.Tensor, qparams: QParams) -> QuantizedWeight: ...

    def dequantize(self, q: QuantizedWeight) -> torch.Tensor: ...

    def fake_quantize(self, w: torch.Tensor, qparams: QParams) -> torch.Tensor: ...

    def pack(self, q: QuantizedWeight) -> dict[str, torch.Tensor]: ...


_DEQUANTIZERS: dict[QuantFormat, object] = {}
_ACTIVATION_QUANTIZERS: dict[QuantFormat, object] = {}


def register_dequantizer(fmt: QuantFormat):
    """Register `fn(QuantizedWeight) -> float32 tensor` for a format; raises on duplicates."""

    def deco(fn):
        if fmt in _DEQUANTIZERS:
            raise ValueError(f"a dequantizer for {fmt.value} is already registered")
        _DEQUANTIZERS[fmt] = fn
        return fn

    return deco


def register_activation_quantizer(fmt: QuantFormat):
    """Register `fn(ActivationQuant, x) -> x_hat` (quantize-dequantize) for a format."""

    def deco(fn):
        if fmt in _ACTIVATION_QUANTIZERS:
            raise ValueError(f"an activation quantizer for {fmt.value} is already registered")
        _ACTIVATION_QUANTIZERS[fmt] = fn
        return fn

    return deco


def dequantize(q: QuantizedWeight) -> torch.Tensor:
    """Float32 [out, in] weight that a quantized weight stands for."""
    fn = _DEQUANTIZERS.get(q.format)
    if fn is None:
        raise UnsupportedError(f"no dequantizer for weight format '{q.format.value}'")
    return fn(q)  # type: ignore[operator]


def fake_quantize_activation(aq: ActivationQuant, x: torch.Tensor) -> torch.Tensor:
    fn = _ACTIVATION_QUANTIZERS.get(aq.format)
    if fn is None:
        raise UnsupportedError(f"no activation quantizer for format '{aq.format.value}'")
    return fn(aq, x)  # type: ignore[operator]
