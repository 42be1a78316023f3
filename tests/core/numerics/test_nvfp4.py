import pytest
import torch

from inferc.core.ir.quant import ActivationQuant, Granularity, QuantFormat
from inferc.core.numerics import dequantize, fake_quantize_activation
from inferc.core.numerics.nvfp4 import NVFP4WeightFormat, e2m1_codes, e2m1_decode, global_scale_for, pack_e2m1, unpack_e2m1


def _w(rows=64, cols=256, seed=0, dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, cols, generator=g) * 0.02).to(dtype)


def test_e2m1_rounding_ties_to_even_code():
    x = torch.tensor([0.0, 0.25, 0.26, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 7.0, -0.75, -0.1, 100.0])
    assert e2m1_decode(e2m1_codes(x)).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 6.0, -1.0, -0.0, 6.0]


def test_roundtrip_and_scales():
    w = _w()
    fmt = NVFP4WeightFormat()
    qp = fmt.choose_qparams(w)
    q = fmt.quantize(w, qp)
    assert q.scale.dtype == torch.float8_e4m3fn and q.scale.shape == (64, 16)
    assert torch.allclose(q.global_scale, w.float().abs().amax() / (6 * 448))
    w_hat = dequantize(q)
    assert torch.equal(w_hat, fmt.fake_quantize(w, qp))
    rel = (w_hat - w.float()).norm() / w.float().norm()
    assert rel < 0.15
    assert torch.equal(unpack_e2m1(pack_e2m1(q.data)), q.data)


def test_slices_need_fixed_global_scale():
    w = _w()
    fmt = NVFP4WeightFormat().for_tensor(w)
    full = fmt.quantize(w, fmt.choose_qparams(w))
    part = w[:, 32:96]
    sub = fmt.quantize(part, fmt.choose_qparams(part))
    assert torch.equal(sub.data, full.data[:, 32:96])
    assert torch.equal(sub.scale.view(torch.uint8), full.scale[:, 2:6].view(torch.uint8))


def test_w4a4_activation_quantizer():
    x = torch.randn(2, 5, 64)
    aq = ActivationQuant(QuantFormat.NVFP4, Granularity.BLOCK, dynamic=True, global_scale=global_scale_for(x.abs().amax()))
    x_hat = fake_quantize_activation(aq, x)
    assert x_hat.shape == x.shape
    rel = (x_hat - x).norm() / x.norm()
    assert 0.01 < rel < 0.15


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_bit_exact_against_modelopt(dtype):
    nvfp4_tensor = pytest.importorskip("modelopt.torch.quantization.qtensor.nvfp4_tensor", reason="pip install nvidia-modelopt")
    w = _w(rows=96, cols=320, seed=3, dtype=dtype)
    w[0, :16] = 0  # an all-zero block (scale 1.0 path)
    w[1, 16:32] = 1e-9  # a block whose scale underflows E4M3
    w[2, 5] = -w.float().abs().max() * 2  # the tensor amax, negative
    ref_packed, ref_scale, ref_scale_2 = nvfp4_tensor.NVFP4QTensor.quantize(w.clone(), 16)
    fmt = NVFP4WeightFormat()
    ours = fmt.pack(fmt.quantize(w, fmt.choose_qparams(w)))
    assert torch.equal(ours["weight"], ref_packed._quantized_data)
    assert torch.equal(ours["weight_scale"].view(torch.uint8), ref_scale.view(torch.uint8))
    assert torch.equal(ours["weight_scale_2"], ref_scale_2.float())


def test_code_rounding_matches_modelopt_on_ties():
    nvfp4_tensor = pytest.importorskip("modelopt.torch.quantization.qtensor.nvfp4_tensor", reason="pip install nvidia-modelopt")
    ties = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
    x = torch.cat([ties, -ties, torch.randn(200) * 3, torch.tensor([0.0, 6.0, 9.0, -9.0])])
    assert torch.equal(e2m1_codes(x), nvfp4_tensor.NVFP4QTensor._cast_fp4(x.clone()))
