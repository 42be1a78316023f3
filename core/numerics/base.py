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

import dataclasses
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


def _per_row(t: torch.Tensor | None, rows: int) -> bool:
    return t is not None and t.dim() >= 1 and t.shape[0] == rows


def split_rows(q: QuantizedWeight, sizes: list[int]) -> list[QuantizedWeight]:
    """Cut a quantized weight [sum(sizes), in] into row blocks; row-wise tensors (codes,
    per-row scales and zero points) are sliced, tensor-wide ones (a per-tensor scale,
    NVFP4's global scale, g_idx) are shared."""
    rows = q.shape[0]
    assert sum(sizes) == rows, f"row blocks {sizes} do not add up to {rows}"
    out, r0 = [], 0
    for n in sizes:
        cut = lambda t: t[r0 : r0 + n].clone() if _per_row(t, rows) else t  # noqa: E731
        out.append(dataclasses.replace(q, shape=(n, q.shape[1]), data=q.data[r0 : r0 + n].clone(), scale=cut(q.scale),
                                       zero_point=cut(q.zero_point), meta=dict(q.meta)))
        r0 += n
    return out


def why_not_joinable(parts: list[QuantizedWeight]) -> str | None:
    """Why these quantized row blocks cannot run as one matrix (None: they can): the same
    format and layout, and equal tensor-wide scales."""
    first = parts[0]
    for p in parts[1:]:
        for field in ("format", "granularity", "group_size", "symmetric", "bits"):
            if getattr(p, field) != getattr(first, field):
                return f"{field} differs ({getattr(first, field)!s} vs {getattr(p, field)!s})"
        if p.shape[1] != first.shape[1]:
            return f"input widths differ ({first.shape[1]} vs {p.shape[1]})"
        for name in ("scale", "zero_point"):
            a, b = getattr(first, name), getattr(p, name)
            if (a is None) != (b is None):
                return f"{name} present in one part only"
            if a is not None and a.dim() == 0 and not torch.equal(a, b):
                return f"per-tensor {name}s differ ({float(a):.6g} vs {float(b):.6g})"
        a, b = first.global_scale, p.global_scale
        if (a is None) != (b is None) or (a is not None and not torch.equal(a, b)):
            return "global scales differ"
        a, b = first.g_idx, p.g_idx
        if (a is None) != (b is None) or (a is not None and not torch.equal(a, b)):
            return "act-order group indices differ"
    return None


def concat_rows(parts: list[QuantizedWeight]) -> QuantizedWeight:
    """One quantized weight from row blocks that `why_not_joinable` accepts."""
    why = why_not_joinable(parts)
    if why is not None:
        raise UnsupportedError(f"quantized parts cannot be joined into one matrix: {why}")
    first = parts[0]
    rows = sum(p.shape[0] for p in parts)
    cat = lambda name: (torch.cat([getattr(p, name) for p in parts])  # noqa: E731
                        if _per_row(getattr(first, name), first.shape[0]) else getattr(first, name))
    return dataclasses.replace(first, shape=(rows, first.shape[1]), data=torch.cat([p.data for p in parts]),
                               scale=cat("scale"), zero_point=cat("zero_point"), meta=dict(first.meta))


def quantize_joint(fmt: WeightFormat, ws: list[torch.Tensor], quantize) -> list[QuantizedWeight]:
    """Quantize the row blocks of one fused matrix: as one matrix when the format has a
    tensor-wide scale (so the parts share it), else block by block (the same result).
    `quantize(fmt, w)` rounds one matrix."""
    if len(ws) == 1 or fmt.rows_independent:
        return [quantize(fmt, w) for w in ws]
    return split_rows(quantize(fmt, torch.cat([w.float() for w in ws])), [w.shape[0] for w in ws])
