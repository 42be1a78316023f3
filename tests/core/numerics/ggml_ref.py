"""ggml's own quantizer (ggml_quantize_chunk from llama-cpp-python's libggml-base), as
the byte-exact reference for the codec tests."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from inferc.core.ir.quant import QuantFormat

GGML_TYPE = {
    QuantFormat.GGUF_Q4_0: 2, QuantFormat.GGUF_Q4_1: 3, QuantFormat.GGUF_Q5_0: 6, QuantFormat.GGUF_Q5_1: 7,
    QuantFormat.GGUF_Q8_0: 8, QuantFormat.GGUF_Q4_K: 12, QuantFormat.GGUF_Q5_K: 13, QuantFormat.GGUF_Q6_K: 14,
}


def ggml_lib():
    llama_cpp = pytest.importorskip("llama_cpp")
    libdir = Path(llama_cpp.__file__).parent / "lib"
    lib = ctypes.CDLL(str(libdir / "libggml-base.so"))
    fn = lib.ggml_quantize_chunk
    fn.restype = ctypes.c_size_t
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    return lib


def ggml_quantize(fmt: QuantFormat, x: np.ndarray, row_bytes: int, imatrix: np.ndarray | None = None) -> np.ndarray:
    """x [rows, cols] float32 -> ggml's packed bytes [rows, row_bytes]."""
    lib = ggml_lib()
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.zeros((x.shape[0], row_bytes), dtype=np.uint8)
    imp = None if imatrix is None else np.ascontiguousarray(imatrix, dtype=np.float32)
    n = lib.ggml_quantize_chunk(
        GGML_TYPE[fmt], x.ctypes.data, out.ctypes.data, 0, x.shape[0], x.shape[1],
        None if imp is None else imp.ctypes.data,
    )
    assert n == out.nbytes
    return out
