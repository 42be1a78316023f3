"""ggml's 32-element block codecs: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (llama.cpp's layouts).

Without importance the bytes equal ggml's `quantize_row_*_ref`. With importance (an
imatrix, per input column) the scale is searched to minimise the weighted error, as
llama.cpp's imatrix quantizers do (results are close to, not bit-equal to, theirs).
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
    pack_nibbles,
    round_away,
    to_torch_bytes,
)
from inferc.core.numerics.ggml.search import min_scale_search, symmetric_scale_search

QK = 32


def _blocks(x: np.ndarray | torch.Tensor) -> tuple[np.ndarray, int]:
    arr = as_f32_rows(x, QK)
    return arr.reshape(-1, QK), arr.shape[0]


def _block_weights(blocks: np.ndarray, importance: np.ndarray, rows: int) -> np.ndarray:
    """llama.cpp's imatrix weighting: qw * sqrt(sigma2 + x^2), sigma2 = mean x^2 of the row."""
    cols = importance.shape[-1]
    x = blocks.reshape(rows, cols)
    sigma2 = (x * x).sum(axis=1, keepdims=True) / F32(cols)
    qw = np.broadcast_to(importance, (rows, cols))
    return (qw * np.sqrt(sigma2 + x * x)).reshape(-1, QK).astype(np.float32)


def _with_fp16(*fields: np.ndarray) -> list[np.ndarray]:
    return [fp16_round(f)[0] for f in fields]


def quantize_q8_0_blocks(x: np.ndarray | torch.Tensor, importance=None) -> torch.Tensor:
    """[rows, cols] -> uint8 [rows, cols / 32 * 34]; importance is ignored (as in ggml)."""
    b, rows = _blocks(x)
    amax = np.abs(b).max(axis=1)
    d = amax / F32(127)
    inv = np.where(d != 0, F32(1) / np.where(d != 0, d, F32(1)), F32(0)).astype(np.float32)
    q = round_away(b * inv[:, None]).astype(np.int8)
    out = np.concatenate([fp16_round(d)[0], q.view(np.uint8)], axis=1)
    return to_torch_bytes(out, rows)


def dequantize_q8_0_blocks(data, shape: tuple[int, int]) -> torch.Tensor:
    bb = as_block_bytes(data, 34)
    d = f16_field(bb, 0)
    q = bb[:, 2:].view(np.int8).astype(np.float32)
    return torch.from_numpy((q * d[:, None]).reshape(shape))


def _sym_codes(b: np.ndarray, nmax: int, importance, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(codes [B, 32] in [0, 2 nmax), d [B]) for Q4_0 (nmax 8) / Q5_0 (nmax 16)."""
    if importance is None:
        amax_idx = np.argmax(np.abs(b), axis=1)
        vmax = b[np.arange(b.shape[0]), amax_idx]
        d = vmax / F32(-nmax)
        inv = np.where(d != 0, F32(1) / np.where(d != 0, d, F32(1)), F32(0)).astype(np.float32)
        codes = np.trunc(b * inv[:, None] + F32(nmax + 0.5))
        return np.minimum(F32(2 * nmax - 1), codes), d.astype(np.float32)
    w = _block_weights(b, importance, rows)
    L, scale = symmetric_scale_search(b.T.copy(), nmax, w.T.copy())
    return L.T, scale


def _asym_codes(b: np.ndarray, nmax: int, importance, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes [B, 32] in [0, nmax], d [B], m [B]) with x ~ d * code + m (Q4_1, Q5_1)."""
    if importance is None:
        mn, mx = b.min(axis=1), b.max(axis=1)
        d = (mx - mn) / F32(nmax)
        inv = np.where(d != 0, F32(1) / np.where(d != 0, d, F32(1)), F32(0)).astype(np.float32)
        codes = np.trunc((b - mn[:, None]) * inv[:, None] + F32(0.5))
        return np.minimum(F32(nmax), codes) if nmax == 15 else codes, d.astype(np.float32), mn
    w = _block_weights(b, importance, rows)
    L, scale, m = min_scale_search(b.T.copy(), w.T.copy(), nmax, -0.9, 0.05, 36)
    return L.T, scale, -m


def _requantize(b: np.ndarray, d: np.ndarray, m: np.ndarray | None, nmax: int) -> np.ndarray:
    """Codes for the stored (fp16) d and m, so dequantization matches the search."""
    d16 = fp16_round(d)[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        if m is None:
            c = np.rint(b / d16[:, None]) + F32(nmax)
            return np.where(d16[:, None] != 0, np.clip(c, 0, 2 * nmax - 1), F32(nmax))
        c = np.rint((b - fp16_round(m)[1][:, None]) / d16[:, None])
        return np.where(d16[:, None] != 0, np.clip(c, 0, nmax), F32(0))


def quantize_q4_0_blocks(x, importance=None) -> torch.Tensor:
    """[rows, cols] -> uint8 [rows, cols / 32 * 18]: fp16 d, 16 bytes of 4-bit codes."""
    b, rows = _blocks(x)
    imp = as_importance(importance, b.shape[0] * QK // rows)
    codes, d = _sym_codes(b, 8, imp, rows)
    if imp is not None:
        codes = _requantize(b, d, None, 8)
    qs = pack_nibbles(codes[:, :16], codes[:, 16:])
    return to_torch_bytes(np.concatenate([fp16_round(d)[0], qs], axis=1), rows)


def quantize_q5_0_blocks(x, importance=None) -> torch.Tensor:
    """[rows, cols] -> uint8 [rows, cols / 32 * 22]: fp16 d, u32 high bits, 16 bytes low nibbles."""
    b, rows = _blocks(x)
    imp = as_importance(importance, b.shape[0] * QK // rows)
    codes, d = _sym_codes(b, 16, imp, rows)
    if imp is not None:
        codes = _requantize(b, d, None, 16)
    return to_torch_bytes(np.concatenate([fp16_round(d)[0], _q5_payload(codes)], axis=1), rows)


def quantize_q4_1_blocks(x, importance=None) -> torch.Tensor:
    """[rows, cols] -> uint8 [rows, cols / 32 * 20]: fp16 d, fp16 m, 4-bit codes."""
    b, rows = _blocks(x)
    imp = as_importance(importance, b.shape[0] * QK // rows)
    codes, d, m = _asym_codes(b, 15, imp, rows)
    if imp is not None:
        codes = _requantize(b, d, m, 15)
    qs = pack_nibbles(codes[:, :16], codes[:, 16:])
    return to_torch_bytes(np.concatenate([*_with_fp16(d, m), qs], axis=1), rows)


def quantize_q5_1_blocks(x, importance=None) -> torch.Tensor:
    """[rows, cols] -> uint8 [rows, cols / 32 * 24]: fp16 d, fp16 m, u32 high bits, low nibbles."""
    b, rows = _blocks(x)
    imp = as_importance(importance, b.shape[0] * QK // rows)
    codes, d, m = _asym_codes(b, 31, imp, rows)
    if imp is not None:
        codes = _requantize(b, d, m, 31)
    return to_torch_bytes(np.concatenate([*_with_fp16(d, m), _q5_payload(codes)], axis=1), rows)


def _q5_payload(codes: np.ndarray) -> np.ndarray:
    """codes [B, 32] (0..31; ggml keeps only 5 bits) -> [B, 4 + 16]: qh (little-endian u32), qs."""
    c = codes.astype(np.int64) & 0xFF
    bits = ((c >> 4) & 1).astype(np.uint8)  # [B, 32], bit j of qh is the 5th bit of code j
    qh = np.packbits(bits, axis=1, bitorder="little")  # [B, 4] = little-endian u32
    return np.concatenate([qh, pack_nibbles(c[:, :16], c[:, 16:])], axis=1)


def _unpack_nibbles(qs: np.ndarray) -> np.ndarray:
    return np.concatenate([qs & 0xF, qs >> 4], axis=1).astype(np.float32)


def _q5_codes(bb: np.ndarray, at: int) -> np.ndarray:
    qh = np.ascontiguousarray(bb[:, at:at + 4]).view(np.uint32).astype(np.int64)  # [B, 1]
    high = (qh >> np.arange(32, dtype=np.int64)) & 1
    return _unpack_nibbles(bb[:, at + 4:]) + (high * 16).astype(np.float32)


def dequantize_q4_0_blocks(data, shape: tuple[int, int]) -> torch.Tensor:
    bb = as_block_bytes(data, 18)
    w = (_unpack_nibbles(bb[:, 2:]) - F32(8)) * f16_field(bb, 0)[:, None]
    return torch.from_numpy(w.reshape(shape))


def dequantize_q4_1_blocks(data, shape: tuple[int, int]) -> torch.Tensor:
    bb = as_block_bytes(data, 20)
    w = _unpack_nibbles(bb[:, 4:]) * f16_field(bb, 0)[:, None] + f16_field(bb, 2)[:, None]
    return torch.from_numpy(w.reshape(shape))


def dequantize_q5_0_blocks(data, shape: tuple[int, int]) -> torch.Tensor:
    bb = as_block_bytes(data, 22)
    w = (_q5_codes(bb, 2) - F32(16)) * f16_field(bb, 0)[:, None]
    return torch.from_numpy(w.reshape(shape))


def dequantize_q5_1_blocks(data, shape: tuple[int, int]) -> torch.Tensor:
    bb = as_block_bytes(data, 24)
    w = _q5_codes(bb, 4) * f16_field(bb, 0)[:, None] + f16_field(bb, 2)[:, None]
    return torch.from_numpy(w.reshape(shape))
