"""Float32 helpers that reproduce ggml's scalar C arithmetic exactly.

ggml's reference quantizers run in float32 with sequential sums and no FMA; every
helper here keeps that order so the packed bytes match llama.cpp's bit for bit.
Arrays of sub-blocks are kept transposed, [n, blocks], so a sum over the n values of a
sub-block is a row-by-row (sequential) reduction over axis 0.
"""

from __future__ import annotations

import numpy as np
import torch

F32 = np.float32


def as_f32_rows(x: np.ndarray | torch.Tensor, block: int) -> np.ndarray:
    """[rows, cols] float weights as a contiguous float32 array; cols must be whole blocks."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to(torch.float32).cpu().numpy()
    x = np.ascontiguousarray(x, dtype=np.float32)
    assert x.ndim == 2 and x.shape[1] % block == 0, f"rows of {x.shape[1]} are not whole blocks of {block}"
    return x


def as_importance(importance: np.ndarray | torch.Tensor | None, cols: int) -> np.ndarray | None:
    """Per-input-column importance [cols] (or [rows, cols]) as float32, or None."""
    if importance is None:
        return None
    if isinstance(importance, torch.Tensor):
        importance = importance.detach().to(torch.float32).cpu().numpy()
    imp = np.asarray(importance, dtype=np.float32)
    assert imp.shape[-1] == cols, f"importance has {imp.shape[-1]} columns, weight has {cols}"
    return imp


def nearest_int(v: np.ndarray) -> np.ndarray:
    """ggml's nearest_int: round half to even in float32 (the 12582912.f trick)."""
    return np.rint(v)


def round_away(v: np.ndarray) -> np.ndarray:
    """C roundf: halves away from zero, exact for every float32. np.rint rounds halves to
    even; the two differ only on exact halves (v - rint(v) = +-0.5 is exact in float32),
    which are rare, so only those are redone."""
    r = np.rint(v)
    tie = np.abs(r - v) == F32(0.5)
    if tie.any():
        r = np.where(tie, np.trunc(v) + np.copysign(F32(1), v), r).astype(np.float32)
    return r


def fp16_round(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fp16 bytes [..., 2], the float32 value the fp16 stands for)."""
    h = np.asarray(v, dtype=np.float32).astype(np.float16)
    return h.view(np.uint8).reshape(*h.shape, 2), h.astype(np.float32)


def seq_sum(a: np.ndarray) -> np.ndarray:
    """Sum over axis 0 in index order: numpy reduces the leading axis of a C-contiguous
    array row by row (a transposed view would be summed pairwise instead)."""
    return np.add.reduce(np.ascontiguousarray(a), axis=0)


def pack_nibbles(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return (lo.astype(np.uint8) & 0xF) | ((hi.astype(np.uint8) & 0xF) << 4)


def to_torch_bytes(blocks: np.ndarray, rows: int) -> torch.Tensor:
    """[rows * blocks_per_row, block_bytes] uint8 -> torch uint8 [rows, row_bytes]."""
    return torch.from_numpy(np.ascontiguousarray(blocks).reshape(rows, -1))


def as_block_bytes(data: np.ndarray | torch.Tensor, block_bytes: int) -> np.ndarray:
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    data = np.ascontiguousarray(data, dtype=np.uint8)
    assert data.shape[-1] % block_bytes == 0, f"row of {data.shape[-1]} bytes is not whole blocks of {block_bytes}"
    return data.reshape(-1, block_bytes)


def f16_field(blocks: np.ndarray, start: int) -> np.ndarray:
    """Read an fp16 field at byte offset `start` of every block -> float32 [blocks]."""
    return np.ascontiguousarray(blocks[:, start:start + 2]).view(np.float16).reshape(-1).astype(np.float32)
