"""FP8 E4M3 activations quantized exactly as compressed-tensors quantizes them when
transformers runs an exported checkpoint, in float32 and in bfloat16, bit for bit."""

from __future__ import annotations

import pytest
import torch

from inferc.core.ir import ActivationQuant, Granularity, QuantFormat
from inferc.core.numerics import fake_quantize_activation

ct_forward = pytest.importorskip("compressed_tensors.quantization.lifecycle.forward")
from compressed_tensors.quantization import QuantizationArgs  # noqa: E402
from compressed_tensors.quantization.utils import compute_dynamic_scales_and_zp  # noqa: E402


def _activations(dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 9, 96, generator=g) * torch.rand(1, 1, 96, generator=g) * 4  # [batch, tokens, features]
    x[0, 3, 5] = 900.0  # a massive activation
    x[1, 4] = 0.0  # an all-zero token
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_static_per_tensor_matches_compressed_tensors(dtype):
    x = _activations(dtype)
    scale = torch.tensor(0.6 * 900.0 / 448)  # float32 as exported; saturates the outlier
    ours = fake_quantize_activation(ActivationQuant(QuantFormat.FP8_E4M3, Granularity.TENSOR, dynamic=False, scale=scale), x)
    args = QuantizationArgs(num_bits=8, type="float", strategy="tensor", symmetric=True, dynamic=False)
    theirs = ct_forward.fake_quantize(x, scale.reshape(1).to(dtype), None, args)  # input_scale in the model dtype
    assert ours.dtype == theirs.dtype == dtype
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("strategy,granularity", [("token", Granularity.TOKEN), ("tensor", Granularity.TENSOR)])
def test_dynamic_matches_compressed_tensors(dtype, strategy, granularity):
    x = _activations(dtype)
    ours = fake_quantize_activation(ActivationQuant(QuantFormat.FP8_E4M3, granularity, dynamic=True), x)
    args = QuantizationArgs(num_bits=8, type="float", strategy=strategy, symmetric=True, dynamic=True)
    scale, zp = compute_dynamic_scales_and_zp(value=x, args=args, module=torch.nn.Module())
    theirs = ct_forward.fake_quantize(x, scale, zp, args)
    assert ours.dtype == theirs.dtype == dtype
    assert torch.equal(ours, theirs)
    assert torch.equal(ours[1, 4], torch.zeros_like(ours[1, 4]))
