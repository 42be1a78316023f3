"""INT4 weights, symmetric or asymmetric, per group of input columns or per output channel.

Symmetric: codes in [-8, 7], w = code * scale. Two grids (`sym_range`):
- `full`: scale = amax / 7.5, the compressed-tensors choice: all 16 codes are used and
  +amax is clipped to 7 steps, half a step short (finer steps for RTN and GPTQ);
- `exact`: scale = amax / 7, as AutoAWQ and ModelOpt quantize: +-amax are codes +-7,
  nothing is clipped. AWQ takes it, since its clip search then chooses the clipping.
Asymmetric: codes in [0, 15], w = (code - zero_point) * scale, scale = (max - min) / 15
with the range stretched to include 0 so zero is exact.

The range comes from an observer: `minmax` takes it as it is; `mse` shrinks it by the
factor in (0.2, 1] that minimises each group's sum |w - q(w)|^2.4 (GPTQ's and
llm-compressor's MSE observer), trading clipped outliers for finer steps.

`quantize` and `fake_quantize` infer the group width from the parameters: a [rows, cols]
slice with scale [rows, g] is cut into g groups of cols // g columns, so GPTQ can
quantize one column (g = 1) with the parameters of the group it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from inferc.core.errors import RecipeError
from inferc.core.ir.quant import Granularity, QuantFormat, QuantizedWeight
from inferc.core.numerics.base import QParams, register_dequantizer

INT4_SYM_MIN, INT4_SYM_MAX = -8, 7
INT4_ASYM_MAX = 15
SYM_STEPS = {"full": 7.5, "exact": 7.0}  # symmetric scale = amax / steps
_MIN_SCALE = 1e-12  # an all-zero group keeps a finite scale
MSE_SHRINKS = torch.arange(100, 20, -1, dtype=torch.float32) / 100  # 1.00, 0.99, ... 0.21
MSE_NORM = 2.4


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
    observer: str = "minmax"  # or "mse"
    sym_range: str = "full"  # or "exact" (see the module docstring)
    format: QuantFormat = QuantFormat.INT4
    rows_independent = True

    def _grouped(self, w: torch.Tensor) -> torch.Tensor:
        rows, cols = w.shape
        check_group_size(cols, self.group_size)
        g = self.group_size or cols
        return w.float().reshape(rows, cols // g, g)  # [rows, groups, g]

    def choose_qparams(self, w: torch.Tensor, col_weights: torch.Tensor | None = None) -> QParams:
        """Per-group parameters of w [rows, cols]. With the mse observer, `col_weights`
        [cols] (GPTQ passes diag(H), the input energy per column) weight each column's
        error: the range is chosen for the output, not the weight."""
        wg = self._grouped(w)
        if self.symmetric:
            amax = wg.abs().amax(dim=-1) / SYM_STEPS[self.sym_range]  # [rows, groups]
            at = lambda shrink: QParams(scale=(amax * shrink).clamp(min=_MIN_SCALE))  # noqa: E731
        else:
            lo, hi = wg.amin(dim=-1).clamp(max=0.0), wg.amax(dim=-1).clamp(min=0.0)
            at = lambda shrink: self._asymmetric(lo * shrink, hi * shrink)  # noqa: E731
        best = at(1.0)  # the min-max range
        if self.observer != "mse":
            return best
        cw = None if col_weights is None else col_weights.float().reshape(1, *wg.shape[1:])
        best_err = self._group_error(wg, best, cw)
        for shrink in MSE_SHRINKS[1:]:
            trial = at(shrink)
            err = self._group_error(wg, trial, cw)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best = QParams(
                scale=torch.where(better, trial.scale, best.scale),
                zero_point=None if self.symmetric else torch.where(better, trial.zero_point, best.zero_point),
            )
        return best

    @staticmethod
    def _asymmetric(lo: torch.Tensor, hi: torch.Tensor) -> QParams:
        scale = ((hi - lo) / INT4_ASYM_MAX).clamp(min=_MIN_SCALE)
        zero = torch.round(-lo / scale).clamp(0, INT4_ASYM_MAX).to(torch.int8)
        return QParams(scale=scale, zero_point=zero)

    def _group_error(self, wg: torch.Tensor, qp: QParams, cw: torch.Tensor | None = None) -> torch.Tensor:
        """sum cw |w - q(w)|^MSE_NORM per group, [rows, groups], for wg [rows, groups, g]."""
        scale = qp.scale.unsqueeze(-1)
        q = torch.round(wg / scale)
        if self.symmetric:
            deq = q.clamp(INT4_SYM_MIN, INT4_SYM_MAX) * scale
        else:
            zero = qp.zero_point.unsqueeze(-1).float()
            deq = ((q + zero).clamp(0, INT4_ASYM_MAX) - zero) * scale
        err = (deq - wg).abs().pow(MSE_NORM)
        return (err if cw is None else err * cw).sum(dim=-1)

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
    shifts = torch.arange(0, 32, 4, dtype=torch.int64, device=codes.device)
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
