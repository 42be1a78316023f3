"""The one packer of 4-bit codes: two codes a byte, the even index in the low nibble,
along either axis, and the int32-word form (eight codes a word) built on it. Every
exporter (compressed-tensors, ModelOpt, ONNX MatMulNBits, the kernels) calls these."""

from __future__ import annotations

import sys

import torch


def _little_endian() -> None:
    assert sys.byteorder == "little", "nibble packing through int32 views assumes a little-endian host"


def pack_nibbles(values: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Values 0..15 (any integer dtype) -> uint8 with half the size along `dim`; element 2k
    in the low nibble, 2k+1 in the high one."""
    u = values.to(torch.uint8).movedim(dim, -1)
    return (u[..., 0::2] | (u[..., 1::2] << 4)).movedim(-1, dim).contiguous()


def unpack_nibbles(packed: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Inverse of `pack_nibbles`: uint8 values 0..15, twice the size along `dim`."""
    p = packed.movedim(dim, -1)
    out = torch.stack((p & 0x0F, p >> 4), dim=-1).reshape(*p.shape[:-1], -1)
    return out.movedim(-1, dim).contiguous()


def signed_to_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """Signed 4-bit codes in [-8, 7] -> their two's complement nibbles 0..15."""
    return (codes.to(torch.int16) & 0x0F).to(torch.uint8)


def nibbles_to_signed(nibbles: torch.Tensor) -> torch.Tensor:
    n = nibbles.to(torch.int16)
    return torch.where(n >= 8, n - 16, n).to(torch.int8)


def pack_nibbles_int32(values: torch.Tensor) -> torch.Tensor:
    """[rows, cols] values 0..15 -> int32 [rows, ceil(cols / 8)]; column 8k+j in bits
    4j..4j+3 of word k (compressed-tensors' packing for num_bits=4), padded with 0."""
    _little_endian()
    rows, cols = values.shape
    u = values.to(torch.uint8)
    if cols % 8:
        u = torch.nn.functional.pad(u, (0, (-cols) % 8))
    return pack_nibbles(u).reshape(-1).view(torch.int32).reshape(rows, -1)


def unpack_nibbles_int32(words: torch.Tensor, cols: int) -> torch.Tensor:
    """Inverse of `pack_nibbles_int32`: uint8 [rows, cols] in 0..15."""
    _little_endian()
    return unpack_nibbles(words.contiguous().reshape(-1).view(torch.uint8).reshape(words.shape[0], -1))[:, :cols]
