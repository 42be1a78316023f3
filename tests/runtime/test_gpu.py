"""On a CUDA GPU: the reference forward agrees with the CPU, and the FP8 emulation the
CPU runtime uses agrees with the hardware's FP8 GEMM (Hopper/Ada `torch._scaled_mm`).
Skipped where no GPU is present (CI)."""

from __future__ import annotations

import pytest
import torch

from inferc.calibration.corpus import sample_from_model
from inferc.calibration.stats import collect_activation_stats
from inferc.core.ir import ActivationQuant, Granularity, QuantFormat
from inferc.formats.hf.reader import load_checkpoint
from inferc.passes import PassContext, get_pass, make_config
from inferc.core.numerics.fp8 import FP8WeightFormat, fake_quantize_fp8_activation, fp8_round, fp8_scale
from inferc.runtime.reference import ReferenceModel

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("model_type", ["llama", "qwen3", "gemma2"])
def test_cuda_forward_matches_cpu(tiny_checkpoint, model_type):
    ir = load_checkpoint(tiny_checkpoint(model_type))
    ids = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(0))
    cpu = ReferenceModel(ir).forward(ids)
    gpu = ReferenceModel(ir, device="cuda").forward(ids).cpu()
    assert (gpu - cpu).abs().max() / cpu.abs().max() < 1e-3  # TF32/cuBLAS accumulation order


def _needs_fp8_gemm() -> None:
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) < (8, 9):
        pytest.skip(f"FP8 GEMMs need sm89 or newer; this GPU is sm{major}{minor}")


@pytest.mark.parametrize("per_token", [False, True])
def test_fp8_emulation_matches_hardware_gemm(per_token):
    _needs_fp8_gemm()
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(768, 512, generator=gen) * 0.05
    x = torch.randn(64, 512, generator=gen) * 2.0
    fmt = FP8WeightFormat(per_channel=True)
    q = fmt.quantize(w, fmt.choose_qparams(w))  # codes [768, 512], scale [768, 1]
    if per_token:
        aq = ActivationQuant(QuantFormat.FP8_E4M3, Granularity.TOKEN, dynamic=True)
        x_scale = fp8_scale(x.abs().amax(dim=-1, keepdim=True))  # [64, 1]
    else:
        aq = ActivationQuant(QuantFormat.FP8_E4M3, Granularity.TENSOR, dynamic=False, scale=fp8_scale(x.abs().amax()))
        x_scale = aq.scale.reshape(1, 1).expand(64, 1).contiguous()
    emulated = fake_quantize_fp8_activation(aq, x) @ fmt.dequantize(q).T  # what the CPU runtime computes
    x8 = fp8_round(x / x_scale).cuda()
    hw = torch._scaled_mm(
        x8, q.data.cuda().t(), scale_a=x_scale.cuda().float(), scale_b=q.scale.reshape(1, -1).cuda().float(), out_dtype=torch.float32
    ).cpu()
    rel = (hw - emulated).abs().max() / emulated.abs().max()
    # The products of two E4M3 codes are exact, but Hopper's FP8 tensor cores accumulate
    # with a reduced-precision mantissa (about 14 bits, per the DeepSeek-V3 report), so
    # sums over K=512 differ from the float32 emulation by ~2e-4 of the output range
    # (measured on an H100); a wrong scale or layout would be off by orders more.
    assert rel < 1e-3, f"hardware FP8 GEMM differs from the emulation by {rel:.2e}"


def test_fp8_pass_on_cuda_calibrates_and_runs(tiny_checkpoint):
    _needs_fp8_gemm()
    ir = load_checkpoint(tiny_checkpoint("llama"))
    calib = sample_from_model(ir, 2, 32, seed=0, device="cuda")
    ctx = PassContext(device="cuda", _stats_factory=lambda: collect_activation_stats(ir, calib, device="cuda"))
    pass_cls = get_pass("quantize_fp8")
    pass_cls(make_config(pass_cls, {"activations": "static"})).run(ir, ctx)
    ids = calib.tokens[:, :16]
    assert torch.allclose(ReferenceModel(ir, device="cuda").forward(ids).cpu(), ReferenceModel(ir).forward(ids), rtol=1e-3, atol=1e-3)
