"""Triton kernels of the GPU runtime: quantized matrix products that read packed weights
and dequantize inside the product, and the small fused steps of a decoder layer.

- `w4_matmul`: y = x @ dequant(W).T for 4-bit codes packed eight to an int32 along the
  input dimension (column 8k+j in bits 4j..4j+3, the INT4 format's `weight_packed`
  layout). Codes are INT4 (symmetric, stored +8, or with zero points) or NVFP4's E2M1
  (decoded in the kernel; emulated W4A16, Hopper has no FP4 tensor cores). One scale per
  `group` inputs of a row (fp32, NVFP4's block scale times its global scale).
- `fp8_linear_rows`: W8A8 for the decode path (<= 16 rows): the bf16 rows are quantized
  exactly as the FP8 format's fake quantizer does (amax / 448 per row, IEEE division,
  round to nearest E4M3, saturating), then y = (xq @ wq.T) * x_scale * w_scale: one row
  in one launch (quantized inside a GEMV with fp32 FMAs), more rows quantized first and
  multiplied on the FP8 tensor cores. Prefill goes through `torch._scaled_mm` (cuBLAS).
- `fp8_quantize_rows`: dynamic per-row E4M3 quantization of activations in one pass
  (prefill).
- `rms_norm`: (x + skip) / rms * (offset + w) in one pass, writing the sum too.
- `silu_mul`: act(gate) * up of a packed gate|up value.
- `rope_`: rotary embedding of the q and k heads of a packed q|k|v value, in place.

Every kernel has a torch reference in `inferc.runtime.gpu.reference`; the GPU tests
compare them on random inputs.
"""

from __future__ import annotations

import os

import torch

from inferc.core.errors import MissingDependencyError

try:
    import triton
    import triton.language as tl
except ImportError as exc:  # pragma: no cover - exercised where triton is absent
    raise MissingDependencyError("the GPU runtime needs Triton; install it with: pip install triton") from exc


def _pick_block_k(k: int, group: int, tiles: tuple[int, ...] = (128, 64, 32, 16)) -> int:
    """The largest K tile of `tiles` that divides K and nests with the group width."""
    for bk in tiles:
        if k % bk == 0 and (group % bk == 0 or bk % group == 0):
            return bk
    raise ValueError(f"input dimension {k} has no K tile compatible with group {group}")


_SKINNY_CONFIGS = [
    triton.Config({"BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bn, w, s in ((16, 4, 4), (32, 4, 4), (64, 4, 3), (32, 8, 5), (64, 8, 4))
]
if os.environ.get("TRITON_INTERPRET") == "1":  # the CPU interpreter cannot time configs
    _SKINNY_CONFIGS = _SKINNY_CONFIGS[1:2]
_WIDE_CONFIGS = [
    triton.Config({"BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bn, w, s in ((64, 4, 3), (128, 4, 3), (128, 8, 3))
][: 1 if os.environ.get("TRITON_INTERPRET") == "1" else None]


@triton.jit
def _nib_f32(nib):
    """Nibbles (int32, 0..15) as float32 without the int-to-float conversion (a quarter-rate
    instruction that bounds a GEMV): the bits of 2^23 + nib, minus 2^23."""
    return (nib | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0


@triton.jit
def _w4_matmul_kernel(
    x_ptr, w_ptr, s_ptr, z_ptr, y_ptr, M, N, K: tl.constexpr, stride_xm, stride_wn, stride_sn, stride_ym,
    GROUP: tl.constexpr, HAS_ZERO: tl.constexpr, E2M1: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_n, pid_m = tl.program_id(0), tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    rw = tl.arange(0, BLOCK_K // 8)
    SUB: tl.constexpr = GROUP if GROUP < BLOCK_K else BLOCK_K  # columns sharing one scale
    NSUB: tl.constexpr = BLOCK_K // SUB
    rs = tl.arange(0, NSUB)
    shifts = tl.arange(0, 8) * 4
    mask_m, mask_n = rm[:, None] < M, rn[:, None] < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        x = tl.load(x_ptr + rm[:, None] * stride_xm + (k0 + rk)[None, :], mask=mask_m, other=0.0)
        words = tl.load(w_ptr + rn[:, None] * stride_wn + (k0 // 8 + rw)[None, :], mask=mask_n, other=0)
        nib = (words[:, :, None] >> shifts[None, None, :]) & 0xF  # [BN, BK/8, 8]
        nib = tl.reshape(nib, (BLOCK_N, NSUB, SUB))
        sidx = (k0 + rs * SUB) // GROUP
        scale = tl.load(s_ptr + rn[:, None] * stride_sn + sidx[None, :], mask=mask_n, other=0.0)  # [BN, NSUB]
        if E2M1:  # bit 3 the sign; magnitudes 0, .5, 1, 1.5, 2, 3, 4, 6
            mag = nib & 7
            e = mag >> 1
            frac = (mag & 1).to(tl.float32) * 0.5
            pow2 = (1 << tl.maximum(e - 1, 0)).to(tl.float32)
            val = tl.where(e == 0, frac, (1.0 + frac) * pow2)
            val = tl.where((nib & 8) != 0, -val, val)
        elif HAS_ZERO:
            zero = tl.load(z_ptr + rn[:, None] * stride_sn + sidx[None, :], mask=mask_n, other=0.0)
            val = _nib_f32(nib) - zero[:, :, None]
        else:
            val = _nib_f32(nib) - 8.0
        w = tl.reshape(val * scale[:, :, None], (BLOCK_N, BLOCK_K)).to(x.dtype)
        acc += tl.dot(x, tl.trans(w))
    tl.store(y_ptr + rm[:, None] * stride_ym + rn[None, :], acc.to(y_ptr.dtype.element_ty), mask=mask_m & (rn[None, :] < N))


@triton.jit
def _e2m1_or_int(nib, zero, HAS_ZERO: tl.constexpr, E2M1: tl.constexpr):
    """Code nibbles -> values before the scale: E2M1, code - zero or code - 8."""
    if E2M1:  # bit 3 the sign; magnitudes 0, .5, 1, 1.5, 2, 3, 4, 6
        mag = nib & 7
        e = mag >> 1
        frac = (mag & 1).to(tl.float32) * 0.5
        val = tl.where(e == 0, frac, (1.0 + frac) * (1 << tl.maximum(e - 1, 0)).to(tl.float32))
        return tl.where((nib & 8) != 0, -val, val)
    elif HAS_ZERO:
        return _nib_f32(nib) - zero
    else:
        return _nib_f32(nib) - 8.0


@triton.jit
def _w4_gemv_kernel(
    x_ptr, w_ptr, s_ptr, z_ptr, y_ptr, N, K: tl.constexpr, stride_wn, stride_sn,
    GROUP: tl.constexpr, HAS_ZERO: tl.constexpr, E2M1: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One input row: each program reads BLOCK_N packed rows once, word by word (no
    reshapes): nibble j of word i is column 8i + j, multiplied by x[8i + j]."""
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    ri = tl.arange(0, BLOCK_K // 8)
    mask_n = rn[:, None] < N
    acc = tl.zeros((BLOCK_N, BLOCK_K // 8), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        words = tl.load(w_ptr + rn[:, None] * stride_wn + (k0 // 8 + ri)[None, :], mask=mask_n, other=0)
        if GROUP >= BLOCK_K:  # one scale (and zero) per row for the whole tile
            scale = tl.load(s_ptr + rn * stride_sn + k0 // GROUP, mask=rn < N, other=0.0)[:, None]
            zero = tl.load(z_ptr + rn * stride_sn + k0 // GROUP, mask=rn < N, other=0.0)[:, None] if HAS_ZERO else 0.0
        else:  # a scale per word (groups of 8 columns or more)
            sidx = (k0 + ri * 8) // GROUP
            scale = tl.load(s_ptr + rn[:, None] * stride_sn + sidx[None, :], mask=mask_n, other=0.0)
            zero = tl.load(z_ptr + rn[:, None] * stride_sn + sidx[None, :], mask=mask_n, other=0.0) if HAS_ZERO else 0.0
        part = tl.zeros((BLOCK_N, BLOCK_K // 8), dtype=tl.float32)
        for j in tl.static_range(8):
            xj = tl.load(x_ptr + k0 + ri * 8 + j).to(tl.float32)
            part += _e2m1_or_int((words >> (4 * j)) & 0xF, zero, HAS_ZERO, E2M1) * xj[None, :]
        acc += part * scale
    tl.store(y_ptr + rn, tl.sum(acc, axis=1).to(y_ptr.dtype.element_ty), mask=rn < N)


@triton.jit
def _int4_gemv_kernel(
    x_ptr, w_ptr, s_ptr, z_ptr, y_ptr, N, K: tl.constexpr, stride_wn, stride_sn,
    GROUP: tl.constexpr, HAS_ZERO: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One input row times INT4 codes, group by group: per group one scale (and zero) per
    row, the codes' sum sum_j code_j x_j taken with code - zero folded out as
    zero * sum_j x_j (symmetric codes are stored +8, so zero = 8), and the nibbles made
    floats by `_nib_f32`. The accumulator keeps one lane per packed word; one reduction
    at the end."""
    SUB: tl.constexpr = GROUP if GROUP < BLOCK_K else BLOCK_K  # columns under one scale in a tile
    W: tl.constexpr = SUB // 8
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    ri = tl.arange(0, W)
    mask_n = rn[:, None] < N
    acc = tl.zeros((BLOCK_N, W), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        for g in tl.static_range(BLOCK_K // SUB):
            kk = k0 + g * SUB
            words = tl.load(w_ptr + rn[:, None] * stride_wn + (kk // 8 + ri)[None, :], mask=mask_n, other=0)
            scale = tl.load(s_ptr + rn * stride_sn + kk // GROUP, mask=rn < N, other=0.0)
            if HAS_ZERO:
                zero = tl.load(z_ptr + rn * stride_sn + kk // GROUP, mask=rn < N, other=0.0)
            else:
                zero = tl.full((BLOCK_N,), 8.0, tl.float32)
            part = tl.zeros((BLOCK_N, W), dtype=tl.float32)
            xsum = tl.zeros((W,), dtype=tl.float32)
            for j in tl.static_range(8):
                xj = tl.load(x_ptr + kk + ri * 8 + j).to(tl.float32)
                xsum += xj
                part += _nib_f32((words >> (4 * j)) & 0xF) * xj[None, :]
            acc += part * scale[:, None] - (zero * scale)[:, None] * xsum[None, :]
    tl.store(y_ptr + rn, tl.sum(acc, axis=1).to(y_ptr.dtype.element_ty), mask=rn < N)


_GEMV_CONFIGS = [
    triton.Config({"BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bn, w, s in ((8, 2, 4), (16, 4, 4), (32, 4, 3), (16, 2, 6), (32, 8, 4))
][1:2 if os.environ.get("TRITON_INTERPRET") == "1" else None]
_w4_gemv = triton.autotune(configs=_GEMV_CONFIGS, key=["N", "K", "BLOCK_K", "GROUP"])(_w4_gemv_kernel)
_INT4_GEMV_CONFIGS = [
    triton.Config({"BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bn, w, s in ((8, 4, 3), (16, 4, 3), (4, 2, 4), (8, 2, 4), (16, 8, 3), (32, 8, 2))
][1:2 if os.environ.get("TRITON_INTERPRET") == "1" else None]
_int4_gemv = triton.autotune(configs=_INT4_GEMV_CONFIGS, key=["N", "K", "BLOCK_K", "GROUP"])(_int4_gemv_kernel)


_w4_skinny = triton.autotune(configs=_SKINNY_CONFIGS, key=["N", "K", "BLOCK_K", "GROUP"])(_w4_matmul_kernel)
_w4_wide = triton.autotune(configs=_WIDE_CONFIGS, key=["N", "K", "BLOCK_K", "GROUP"])(_w4_matmul_kernel)


def w4_matmul(x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None,
              group: int, e2m1: bool = False) -> torch.Tensor:
    """x [M, K] (bf16/fp16) times the 4-bit weight [N, K] packed as int32 [N, K/8]."""
    m, k = x.shape
    n = packed.shape[0]
    assert x.stride(1) == 1 and packed.shape[1] * 8 == k and scale.shape == (n, k // group)
    y = torch.empty(m, n, device=x.device, dtype=x.dtype)
    bk = _pick_block_k(k, group)
    if m == 1 and not e2m1 and group >= 16 and group & (group - 1) == 0:
        grid1 = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)  # noqa: E731
        _int4_gemv[grid1](x, packed, scale, zero if zero is not None else scale, y, n, k, packed.stride(0),
                          scale.stride(0), GROUP=group, HAS_ZERO=zero is not None,
                          BLOCK_K=_pick_block_k(k, group, (512, 256, 128, 64, 32, 16)))
        return y
    if m == 1 and group >= 8:
        grid1 = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)  # noqa: E731
        _w4_gemv[grid1](x, packed, scale, zero if zero is not None else scale, y, n, k, packed.stride(0), scale.stride(0),
                        GROUP=group, HAS_ZERO=zero is not None, E2M1=e2m1, BLOCK_K=_pick_block_k(k, group, (256, 128, 64, 32, 16)))
        return y
    skinny = m <= 16
    bm = 16 if skinny else 64
    fn = _w4_skinny if skinny else _w4_wide
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]), triton.cdiv(m, bm))  # noqa: E731
    fn[grid](x, packed, scale, zero if zero is not None else scale, y, m, n, k, x.stride(0), packed.stride(0),
             scale.stride(0), y.stride(0), GROUP=group, HAS_ZERO=zero is not None, E2M1=e2m1, BLOCK_M=bm, BLOCK_K=bk)
    return y


@triton.jit
def _fp8_row_scales(x_ptr, xs_ptr, rm, M, K: tl.constexpr, stride_xm, STATIC: tl.constexpr, FP8_MAX: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """Activation scales [BLOCK_M]: amax(row) / 448 (dynamic per token, as the FP8 format's
    fake quantizer computes it) or the static scale."""
    if STATIC:
        return tl.load(xs_ptr + rm * 0)
    rk = tl.arange(0, BLOCK_K)
    amax = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        x = tl.load(x_ptr + rm[:, None] * stride_xm + (k0 + rk)[None, :], mask=rm[:, None] < M, other=0.0)
        amax = tl.maximum(amax, tl.abs(x.to(tl.float32)))
    return tl.maximum(tl.max(amax, axis=1) / FP8_MAX, 1e-12)


@triton.jit
def _fp8_codes(x, scale, FP8_MAX: tl.constexpr):
    """E4M3 codes of x / scale: IEEE division and round-to-nearest, saturating (fp8_round)."""
    return tl.clamp(tl.math.div_rn(x.to(tl.float32), scale), -FP8_MAX, FP8_MAX).to(tl.float8e4nv)


@triton.jit
def _fp8_gemv_kernel(
    x_ptr, xs_ptr, w_ptr, ws_ptr, y_ptr, N, K: tl.constexpr, stride_wn, STATIC: tl.constexpr, FP8_MAX: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One bf16 row quantized on the fly (every program reads the row's amax from L2; no
    separate quantization launch), times BLOCK_N rows of E4M3 weights, fp32 FMAs."""
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    zero = tl.arange(0, 1)
    scale = tl.sum(_fp8_row_scales(x_ptr, xs_ptr, zero, 1, K, 0, STATIC, FP8_MAX, 1, BLOCK_K), axis=0)
    mask_n = rn[:, None] < N
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        xq = _fp8_codes(tl.load(x_ptr + k0 + rk), scale, FP8_MAX).to(tl.float32)
        w = tl.load(w_ptr + rn[:, None] * stride_wn + (k0 + rk)[None, :], mask=mask_n, other=0.0)
        acc += w.to(tl.float32) * xq[None, :]
    ws = tl.load(ws_ptr + rn, mask=rn < N, other=0.0)
    tl.store(y_ptr + rn, (tl.sum(acc, axis=1) * scale * ws).to(y_ptr.dtype.element_ty), mask=rn < N)


_FP8_GEMV_CONFIGS = [
    triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
    for bn, bk, w, s in ((8, 512, 4, 3), (16, 256, 4, 4), (4, 1024, 4, 3), (8, 1024, 8, 3), (16, 512, 8, 3), (32, 256, 8, 3))
][1:2 if os.environ.get("TRITON_INTERPRET") == "1" else None]
_fp8_gemv = triton.autotune(configs=_FP8_GEMV_CONFIGS, key=["N", "K"])(_fp8_gemv_kernel)


@triton.autotune(configs=_SKINNY_CONFIGS, key=["N", "K"])
@triton.jit
def _fp8_matmul_kernel(
    x_ptr, xs_ptr, w_ptr, ws_ptr, y_ptr, M, N, K: tl.constexpr, stride_xm, stride_wn, stride_ym,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """A few rows of E4M3 codes (with per-row scales xs), times E4M3 weights on the FP8
    tensor cores. Rows are quantized beforehand (`fp8_quantize_rows`): inside, every
    program would re-read all rows for their amax (16 x K each, too much for L2)."""
    pid_n, pid_m = tl.program_id(0), tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    mask_m, mask_n = rm[:, None] < M, rn[:, None] < N
    xs = tl.load(xs_ptr + rm, mask=rm < M, other=0.0)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        x = tl.load(x_ptr + rm[:, None] * stride_xm + (k0 + rk)[None, :], mask=mask_m, other=0.0)
        w = tl.load(w_ptr + rn[:, None] * stride_wn + (k0 + rk)[None, :], mask=mask_n, other=0.0)
        acc += tl.dot(x, tl.trans(w))
    ws = tl.load(ws_ptr + rn, mask=rn < N, other=0.0)
    y = acc * xs[:, None] * ws[None, :]
    tl.store(y_ptr + rm[:, None] * stride_ym + rn[None, :], y.to(y_ptr.dtype.element_ty), mask=mask_m & (rn[None, :] < N))


def fp8_linear_rows(x: torch.Tensor, static_scale: torch.Tensor | None, wq: torch.Tensor, w_scale: torch.Tensor) -> torch.Tensor:
    """W8A8 for a few rows: x [M, K] (bf16) quantized to E4M3 per row (amax / 448) or by
    the static scale [1] fp32 (inside the GEMV for one row: one launch), times wq [N, K] e4m3
    with per-row scales w_scale [N]; y = (xq @ wq.T) * x_scale * w_scale, out in x's dtype."""
    m, k = x.shape
    n = wq.shape[0]
    assert x.stride(1) == 1 and wq.is_contiguous()
    y = torch.empty(m, n, device=x.device, dtype=x.dtype)
    static = static_scale is not None
    xs = static_scale if static else w_scale  # a placeholder pointer when dynamic
    if m == 1 and k % 1024 == 0:
        grid1 = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)  # noqa: E731
        _fp8_gemv[grid1](x, xs, wq, w_scale, y, n, k, wq.stride(0), STATIC=static, FP8_MAX=448.0)
        return y
    if static:
        xq = (x.float() / static_scale).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
        xs = static_scale.expand(m).contiguous()
    else:
        xq, xs = fp8_quantize_rows(x)
    bk = _pick_block_k(k, k)
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]), triton.cdiv(m, 16))  # noqa: E731
    _fp8_matmul_kernel[grid](xq, xs, wq, w_scale, y, m, n, k, xq.stride(0), wq.stride(0), y.stride(0),
                             BLOCK_M=16, BLOCK_K=bk)
    return y


@triton.jit
def _fp8_quantize_rows_kernel(x_ptr, q_ptr, s_ptr, K, stride_x, stride_q, FP8_MAX: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + row * stride_x + cols, mask=cols < K, other=0.0).to(tl.float32)
    scale = tl.maximum(tl.max(tl.abs(x), axis=0) / FP8_MAX, 1e-12)
    tl.store(q_ptr + row * stride_q + cols, _fp8_codes(x, scale, FP8_MAX), mask=cols < K)
    tl.store(s_ptr + row, scale)


def fp8_quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, K] -> (E4M3 codes [M, K], fp32 scales [M]) with scale = amax(row) / 448."""
    m, k = x.shape
    q = torch.empty(m, k, device=x.device, dtype=torch.float8_e4m3fn)
    s = torch.empty(m, device=x.device, dtype=torch.float32)
    _fp8_quantize_rows_kernel[(m,)](x, q, s, k, x.stride(0), q.stride(0), FP8_MAX=448.0, BLOCK=triton.next_power_of_2(k))
    return q, s


@triton.jit
def _rms_norm_kernel(x_ptr, skip_ptr, w_ptr, out_ptr, sum_ptr, K, eps, offset, HAS_SKIP: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < K
    x = tl.load(x_ptr + row * K + cols, mask=mask, other=0.0)
    if HAS_SKIP:
        x = x + tl.load(skip_ptr + row * K + cols, mask=mask, other=0.0)  # the sum in the stream's dtype
        tl.store(sum_ptr + row * K + cols, x, mask=mask)
    xf = x.to(tl.float32)
    inv = tl.rsqrt(tl.sum(xf * xf, axis=0) / K + eps)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * K + cols, (xf * inv * (offset + w)).to(out_ptr.dtype.element_ty), mask=mask)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, offset: float = 0.0,
             skip: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(rms_norm(x [+ skip]), x + skip or None) over the last dimension; x contiguous."""
    k = x.shape[-1]
    x = x.contiguous()
    rows = x.numel() // k
    out = torch.empty_like(x)
    total = torch.empty_like(x) if skip is not None else None
    skip_c = skip.contiguous() if skip is not None else x
    _rms_norm_kernel[(rows,)](x, skip_c, weight, out, total if total is not None else out, k, eps, offset,
                              HAS_SKIP=skip is not None, BLOCK=triton.next_power_of_2(k))
    return out, total


@triton.jit
def _silu_mul_kernel(gu_ptr, out_ptr, F, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < F
    g = tl.load(gu_ptr + row * 2 * F + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(gu_ptr + row * 2 * F + F + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * F + cols, (g * tl.sigmoid(g) * u).to(out_ptr.dtype.element_ty), mask=mask)


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up of a packed gate|up value [..., 2F] -> [..., F]."""
    f = gate_up.shape[-1] // 2
    gu = gate_up.contiguous()
    rows = gu.numel() // (2 * f)
    out = torch.empty(*gu.shape[:-1], f, device=gu.device, dtype=gu.dtype)
    _silu_mul_kernel[(rows, triton.cdiv(f, 1024))](gu, out, f, BLOCK=1024)
    return out


@triton.jit
def _rope_kernel(x_ptr, cos_ptr, sin_ptr, T, stride_b, stride_t, HEADS, HD: tl.constexpr, HALF: tl.constexpr):
    """One (batch, token) row: rotate the leading 2 * HALF dims of each of HEADS heads."""
    bt = tl.program_id(0)
    b, t = bt // T, bt % T
    d = tl.arange(0, HALF)
    base = x_ptr + b * stride_b + t * stride_t + tl.program_id(1) * HD
    x1 = tl.load(base + d).to(tl.float32)
    x2 = tl.load(base + HALF + d).to(tl.float32)
    c = tl.load(cos_ptr + t * HALF + d)
    s = tl.load(sin_ptr + t * HALF + d)
    tl.store(base + d, (x1 * c - x2 * s).to(x_ptr.dtype.element_ty))
    tl.store(base + HALF + d, (x2 * c + x1 * s).to(x_ptr.dtype.element_ty))


def rope_(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, heads: int, head_dim: int) -> None:
    """Rotate in place the first `heads` heads of each row of qkv [B, T, width] (q's heads
    then k's in a packed q|k|v); cos, sin [T, rotary_dim / 2] fp32 (one half of the
    duplicated frequencies)."""
    b, t, _ = qkv.shape
    half = cos.shape[-1]
    assert qkv.stride(2) == 1 and cos.is_contiguous() and sin.is_contiguous()
    _rope_kernel[(b * t, heads)](qkv, cos, sin, t, qkv.stride(0), qkv.stride(1), heads, HD=head_dim, HALF=half)
