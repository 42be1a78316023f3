import pytest
import torch

from inferc.core.errors import UnsupportedError
from inferc.core.numerics import dequantize
from inferc.core.numerics.fp8 import FP8WeightFormat
from inferc.core.numerics.gptq import (
    HessianAccumulator,
    SingularHessianError,
    accumulate_hessian,
    gptq_quantize,
    gptq_quantize_shared,
    inverse_cholesky,
)
from inferc.core.numerics.int4 import INT4WeightFormat
from inferc.core.numerics.nvfp4 import NVFP4WeightFormat


def _problem(rows=32, cols=128, tokens=2048, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * 0.05
    mix = torch.randn(cols, cols, generator=g) / cols**0.5
    scales = torch.rand(cols, generator=g) * 3 + 0.1
    x = (torch.randn(tokens, cols, generator=g) @ mix + torch.randn(tokens, cols, generator=g) * 0.3) * scales
    acc = HessianAccumulator.zeros(cols)
    for chunk in x.split(500):
        accumulate_hessian(acc, chunk)
    return w, x, acc


def _out_err(x, w, w_hat):
    return ((x @ (w - w_hat).T) ** 2).mean().item()


def test_hessian_accumulates_mean_outer_product():
    _, x, acc = _problem()
    assert acc.count == x.shape[0]
    torch.testing.assert_close(acc.hessian, 2 * x.T @ x / x.shape[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "fmt,act_order,static",
    [
        (INT4WeightFormat(group_size=32), False, False),
        (INT4WeightFormat(group_size=32, symmetric=False), True, False),
        (INT4WeightFormat(group_size=32), True, True),
        (INT4WeightFormat(group_size=None), True, False),
        (NVFP4WeightFormat(), False, False),
        (NVFP4WeightFormat(), True, True),
    ],
)
def test_gptq_beats_rtn_on_output_error(fmt, act_order, static):
    w, x, acc = _problem()
    qw, loss = gptq_quantize(w, acc.hessian, fmt, block_size=64, act_order=act_order, static_groups=static)
    w_gptq = dequantize(qw)
    bound = fmt.for_tensor(w) if hasattr(fmt, "for_tensor") else fmt
    w_rtn = bound.fake_quantize(w, bound.choose_qparams(w))
    assert loss > 0
    assert _out_err(x, w, w_gptq) < 0.8 * _out_err(x, w, w_rtn)
    assert (qw.g_idx is not None) == (act_order and not static and fmt.group_size == 32)
    # the stored codes reproduce exactly what GPTQ computed column by column
    assert torch.equal(dequantize(qw), fmt.dequantize(qw))


@pytest.mark.parametrize(
    "fmt,act_order,static",
    [
        (INT4WeightFormat(group_size=32, observer="mse"), True, True),
        (INT4WeightFormat(group_size=32, symmetric=False), True, False),
        (INT4WeightFormat(group_size=None), False, False),
        (FP8WeightFormat(per_channel=False), True, False),
        (NVFP4WeightFormat(), True, True),
    ],
)
def test_shared_input_weights_come_out_as_if_quantized_alone(fmt, act_order, static):
    """q/k/v (or gate/up) share a Hessian: stacked into one GPTQ problem where the format
    allows, each must come out as GPTQ of that weight alone."""
    w, _, acc = _problem(rows=48)
    parts = [w[:32] * 3, w[32:40], w[40:]]  # different ranges: a tensor-wide scale would differ
    together = gptq_quantize_shared(parts, acc.hessian, fmt, block_size=64, act_order=act_order, static_groups=static)
    for part, (qw, loss) in zip(parts, together):
        alone, alone_loss = gptq_quantize(part, acc.hessian, fmt, block_size=64, act_order=act_order, static_groups=static)
        assert qw.shape == alone.shape
        torch.testing.assert_close(dequantize(qw), dequantize(alone), rtol=0, atol=1e-6)
        assert loss == pytest.approx(alone_loss, rel=1e-4)
        assert (qw.g_idx is None) == (alone.g_idx is None)


def test_g_idx_groups_are_whole():
    w, _, acc = _problem()
    qw, _ = gptq_quantize(w, acc.hessian, INT4WeightFormat(group_size=32), act_order=True)
    assert torch.bincount(qw.g_idx.long()).tolist() == [32, 32, 32, 32]


def test_nvfp4_act_order_needs_static_groups():
    w, _, acc = _problem()
    with pytest.raises(UnsupportedError, match="static_groups"):
        gptq_quantize(w, acc.hessian, NVFP4WeightFormat(), act_order=True)


def test_dead_columns_and_damp_retry():
    w, _, acc = _problem(cols=64)
    h = acc.hessian
    h[:, 3] = 0
    h[3, :] = 0  # an input that never fires
    qw, _ = gptq_quantize(w, h, INT4WeightFormat(group_size=32))
    assert (dequantize(qw)[:, 3] == 0).all()
    indefinite = torch.diag(torch.tensor([1.0, 1.0, -1.5, 1.0]))
    u, damp, retries = inverse_cholesky(indefinite, 0.01)
    assert retries == 3 and damp == pytest.approx(10.0)  # mean diag 0.375: needs d > 4 and torch.isfinite(u).all()


def test_hessian_singular_after_retries_raises():
    h = torch.diag(torch.tensor([1.0, -1e6, 1.0, 1.0]))
    with pytest.raises(SingularHessianError, match="not positive definite"):
        inverse_cholesky(h, 0.01, retries=2)


@pytest.mark.parametrize("symmetric,act_order", [(True, False), (True, True), (False, False)])
def test_mse_observer_weighted_by_hessian_lowers_output_error(symmetric, act_order):
    w, x, acc = _problem()
    errs = {}
    for observer in ("minmax", "mse"):
        fmt = INT4WeightFormat(group_size=32, symmetric=symmetric, observer=observer)
        qw, _ = gptq_quantize(w, acc.hessian, fmt, block_size=64, act_order=act_order)
        errs[observer] = _out_err(x, w, dequantize(qw))
    assert errs["mse"] < errs["minmax"], errs
