"""The ggml block codecs: bytes equal to llama.cpp's own quantizer, dequantization equal
to gguf-py's, and importance-weighted quantization lowering the weighted error."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from inferc.core.ir.quant import Granularity, QuantFormat, QuantizedWeight
from inferc.core.numerics import dequantize
from inferc.core.numerics.ggml import CODECS

sys.path.insert(0, str(Path(__file__).parent))
from ggml_ref import ggml_quantize  # noqa: E402

gguf = pytest.importorskip("gguf")


def _weights(rows: int, cols: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
    x[0, :40] = 0  # an all-zero block
    x[1] *= 100  # a large row
    x[2, 5] = 1.0  # an outlier
    x[3] = np.abs(x[3])  # all positive (min clamps to 0)
    x[4] = -np.abs(x[4])  # all negative
    x[5, :300] = 0.01  # constant blocks
    x[6, :32] = np.r_[127.0, np.arange(-15, 16) + 0.5]  # Q8_0 scale 1: exact halves, C rounds them away from 0
    return x


SHAPES_256 = [(16, 256), (40, 1536)]
SHAPES_576 = [(24, 576)]


def _cases():
    for fmt, codec in CODECS.items():
        for shape in SHAPES_256 + SHAPES_576:
            if codec.fits(shape[1]):
                yield pytest.param(fmt, shape, id=f"{fmt.value}-{shape[0]}x{shape[1]}")


@pytest.mark.parametrize(("fmt", "shape"), list(_cases()))
def test_bytes_equal_llama_cpp(fmt, shape):
    codec = CODECS[fmt]
    x = _weights(*shape, seed=shape[1])
    ours = codec.quantize(x).numpy()
    ref = ggml_quantize(fmt, x, codec.row_bytes(shape[1]))
    assert ours.shape == ref.shape
    assert np.array_equal(ours, ref), f"{(ours != ref).sum()} bytes differ"


@pytest.mark.parametrize(("fmt", "shape"), list(_cases()))
def test_dequantize_matches_gguf_py(fmt, shape):
    codec = CODECS[fmt]
    x = _weights(*shape, seed=7)
    packed = codec.quantize(x)
    ref = gguf.quants.dequantize(packed.numpy(), gguf.GGMLQuantizationType[fmt.value.upper()]).reshape(shape)
    ours = codec.dequantize(packed, shape).numpy()
    assert np.array_equal(ours, ref.astype(np.float32))
    q = QuantizedWeight(format=fmt, shape=shape, data=packed, granularity=Granularity.BLOCK)
    assert torch.equal(dequantize(q), torch.from_numpy(ours))
    rel = np.linalg.norm(ours[7:] - x[7:]) / np.linalg.norm(x[7:])  # the plain rows
    assert rel < {QuantFormat.GGUF_Q8_0: 0.01, QuantFormat.GGUF_Q6_K: 0.03}.get(fmt, 0.15)


@pytest.mark.parametrize("fmt", [f for f in CODECS if f is not QuantFormat.GGUF_Q8_0])
def test_importance_lowers_weighted_error(fmt):
    codec = CODECS[fmt]
    rng = np.random.default_rng(3)
    cols = 512
    x = (rng.standard_normal((64, cols)) * 0.02).astype(np.float32)
    imp = (rng.lognormal(0.0, 1.5, cols)).astype(np.float32)  # a few columns matter far more

    def err(packed):
        d = codec.dequantize(packed, x.shape).numpy() - x
        return float((d * d * imp).sum())

    plain, weighted = err(codec.quantize(x)), err(codec.quantize(x, importance=imp))
    ref = err(torch.from_numpy(ggml_quantize(fmt, x, codec.row_bytes(cols), imatrix=imp)))
    assert weighted < 0.95 * plain
    assert weighted < 1.05 * ref, f"ours {weighted:.4g} vs llama.cpp imatrix {ref:.4g}"
