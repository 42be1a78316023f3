"""ggml's K-quant codecs: 256-element super-blocks (Q4_K, Q5_K, Q6_K), llama.cpp's layouts.

Without importance the bytes equal ggml's `quantize_row_q{4,5,6}_K_ref`. With importance
(per input column, an imatrix) the sub-block weights become qw * sqrt(sigma2 + x^2) as
in llama.cpp's imatrix quantizers, and the search is widened (not bit-equal to theirs).
"""

from __future__ import annotations

import numpy as np
import torch
from inferc.core.numerics.ggml._common import (
    F32,
    as_block_bytes,
    as_f32_rows,
    as_importance,
    f16_field,
    fp16_round,
    nearest_int,
    pack_nibbles,
    seq_sum,
    to_torch_bytes,
)
from inferc.core.numerics.ggml.search import GROUP_MAX_EPS, min_scale_search, symmetric_scale_search

QK_K = 256
Q4_K_BYTES, Q5_K_BYTES, Q6_K_BYTES = 144, 176, 210


def _sub_weights(sub: np.ndarray, importance: np.ndarray | None, rows: int) -> np.ndarray:
    """Weights of each value in its 32-wide sub-block, [S, 32] for sub [S, 32]."""
    if importance is None:
        xt = sub.T
        av = np.sqrt(seq_sum(xt * xt) / F32(32))  # [S]
        return (av[:, None] + np.abs(sub)).astype(np.float32)
    sup = sub.reshape(-1, QK_K)
    sigma2 = F32(2) * (sup * sup).sum(axis=1, keepdims=True) / F32(QK_K)
    cols = importance.shape[-1]
    qw = np.broadcast_to(importance, (rows, cols)).reshape(-1, QK_K)
    return (qw * np.sqrt(sigma2 + sup * sup)).reshape(-1, 32).astype(np.float32)


def _scale_min_search(x: np.ndarray, importance, nmax: int, rmin: float, nstep: int):
    """Per super-block: codes L [nb, 256], 6-bit ls/lm [nb, 8], fp16 d/dmin bytes."""
    rows = x.shape[0]
    sub = x.reshape(-1, 32)
    w = _sub_weights(sub, importance, rows)
    if importance is None:
        L, scales, mins = min_scale_search(sub.T.copy(), w.T.copy(), nmax, rmin, 0.1, nstep)
    else:
        L, scales, mins = min_scale_search(sub.T.copy(), w.T.copy(), nmax, -0.9, 0.05, 36)
    L = L.T.reshape(-1, QK_K)
    scales, mins = scales.reshape(-1, 8), mins.reshape(-1, 8)
    if importance is None:
        ls, d_val = _six_bit(scales)
        lm, m_val = _six_bit(mins)
    else:
        sw = w.reshape(-1, 8, 32).sum(axis=2)
        ls, d_val = _six_bit_weighted(scales, sw)
        lm, m_val = _six_bit_weighted(mins, sw)
    d_bytes, d = fp16_round(d_val)
    m_bytes, dmin = fp16_round(m_val)
    dj = d[:, None] * ls.astype(np.float32)  # [nb, 8]
    dmj = dmin[:, None] * lm.astype(np.float32)
    xs = x.reshape(-1, 8, 32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.clip(nearest_int((xs + dmj[:, :, None]) / dj[:, :, None]), 0, nmax)
    L = np.where(dj[:, :, None] != 0, q, L.reshape(-1, 8, 32)).reshape(-1, QK_K)
    return L.astype(np.int64), ls, lm, d_bytes, m_bytes


def _six_bit(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ggml's reference: 6-bit codes of 8 sub-block scales [nb, 8] against their max."""
    vmax = np.maximum(v.max(axis=1), F32(0))
    with np.errstate(divide="ignore"):
        inv = np.where(vmax > 0, F32(63) / vmax, F32(0)).astype(np.float32)
    codes = np.minimum(nearest_int(inv[:, None] * v).astype(np.int64) & 0xFF, 63)
    return codes, (vmax / F32(63)).astype(np.float32)


def _six_bit_weighted(v: np.ndarray, sw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """6-bit codes of sub-block scales minimising the sw-weighted error of the scales:
    a few candidate grids around max / 63, then the least-squares super-block scale."""
    vmax = np.maximum(v.max(axis=1), F32(0))
    safe = np.where(vmax > 0, vmax, F32(1))
    best_err = np.full(v.shape[0], np.inf, dtype=np.float32)
    best = np.zeros_like(v, dtype=np.float32)
    for k in range(-4, 5):
        inv = (F32(63) + F32(0.1) * F32(k)) / safe
        codes = np.minimum(nearest_int(inv[:, None] * v), 63)
        e = (sw * (v - codes / inv[:, None]) ** 2).sum(axis=1)
        better = e < best_err
        best = np.where(better[:, None], codes, best)
        best_err = np.where(better, e, best_err)
    num, den = (sw * v * best).sum(axis=1), (sw * best * best).sum(axis=1)
    scale = np.where((den > 0) & (vmax > 0), num / np.where(den > 0, den, F32(1)), F32(0))
    return best.astype(np.int64), scale.astype(np.float32)


def _pack_scales(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """6-bit scales and mins of 8 sub-blocks -> 12 bytes (ggml's get_scale_min_k4 layout)."""
    out = np.zeros((ls.shape[0], 12), dtype=np.int64)
    out[:, 0:4] = ls[:, 0:4] | ((ls[:, 4:8] >> 4) << 6)
    out[:, 4:8] = lm[:, 0:4] | ((lm[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (ls[:, 4:8] & 0xF) | ((lm[:, 4:8] & 0xF) << 4)
    return out.astype(np.uint8)


def _unpack_scales(sc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = sc.astype(np.int64)
    ls = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    lm = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    return ls.astype(np.float32), lm.astype(np.float32)


def quantize_q4_k_blocks(x, importance=None) -> torch.Tensor:
    """[rows, cols] (cols a multiple of 256) -> uint8 [rows, cols / 256 * 144]."""
    arr = as_f32_rows(x, QK_K)
    imp = as_importance(importance, arr.shape[1])
    L, ls, lm, d, dmin = _scale_min_search(arr, imp, 15, -1.0, 20)
    Lc = L.reshape(-1, 4, 2, 32)  # 64-value chunks: low nibbles first 32, high the next 32
    qs = pack_nibbles(Lc[:, :, 0], Lc[:, :, 1]).reshape(-1, 128)
    return to_torch_bytes(np.concatenate([d, dmin, _pack_scales(ls, lm), qs], axis=1), arr.shape[0])


def quantize_q5_k_blocks(x, importance=None) -> torch.Tensor:
    """[rows, cols] (cols a multiple of 256) -> uint8 [rows, cols / 256 * 176]."""
    arr = as_f32_rows(x, QK_K)
    imp = as_importance(importance, arr.shape[1])
    L, ls, lm, d, dmin = _scale_min_search(arr, imp, 31, -0.5, 15)
    Lc = L.reshape(-1, 4, 2, 32)
    high = (Lc >> 4) & 1  # [nb, 4, 2, 32]
    shifts = (2 * np.arange(4)[:, None] + np.arange(2)[None, :])[None, :, :, None]
    qh = (high << shifts).sum(axis=(1, 2)).astype(np.uint8)  # [nb, 32]
    qs = pack_nibbles(Lc[:, :, 0], Lc[:, :, 1]).reshape(-1, 128)
    return to_torch_bytes(np.concatenate([d, dmin, _pack_scales(ls, lm), qh, qs], axis=1), arr.shape[0])


def quantize_q6_k_blocks(x, importance=None) -> torch.Tensor:
    """[rows, cols] (cols a multiple of 256) -> uint8 [rows, cols / 256 * 210]."""
    arr = as_f32_rows(x, QK_K)
    imp = as_importance(importance, arr.shape[1])
    rows = arr.shape[0]
    sub = arr.reshape(-1, 16)
    qw = None
    if imp is not None:
        sup = arr.reshape(-1, QK_K)
        sigma2 = F32(2) * (sup * sup).sum(axis=1, keepdims=True) / F32(QK_K)
        qw = (np.broadcast_to(imp, arr.shape).reshape(-1, QK_K) * np.sqrt(sigma2 + sup * sup)).reshape(-1, 16).T.copy()
    L, scales = symmetric_scale_search(sub.T.copy(), 32, qw)
    L = L.T.reshape(-1, 16, 16)
    scales = scales.reshape(-1, 16)
    first = np.argmax(np.abs(scales), axis=1)
    max_scale = scales[np.arange(scales.shape[0]), first]
    zero = np.abs(max_scale) < GROUP_MAX_EPS
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = np.where(zero, F32(0), F32(-128) / np.where(zero, F32(1), max_scale)).astype(np.float32)
        d_bytes, d = fp16_round(np.where(zero, F32(0), F32(1) / iscale))
        sc = np.minimum(nearest_int(iscale[:, None] * scales), 127).astype(np.int8)
        dj = d[:, None] * sc.astype(np.float32)  # [nb, 16]
        q = np.clip(nearest_int(arr.reshape(-1, 16, 16) / dj[:, :, None]), -32, 31) + 32
    L = np.where(dj[:, :, None] != 0, q, L).reshape(-1, 2, 4, 32).astype(np.int64)  # 128-chunks, 4 quarters
    ql = np.concatenate([pack_nibbles(L[:, :, 0], L[:, :, 2]), pack_nibbles(L[:, :, 1], L[:, :, 3])], axis=2)
    qh = ((L[:, :, 0] >> 4) | ((L[:, :, 1] >> 4) << 2) | ((L[:, :, 2] >> 4) << 4) | ((L[:, :, 3] >> 4) << 6))
    out = np.concatenate([ql.reshape(-1, 128), qh.astype(np.uint8).reshape(-1, 64), sc.view(np.uint8), d_bytes], axis=1)
    out[zero] = 0
    return to_torch_bytes(out, rows)


def dequantize_q4_k_blocks(data, shape: tuple[int, int]) -> torch.Tensor:
    bb = as_block_bytes(data, Q4_K_BYTES)
    ls, lm = _unpack_scales(bb[:, 4:16])
    q = bb[:, 16:].reshape(-1, 4, 32)
    codes = np.stack([q & 0xF, q >> 4], axis=2).reshape(-1, 8, 32).astype(np.float32)
    return torch.from_numpy(_kscale(bb, ls, lm, codes).reshape(shape))


def dequantize_q5_k_blocks(data, shape: tuple[int, int]) -> torch.Tensor:
    bb = as_block_bytes(data, Q5_K_BYTES)
    ls, lm = _unpack_scales(bb[:, 4:16])
    qh = bb[:, 16:48].astype(np.int64)[:, None, :]  # [nb, 1, 32]
    q = bb[:, 48:].reshape(-1, 4, 32)
    low = np.stack([q & 0xF, q >> 4], axis=2).reshape(-1, 8, 32).astype(np.int64)
    high = (qh >> np.arange(8)[None, :, None]) & 1
    return torch.from_numpy(_kscale(bb, ls, lm, (low + 16 * high).astype(np.float32)).reshape(shape))


def _kscale(bb: np.ndarray, ls: np.ndarray, lm: np.ndarray, codes: np.ndarray) -> np.ndarray:
    d = f16_field(bb, 0)[:, None] * ls  # [nb, 8]
    m = f16_field(bb, 2)[:, None] * lm
    return codes * d[:, :, None] - m[:, :, None]


def dequantize_q6_k_blocks(data, shape: tuple[int, int]) -> torch.Tensor:
    bb = as_block_bytes(data, Q6_K_BYTES)
    ql = bb[:, :128].reshape(-1, 2, 2, 32).astype(np.int64)  # [nb, chunk, half, 32]
    qh = bb[:, 128:192].reshape(-1, 2, 1, 32).astype(np.int64)
    low = np.stack([ql[:, :, 0] & 0xF, ql[:, :, 1] & 0xF, ql[:, :, 0] >> 4, ql[:, :, 1] >> 4], axis=2)
    high = (qh >> (2 * np.arange(4))[None, None, :, None]) & 3
    codes = (low | (high << 4)).reshape(-1, 16, 16).astype(np.float32) - F32(32)
    sc = bb[:, 192:208].view(np.int8).astype(np.float32)
    d = f16_field(bb, 208)[:, None] * sc
    return torch.from_numpy((codes * d[:, :, None]).reshape(shape))
