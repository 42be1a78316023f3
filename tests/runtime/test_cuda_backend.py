"""The CUDA backend on tiny models: its logits agree with the torch reference of the
same (quantized) IR, and CUDA-graph decoding continues a prefill exactly as a longer
prefill computes it. Tolerances: bf16 activations through two layers against the
float32 reference, ||out - ref|| / ||ref|| < 3e-2 (FP8: no more than twice the
reference's own bf16 drift; in float32 through the Triton kernels, < 5e-3); decode against prefill, both bf16,
< 2e-2. Skipped without CUDA."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from inferc.formats.hf.reader import load_checkpoint  # noqa: E402
from inferc.passes import PassContext, get_pass, make_config  # noqa: E402
from inferc.runtime.reference import ReferenceModel  # noqa: E402
from inferc.runtime.torch_backend import TorchBackend  # noqa: E402

pytestmark = pytest.mark.gpu

QUANT = {
    "bf16": None,
    "fp8": ("quantize_fp8", {"activations": "dynamic"}),
    "int4": ("quantize_rtn", {"format": "int4", "group_size": 32}),
    "int4-zero": ("quantize_rtn", {"format": "int4", "group_size": 32, "symmetric": False}),
    "nvfp4": ("quantize_rtn", {"format": "nvfp4"}),
}


def _ir(tiny_checkpoint, family: str, quant: str):
    ir = load_checkpoint(tiny_checkpoint(family))
    ctx = PassContext()
    for name in ("fuse_qkv", "fuse_gate_up", "fuse_residual_norm"):
        cls = get_pass(name)
        ir = cls(make_config(cls, {})).run(ir, ctx)
    if QUANT[quant] is not None:
        name, opts = QUANT[quant]
        cls = get_pass(name)
        ir = cls(make_config(cls, opts)).run(ir, ctx)
    return ir


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float().cpu(), b.float().cpu()
    assert torch.isfinite(a).all()
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("family,quant", [("llama", q) for q in QUANT] + [("phi3", "int4"), ("gemma2", "bf16"), ("gemma2", "fp8"), ("qwen3", "bf16")])
def test_cuda_logits_match_reference(tiny_checkpoint, family, quant):
    from inferc.runtime.gpu import CudaBackend

    ir = _ir(tiny_checkpoint, family, quant)
    ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(0))
    ref = TorchBackend(ir).logits(ids)
    gpu = CudaBackend(ir, max_len=64)
    tol = 3e-2
    if quant == "fp8":
        # FP8 activations are re-quantized at every linear, so a bf16 difference that moves
        # a value across an E4M3 rounding boundary costs a whole E4M3 step: the torch
        # reference itself, run in bf16, drifts from its float32 run by several times the
        # bf16 error. The GPU may drift as much, not more (see the float32 test for exactness).
        drift = _rel(ReferenceModel(ir, device="cuda", dtype=torch.bfloat16).forward(ids), ref)
        tol = max(tol, 2 * drift)
    assert _rel(gpu.logits(ids), ref) < tol


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_cuda_fp8_in_float32_matches_reference(tiny_checkpoint, family):
    """In float32 the GPU's FP8 activations see the reference's inputs up to summation
    order, so they round to the same E4M3 codes: the Triton decode kernels (chunks of 8
    rows, one-row steps; activations quantized as the format does) agree with the
    reference of the same IR closely. (Prefill of more than 16 rows, `fp8_quantize_rows`
    then `torch._scaled_mm`, differed by 2.3e-2 on gemma2 in float32 on an H200, though
    `_scaled_mm` alone matched its exact product within 1e-4 there: not explained yet,
    so that path is left to the bf16 tests.)"""
    from inferc.runtime.gpu import CudaBackend

    ir = _ir(tiny_checkpoint, family, "fp8")
    ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(0))
    ref = TorchBackend(ir).logits(ids)
    gpu = CudaBackend(ir, max_len=64, dtype=torch.float32, prefill_chunk=8)
    assert _rel(gpu.logits(ids), ref) < 5e-3
    gpu.prefill(ids[:1, :20], new_tokens=4)
    for t in range(20, 24):  # one row: the FP8 GEMV
        assert _rel(gpu.decode(ids[:1, t]), ref[:1, t]) < 5e-3, t


@pytest.mark.parametrize("quant", ["bf16", "fp8", "int4"])
def test_graph_decode_continues_prefill(tiny_checkpoint, quant):
    from inferc.runtime.gpu import CudaBackend

    ir = _ir(tiny_checkpoint, "llama", quant)
    ids = torch.randint(0, 256, (3, 20), generator=torch.Generator().manual_seed(1))
    gpu = CudaBackend(ir, max_len=32, prefill_chunk=8)  # chunked prefill too
    full = gpu.logits(ids)  # [3, 20, vocab]
    gpu.prefill(ids[:, :12], new_tokens=8)
    for t in range(12, 20):
        step = gpu.decode(ids[:, t])
        assert _rel(step, full[:, t]) < 2e-2, t
