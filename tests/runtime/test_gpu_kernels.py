"""The GPU runtime's kernels against their references, on fresh random inputs.

Each quantized product is compared with `reference_product`: the dequantized weight
(the number format's own dequantizer) times the input fake-quantized as the IR says, in
float32. Tolerance: ||out - ref|| / ||ref|| < 1e-2, the range of bf16 operands with fp32
accumulation (the kernels round the dequantized weight or the output to bf16; FP8 tensor
cores accumulate with a shortened mantissa); a wrong nibble order, scale index or zero
point is off by order 1. Runs on CUDA; on a CPU under Triton's interpreter
(TRITON_INTERPRET=1) too, slowly; skipped otherwise.
"""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("triton")

from inferc.core.ir import ActivationQuant, Granularity, QuantFormat  # noqa: E402
from inferc.core.numerics.fp8 import FP8WeightFormat, fp8_round, fp8_scale  # noqa: E402
from inferc.core.numerics.int4 import INT4WeightFormat  # noqa: E402
from inferc.core.numerics.nvfp4 import NVFP4WeightFormat  # noqa: E402
from inferc.runtime.gpu import kernels  # noqa: E402
from inferc.runtime.gpu.linear import prepare_linear, reference_product  # noqa: E402
from inferc.runtime.reference import apply_rope  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.triton_cpu]
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = 1e-2
FP8_TOL = 4e-3  # bf16 output rounding (~1.5e-3) and accumulation order; a scale or code error is order 1
ROWS = (1, 5, 16, 40) if not INTERPRET else (1, 20)
DTYPE = torch.float16 if INTERPRET else torch.bfloat16  # numpy, under the interpreter, has no bf16


def _rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.float().cpu(), ref.float().cpu()
    assert torch.isfinite(out).all()
    return float((out - ref).norm() / ref.norm())


def _quantized(fmt, rows: int, cols: int, gen: torch.Generator, parts: int = 1):
    out = []
    for _ in range(parts):
        w = torch.randn(rows, cols, generator=gen) * 0.05
        out.append(fmt.quantize(w, fmt.choose_qparams(w)))
    return out


W4_FORMATS = {
    "int4-sym-g128": INT4WeightFormat(group_size=128),
    "int4-zero-g64": INT4WeightFormat(group_size=64, symmetric=False),
    "int4-sym-channel": INT4WeightFormat(group_size=None),
    "nvfp4": NVFP4WeightFormat(),
}


@pytest.mark.parametrize("name", list(W4_FORMATS))
@pytest.mark.parametrize("m", ROWS)
def test_w4_matmul_matches_dequantized_product(name, m):
    gen = torch.Generator().manual_seed(hash((name, m)) % 2**31)
    parts = _quantized(W4_FORMATS[name], 96, 256, gen, parts=2)  # a fused linear of two parts
    x = torch.randn(m, 256, generator=gen)
    lin = prepare_linear(parts, None, None, torch.device(DEVICE), DTYPE)
    out = lin(x.to(DEVICE, DTYPE))
    assert out.shape == (m, 192)
    assert _rel(out, reference_product(parts, x)) < TOL


def test_w4_matmul_runs_act_order_groups():
    gen = torch.Generator().manual_seed(3)
    (q,) = _quantized(INT4WeightFormat(group_size=64), 64, 256, gen)
    perm = torch.randperm(256, generator=gen)
    q.data, q.scale = q.data[:, perm], q.scale  # column c now holds the code of column perm[c]
    q.g_idx = (perm // 64).to(torch.int32)
    x = torch.randn(3, 256, generator=gen)
    lin = prepare_linear([q], None, None, torch.device(DEVICE), DTYPE)
    assert lin.perm is not None
    assert _rel(lin(x.to(DEVICE, DTYPE)), reference_product([q], x)) < TOL


@pytest.mark.parametrize("act", ["token", "static"])
@pytest.mark.parametrize("m", ROWS)
def test_fp8_matmul_matches_dequantized_product(act, m):
    """The same bf16 input on both sides, so the GPU quantizes it to the same E4M3 codes the
    format's fake quantizer gives; what remains is accumulation order and the bf16 output
    (one row: fp32 FMAs; 2-16 rows: the FP8 tensor cores; more: cuBLAS)."""
    if DEVICE == "cuda" and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("FP8 matrix products need sm89 or newer")
    gen = torch.Generator().manual_seed(m)
    parts = _quantized(FP8WeightFormat(per_channel=True), 80, 1024, gen, parts=3)
    x = (torch.randn(m, 1024, generator=gen) * 2).to(DTYPE)
    if act == "token":
        aq = ActivationQuant(QuantFormat.FP8_E4M3, Granularity.TOKEN, dynamic=True)
    else:
        aq = ActivationQuant(QuantFormat.FP8_E4M3, Granularity.TENSOR, dynamic=False, scale=x.float().abs().amax() / 448)
    lin = prepare_linear(parts, None, aq, torch.device(DEVICE), DTYPE)
    out = lin(x.to(DEVICE))
    # under the interpreter E4M3 conversion does not round to nearest: only layout and scales are checked
    assert _rel(out, reference_product(parts, x.float(), aq)) < (1e-1 if INTERPRET else FP8_TOL)


def test_fp8_quantize_rows_matches_the_format():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(7, 300, generator=gen) * 3
    q, s = kernels.fp8_quantize_rows(x.to(DEVICE))
    ref_s = fp8_scale(x.abs().amax(-1))
    assert torch.allclose(s.cpu(), ref_s, rtol=1e-6)
    if INTERPRET:
        pytest.skip("the interpreter's float32 -> E4M3 conversion does not carry a round-up into the exponent")
    assert torch.equal(q.cpu().float(), fp8_round(x / s.cpu()[:, None]).float())  # the format's rounding, bit for bit


@pytest.mark.parametrize("skip", [False, True])
def test_rms_norm_kernel(skip):
    gen = torch.Generator().manual_seed(6)
    x, r, w = torch.randn(2, 3, 200, generator=gen), torch.randn(2, 3, 200, generator=gen), torch.randn(200, generator=gen)
    out, total = kernels.rms_norm(x.to(DEVICE), w.to(DEVICE), 1e-6, 1.0, skip=r.to(DEVICE) if skip else None)
    s = x + r if skip else x
    ref = s * torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + 1e-6) * (1.0 + w)
    assert _rel(out, ref) < 1e-5
    if skip:
        assert _rel(total, s) < 1e-6


def test_silu_mul_kernel():
    gen = torch.Generator().manual_seed(7)
    gu = torch.randn(5, 2 * 1500, generator=gen)
    ref = torch.nn.functional.silu(gu[:, :1500]) * gu[:, 1500:]
    assert _rel(kernels.silu_mul(gu.to(DEVICE)), ref) < 1e-5


@pytest.mark.parametrize("rotary", [64, 32])
def test_rope_kernel_matches_reference(rotary):
    gen = torch.Generator().manual_seed(8)
    b, t, nh, nkv, hd = 2, 5, 4, 2, 64
    qkv = torch.randn(b, t, (nh + 2 * nkv) * hd, generator=gen)
    freqs = torch.arange(t).float()[:, None] * torch.rand(rotary // 2, generator=gen)[None, :]
    emb = torch.cat([freqs, freqs], -1)
    ref = qkv.clone()
    heads = ref[..., : (nh + nkv) * hd].reshape(b, t, nh + nkv, hd).transpose(1, 2)
    ref[..., : (nh + nkv) * hd] = apply_rope(heads, emb.cos(), emb.sin()).transpose(1, 2).reshape(b, t, -1)
    out = qkv.to(DEVICE)
    kernels.rope_(out, freqs.cos().to(DEVICE), freqs.sin().to(DEVICE), nh + nkv, hd)
    assert _rel(out, ref) < 1e-5
