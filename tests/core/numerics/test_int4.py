import pytest
import torch

from inferc.core.errors import RecipeError
from inferc.core.numerics import dequantize
from inferc.core.numerics.int4 import INT4WeightFormat, pack_int4_to_int32


def _w(rows=48, cols=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g) * 0.05


def _sqnr_db(w, w_hat):
    return 10 * torch.log10(w.pow(2).sum() / (w - w_hat).pow(2).sum()).item()


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("group_size", [32, 64, 128, None])
def test_roundtrip_error_bounded_by_half_step(symmetric, group_size):
    fmt = INT4WeightFormat(group_size=group_size, symmetric=symmetric)
    w = _w()
    qp = fmt.choose_qparams(w)
    q = fmt.quantize(w, qp)
    w_hat = dequantize(q)
    if symmetric:
        assert int(q.data.min()) >= -8 and int(q.data.max()) <= 7
    else:
        assert int(q.data.min()) >= 0 and int(q.data.max()) <= 15
    step = fmt.dequantize(q).sub(w).abs()
    scale_cols = qp.scale.repeat_interleave(w.shape[1] // qp.scale.shape[1], dim=1)
    assert (step <= scale_cols * 0.5 + 1e-7).all()
    assert torch.equal(w_hat, fmt.fake_quantize(w, qp))
    assert _sqnr_db(w, w_hat) > 15.0


def test_slice_of_whole_groups_matches_full_tensor():
    fmt = INT4WeightFormat(group_size=32, symmetric=False)
    w = _w()
    full = fmt.quantize(w, fmt.choose_qparams(w))
    part = w[:, 64:128]
    sub = fmt.quantize(part, fmt.choose_qparams(part))
    assert torch.equal(sub.data, full.data[:, 64:128])
    assert torch.equal(sub.scale, full.scale[:, 2:4])


def test_single_column_with_group_params():
    fmt = INT4WeightFormat(group_size=32)
    w = _w()
    qp = fmt.choose_qparams(w[:, :32])
    col = fmt.fake_quantize(w[:, 5:6], qp)
    assert torch.allclose(col, fmt.fake_quantize(w[:, :32], qp)[:, 5:6])


def test_group_size_must_divide():
    with pytest.raises(RecipeError, match="does not divide the input dimension 576"):
        INT4WeightFormat(group_size=128).choose_qparams(torch.randn(4, 576))


def test_g_idx_dequantize():
    fmt = INT4WeightFormat(group_size=32)
    w = _w(cols=64)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(1))
    wp = w[:, perm]
    q = fmt.quantize(wp, fmt.choose_qparams(wp))
    inv = torch.argsort(perm)
    q.data = q.data[:, inv]
    q.g_idx = (torch.arange(64) // 32)[inv].to(torch.int32)
    assert torch.allclose(dequantize(q), fmt.fake_quantize(wp, fmt.choose_qparams(wp))[:, inv])


def test_pack_nibble_order():
    codes = torch.tensor([[-8, -7, 0, 1, 2, 3, 6, 7]], dtype=torch.int8)
    packed = pack_int4_to_int32(codes, offset=8)
    word = int(packed[0, 0]) & 0xFFFFFFFF
    assert [(word >> (4 * j)) & 0xF for j in range(8)] == [0, 1, 8, 9, 10, 11, 14, 15]


@pytest.mark.parametrize("symmetric", [True, False])
def test_mse_observer_shrinks_ranges_and_lowers_error(symmetric):
    w = _w()
    w[3, 7] = 1.0  # one outlier stretches its group's min-max range
    minmax = INT4WeightFormat(group_size=64, symmetric=symmetric)
    mse = INT4WeightFormat(group_size=64, symmetric=symmetric, observer="mse")
    p_minmax, p_mse = minmax.choose_qparams(w), mse.choose_qparams(w)
    assert bool((p_mse.scale <= p_minmax.scale + 1e-12).all()) and bool((p_mse.scale < p_minmax.scale).any())
    err = {k: (f.fake_quantize(w, p) - w).abs().pow(2.4).sum().item() for k, f, p in [("minmax", minmax, p_minmax), ("mse", mse, p_mse)]}
    assert err["mse"] < err["minmax"]
    # column weights move the choice toward the heavily weighted columns
    cw = torch.ones(w.shape[1])
    cw[:32] = 100.0
    p_w = mse.choose_qparams(w, col_weights=cw)
    assert not torch.equal(p_w.scale, p_mse.scale)


def test_exact_symmetric_grid_keeps_the_extremes_and_full_clips_plus_amax():
    w = _w(rows=4, cols=64)
    w[0, 5], w[1, 9] = 0.5, -0.5  # the extremes of their groups, one positive, one negative
    exact = INT4WeightFormat(group_size=64, sym_range="exact")
    full = INT4WeightFormat(group_size=64)
    qe, qf = exact.choose_qparams(w), full.choose_qparams(w)
    torch.testing.assert_close(qe.scale[:2, 0], torch.tensor([0.5 / 7, 0.5 / 7]))
    we, wf = exact.fake_quantize(w, qe), full.fake_quantize(w, qf)
    assert we[0, 5] == pytest.approx(0.5) and we[1, 9] == pytest.approx(-0.5)
    assert wf[0, 5] == pytest.approx(0.5 * 7 / 7.5)  # code 7 of amax / 7.5: half a step short
    assert abs(wf[1, 9] + 0.5) <= 0.5 * 0.5 / 7.5 + 1e-6  # -amax is -7.5 steps: within half a step
    assert int(exact.codes(w, qe).min()) >= -7
