"""GPTQ (Frantar et al., 2022) as plain tensor kernels, driving any weight format.

    H = 2/n * sum x x^T  over calibration inputs x [in]       (accumulate_hessian)
    columns are quantized left to right (or in act-order, by decreasing diag(H)); each
    column's rounding error is spread over the columns not yet quantized through the
    upper Cholesky factor of H^-1, in lazy blocks of `block_size` columns.

The format object supplies the rounding: group parameters come from
`fmt.choose_qparams` on the (already error-updated) group columns, and each column is
rounded by `fmt.fake_quantize` with its group's parameters. Every choice gets diag(H),
the energy of each column's input: INT4's `mse` observer weights each column's rounding
error by it when it searches a group's range.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from inferc.core.errors import CalibrationError, UnsupportedError
from inferc.core.ir.quant import QuantFormat, QuantizedWeight
from inferc.core.numerics.base import QParams, WeightFormat

log = logging.getLogger("inferc.gptq")

MAX_DAMP_RETRIES = 4  # damp x10 each time: 0.01 -> 0.1 -> 1 -> 10 -> 100 (times mean diag)


class SingularHessianError(CalibrationError):
    """The Hessian stays non positive definite after every dampening retry."""


@dataclass
class HessianAccumulator:
    """Running 2/n * X^T X of a linear's inputs, [in, in] float32."""

    sum_xxt: torch.Tensor
    count: int = 0

    @classmethod
    def zeros(cls, features: int) -> HessianAccumulator:
        return cls(torch.zeros(features, features, dtype=torch.float32))

    @property
    def hessian(self) -> torch.Tensor:
        return self.sum_xxt * (2.0 / max(self.count, 1))


def accumulate_hessian(acc: HessianAccumulator, x: torch.Tensor) -> None:
    """Add inputs x [..., in] to the accumulator."""
    x = x.detach().reshape(-1, x.shape[-1]).float()  # [tokens, in]
    acc.sum_xxt.addmm_(x.T, x)
    acc.count += x.shape[0]


def inverse_cholesky(h: torch.Tensor, damp: float, retries: int = MAX_DAMP_RETRIES) -> tuple[torch.Tensor, float, int]:
    """Upper Cholesky factor of (H + d*mean(diag H)*I)^-1, raising d tenfold on failure.
    Returns (factor, damp used, retries needed); raises SingularHessianError."""
    mean_diag = h.diagonal().mean().item()
    eye = torch.eye(h.shape[0], dtype=h.dtype)
    d = damp
    for attempt in range(retries + 1):
        l, info = torch.linalg.cholesky_ex(h + d * mean_diag * eye)
        if info.item() == 0:
            hinv = torch.cholesky_inverse(l)
            u, info = torch.linalg.cholesky_ex(hinv, upper=True)
            if info.item() == 0 and torch.isfinite(u).all():
                return u, d, attempt
        log.info("Cholesky failed with dampening %.3g; retrying with %.3g", d, d * 10)
        d *= 10
    raise SingularHessianError(
        f"the Hessian is not positive definite even with dampening {d / 10:.3g} x mean(diag) "
        f"after {retries} retries; the calibration inputs are degenerate (too few tokens or all zero)"
    )


@contextmanager
def _one_thread():
    """The column loop is thousands of tiny ops: thread hand-offs cost more than they
    save (10x slower with 2 threads on a loaded 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cat_qparams(parts: list[QParams]) -> QParams:
    zps = [p.zero_point for p in parts]
    return QParams(
        scale=torch.cat([p.scale for p in parts], dim=1),
        zero_point=None if zps[0] is None else torch.cat(zps, dim=1),
        global_scale=parts[0].global_scale,
    )


def _static_groups(fmt: WeightFormat, w: torch.Tensor, hdiag: torch.Tensor) -> list[QParams]:
    """Every group's parameters from the weight as it is, chosen in one call and split."""
    qp = fmt.choose_qparams(w, hdiag)
    return [_rows_cols(qp, slice(None), slice(g, g + 1)) for g in range(qp.scale.shape[1])]


def _rows_cols(qp: QParams, rows: slice, cols: slice) -> QParams:
    zp = qp.zero_point
    return QParams(scale=qp.scale[rows, cols], zero_point=None if zp is None else zp[rows, cols], global_scale=qp.global_scale)


@dataclass
class _State:
    """GPTQ's working state: the (permuted) weight being updated and the group params."""

    w: torch.Tensor  # [rows, cols] float32, columns in processing order
    q: torch.Tensor  # [rows, cols] fake-quantized result
    hinv: torch.Tensor  # [cols, cols] upper Cholesky factor of H^-1
    perm: torch.Tensor | None  # processing order -> original column
    static: list[QParams] | None  # per original group, chosen before any update
    groups: list[QParams]  # per processing-order group (dynamic groups)
    channel: QParams | None  # per-channel formats
    hdiag: torch.Tensor  # diag(H) in processing order: the columns' input energy


def _qparams_for(fmt: WeightFormat, st: _State, w1: torch.Tensor, i1: int, i: int) -> QParams:
    """Parameters of the group of processing column i1 + i (w1 is the live block)."""
    col = i1 + i
    if st.channel is not None:
        return st.channel
    gs = fmt.group_size
    if st.static is not None:
        orig = col if st.perm is None else int(st.perm[col])
        return st.static[orig // gs]
    if col % gs == 0:
        live = torch.cat([w1[:, i:], st.w[:, i1 + w1.shape[1] :]], dim=1)[:, :gs]
        st.groups.append(fmt.choose_qparams(live, st.hdiag[col : col + gs]))
    return st.groups[-1]


def _quantize_block(fmt: WeightFormat, st: _State, i1: int, i2: int) -> torch.Tensor:
    """Quantize columns [i1, i2) with in-block error feedback; returns the scaled errors."""
    w1 = st.w[:, i1:i2].clone()
    hinv1 = st.hinv[i1:i2, i1:i2]
    err1 = torch.zeros_like(w1)
    for i in range(i2 - i1):
        w = w1[:, i : i + 1]  # [rows, 1]
        q = fmt.fake_quantize(w, _qparams_for(fmt, st, w1, i1, i))
        st.q[:, i1 + i] = q[:, 0]
        e = (w - q) / hinv1[i, i]  # [rows, 1]
        w1[:, i:] -= e @ hinv1[i : i + 1, i:]
        err1[:, i] = e[:, 0]
    return err1


def gptq_quantize(
    w: torch.Tensor,
    h: torch.Tensor,
    fmt: WeightFormat,
    block_size: int = 128,
    damp: float = 0.01,
    act_order: bool = False,
    static_groups: bool = False,
) -> tuple[QuantizedWeight, float]:
    """GPTQ one weight w [out, in] under Hessian h [in, in]; returns (weight, loss).

    `loss` is sum (w - q)^2 / (2 [H^-1]_cc^2), GPTQ's proxy of the output error.
    `meta` of the result records `damp` used and `cholesky_retries`."""
    return gptq_quantize_shared([w], h, fmt, block_size, damp, act_order, static_groups)[0]


def gptq_quantize_shared(
    ws: list[torch.Tensor],
    h: torch.Tensor,
    fmt: WeightFormat,
    block_size: int = 128,
    damp: float = 0.01,
    act_order: bool = False,
    static_groups: bool = False,
    joint: bool = False,
) -> list[tuple[QuantizedWeight, float]]:
    """GPTQ several weights [out_k, in] that read the same input (q/k/v, gate/up), under
    its Hessian h [in, in]. GPTQ treats rows independently, so weights whose format has
    no tensor-wide scale are stacked and run as one, and each result is what
    `gptq_quantize` gives that weight alone; the rest (NVFP4, per-tensor FP8) run one by
    one, unless `joint` (the parts of one fused matrix), where they share that scale."""
    if len(ws) > 1 and not fmt.rows_independent and not joint:
        return [r for w in ws for r in gptq_quantize_shared([w], h, fmt, block_size, damp, act_order, static_groups)]
    bind = getattr(fmt, "for_tensor", None)  # formats with a tensor-wide scale (NVFP4) fix it first
    fmt = bind(ws[0]) if bind is not None else fmt
    if act_order and fmt.group_size and not static_groups and fmt.format is not QuantFormat.INT4:
        raise UnsupportedError(f"{fmt.format.value} cannot store a g_idx; use act_order with static_groups: true")
    w = torch.cat([x.float() for x in ws]) if len(ws) > 1 else ws[0].float().clone()
    h = h.float().clone()
    dead = h.diagonal() == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    static = _static_groups(fmt, w, h.diagonal()) if (fmt.group_size and static_groups) else None
    channel = fmt.choose_qparams(w) if not fmt.group_size else None
    perm = None
    if act_order:
        perm = torch.argsort(h.diagonal(), descending=True)
        w, h = w[:, perm], h[perm][:, perm]
    hinv, damp_used, retries = inverse_cholesky(h, damp)
    st = _State(w=w, q=torch.zeros_like(w), hinv=hinv, perm=perm, static=static, groups=[], channel=channel,
                hdiag=h.diagonal().clone())
    loss = torch.zeros(w.shape[0], dtype=torch.float64)  # per row
    cols = w.shape[1]
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        with _one_thread():
            err1 = _quantize_block(fmt, st, i1, i2)
        loss += err1.double().pow(2).sum(dim=1) / 2
        st.w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    results, r0 = [], 0
    for x in ws:
        rows = slice(r0, r0 + x.shape[0])
        r0 = rows.stop
        qw = _assemble(fmt, st if len(ws) == 1 else _rows_of(st, rows))
        qw.algorithm = "gptq"
        qw.meta.update(damp=damp_used, cholesky_retries=retries, act_order=act_order, static_groups=static is not None)
        results.append((qw, float(loss[rows].sum())))
    return results


def _rows_of(st: _State, rows: slice) -> _State:
    """The state of some rows: what GPTQ of those rows alone would have ended with
    (row-wise formats only: a tensor-wide scale has no rows to cut)."""
    part = lambda qp: _rows_cols(qp, rows, slice(None))  # noqa: E731
    return _State(w=st.w[rows], q=st.q[rows], hinv=st.hinv, perm=st.perm,
                  static=None if st.static is None else [part(g) for g in st.static],
                  groups=[part(g) for g in st.groups], channel=None if st.channel is None else part(st.channel),
                  hdiag=st.hdiag)


def _assemble(fmt: WeightFormat, st: _State) -> QuantizedWeight:
    """Codes of the fake-quantized result, back in original column order."""
    inv = None if st.perm is None else torch.argsort(st.perm)
    if st.channel is not None:
        return fmt.quantize(st.q if inv is None else st.q[:, inv], st.channel)
    if st.static is not None:
        return fmt.quantize(st.q if inv is None else st.q[:, inv], _cat_qparams(st.static))
    qw = fmt.quantize(st.q, _cat_qparams(st.groups))
    if inv is not None:
        qw.data = qw.data[:, inv]
        qw.g_idx = (torch.arange(st.q.shape[1]) // fmt.group_size)[inv].to(torch.int32)
    return qw

