"""Weight layouts of the two flavours: MatMulNBits blobs (ort) and block-wise INT4
DequantizeLinear initializers (standard), from our INT4 codes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from inferc.core.errors import UnsupportedError
from inferc.core.ir import Granularity, QuantFormat, QuantizedWeight
from inferc.formats.onnx.constants import MATMULNBITS_MIN_BLOCK


@dataclass
class NBitsWeight:
    """MatMulNBits' inputs for a weight [N, K] in blocks of `block_size` along K."""

    n: int
    k: int
    block_size: int
    blob: np.ndarray  # uint8 [N, K / block_size, block_size * bits / 8]; 4 bits: code 2j low nibble, 2j+1 high
    scales: np.ndarray  # float [N * K / block_size]
    zero_points: np.ndarray | None  # uint8 [N * ceil(blocks / 2)], packed like the codes; None: 2^(bits-1)


def check_int4(name: str, q: QuantizedWeight, what: str) -> int:
    """The group size of an INT4 weight the ONNX lowering can take, or UnsupportedError."""
    if q.format is not QuantFormat.INT4:
        raise UnsupportedError(f"{name}: {q.format.value} weights have no mapping in {what}; use an INT4 (rtn/awq/gptq) or unquantized build")
    if q.g_idx is not None:
        raise UnsupportedError(
            f"{name}: GPTQ act-order with a g_idx has no mapping in {what}; quantize with static_groups: true (the gptq preset does)")
    if q.granularity is not Granularity.GROUP or not q.group_size:
        raise UnsupportedError(f"{name}: per-channel INT4 has no mapping in {what}; quantize with a group size (e.g. 128)")
    return int(q.group_size)


def check_block_size(name: str, block: int) -> None:
    if block < MATMULNBITS_MIN_BLOCK or block & (block - 1):
        raise UnsupportedError(
            f"{name}: MatMulNBits takes group sizes that are powers of two and at least {MATMULNBITS_MIN_BLOCK}, "
            f"found {block}; quantize with group_size 32, 64 or 128")


def _pack_nibbles(u: torch.Tensor) -> np.ndarray:
    """[..., 2m] values in 0..15 -> uint8 [..., m], element 2j in the low nibble."""
    u = u.to(torch.uint8)
    return (u[..., 0::2] | (u[..., 1::2] << 4)).numpy()


def unsigned_codes(q: QuantizedWeight) -> torch.Tensor:
    """Codes in 0..15: symmetric codes offset by the implied zero point 8."""
    return q.data.to(torch.int16) + (8 if q.symmetric else 0)


def to_matmul_nbits(q: QuantizedWeight, dtype: np.dtype) -> NBitsWeight:
    n, k = q.shape
    block = int(q.group_size)
    blocks = k // block
    blob = _pack_nibbles(unsigned_codes(q).reshape(n, blocks, block))
    scales = q.scale.float().numpy().astype(dtype).reshape(-1)
    zp = None
    if not q.symmetric:
        z = q.zero_point.to(torch.int16).reshape(n, blocks)
        if blocks % 2:
            z = torch.cat([z, torch.zeros(n, 1, dtype=z.dtype)], dim=1)
        zp = _pack_nibbles(z).reshape(-1)
    return NBitsWeight(n, k, block, blob, scales, zp)


def rtn_nbits(w: np.ndarray, bits: int, block: int, dtype: np.dtype) -> NBitsWeight:
    """A dense weight [N, K] rounded to nearest into symmetric `bits`-bit MatMulNBits blocks
    of `block` along K: scale = amax / (2^(bits-1) - 1), codes offset by 2^(bits-1)."""
    n, k = w.shape
    if k % block:
        raise UnsupportedError(f"a dense head of {k} columns does not split into MatMulNBits blocks of {block}; keep lm_head dense")
    half = 2 ** (bits - 1)
    blocks = torch.from_numpy(np.ascontiguousarray(w, np.float32)).reshape(n, k // block, block)
    scale = blocks.abs().amax(-1) / (half - 1)  # [N, K / block]
    codes = torch.round(blocks / scale.clamp(min=torch.finfo(torch.float32).tiny)[..., None]).clamp(1 - half, half - 1) + half
    blob = _pack_nibbles(codes) if bits == 4 else codes.to(torch.uint8).numpy()
    return NBitsWeight(n, k, block, blob, scale.numpy().astype(dtype).reshape(-1), None)


def join_nbits(parts: list[NBitsWeight]) -> NBitsWeight:
    """Several weights stacked along N (a fused linear) as one MatMulNBits weight."""
    if len(parts) == 1:
        return parts[0]
    zps = [p.zero_points for p in parts]
    assert all(z is None for z in zps) or all(z is not None for z in zps), "parts differ in symmetry"
    return NBitsWeight(
        sum(p.n for p in parts), parts[0].k, parts[0].block_size,
        np.concatenate([p.blob for p in parts]), np.concatenate([p.scales for p in parts]),
        None if zps[0] is None else np.concatenate(zps),  # type: ignore[arg-type]
    )


def to_blocked_int4(q: QuantizedWeight, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Transposed codes for DequantizeLinear(axis=0, block_size=group): int4 (symmetric) or
    uint4 (with zero points) [K, N], scales [K / group, N], zero points like the scales."""
    import ml_dtypes

    if q.symmetric:
        codes = q.data.to(torch.int8).T.contiguous().numpy().astype(ml_dtypes.int4)
        zp = None
    else:
        codes = q.data.to(torch.uint8).T.contiguous().numpy().astype(ml_dtypes.uint4)
        zp = q.zero_point.to(torch.uint8).T.contiguous().numpy().astype(ml_dtypes.uint4)
    return codes, q.scale.float().T.contiguous().numpy().astype(dtype), zp
