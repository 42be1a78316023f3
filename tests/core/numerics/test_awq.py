import torch

from inferc.core.numerics.awq import apply_clip, awq_scales, rtn_fake_quantize, search_clip, search_scales
from inferc.core.numerics.int4 import INT4WeightFormat
from inferc.core.numerics.nvfp4 import NVFP4WeightFormat


def _inputs(tokens=1024, cols=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, cols, generator=g)
    x[:, :4] *= 30.0  # a few salient channels, as in real activations
    w = torch.randn(64, cols, generator=g) * 0.05
    return x, w


def test_scales_normalised_and_monotone():
    mean = torch.tensor([0.1, 1.0, 10.0])
    s = awq_scales(mean, 0.5)
    assert torch.isclose(s.max() * s.min(), torch.tensor(1.0))
    assert torch.equal(torch.argsort(s), torch.arange(3))
    assert torch.allclose(awq_scales(mean, 0.0), torch.ones(3))


def test_scale_search_protects_salient_channels():
    x, w = _inputs()
    for fmt in (INT4WeightFormat(group_size=32), NVFP4WeightFormat()):
        s, alpha, losses = search_scales(x, x.abs().mean(0), [w, w[:16] * 2], [fmt, fmt], grid=10)
        assert alpha > 0 and min(losses) < 0.9 * losses[0]  # losses[0] is alpha = 0: plain RTN
        assert s.shape == (128,) and s[:4].min() > s[4:].max()


def test_clip_search_lowers_output_error():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(512, 128, generator=g)
    w = torch.randn(64, 128, generator=g) * 0.05
    w[:, 7] *= 8  # an outlier weight per row stretches its group's range
    fmt = INT4WeightFormat(group_size=32)
    max_val = search_clip(x, w, fmt, grid=20)
    assert max_val.shape == (64, 4)
    clipped = apply_clip(w, max_val)
    err = lambda wq: ((x @ (w - wq).T) ** 2).mean().item()  # noqa: E731
    assert err(rtn_fake_quantize(fmt, clipped)) < err(rtn_fake_quantize(fmt, w))
    assert (clipped.abs() <= w.abs() + 1e-12).all()


def test_duo_scaling_divides_by_weight_magnitude_and_both_takes_the_better():
    x, w = _inputs()
    w[:, 10] *= 8.0  # a column of large weights: duo scaling shrinks its scale
    fmt = INT4WeightFormat(group_size=32)
    mean = x.abs().mean(0)
    s_off, _, l_off = search_scales(x, mean, [w], [fmt], grid=10, duo="off")
    s_on, _, l_on = search_scales(x, mean, [w], [fmt], grid=10, duo="on")
    s_both, _, l_both = search_scales(x, mean, [w], [fmt], grid=10, duo="both")
    assert len(l_off) == len(l_on) == 10 and len(l_both) == 20
    assert s_on[10] < s_on[11:].median()  # the large-weight column is protected less
    assert min(l_both) == min(min(l_off), min(l_on))
    assert torch.equal(s_both, s_off if min(l_off) <= min(l_on) else s_on)


def test_search_minimises_the_error_of_the_block_it_is_given():
    """A block that reads only the first linear's output makes the search ignore the
    second: its losses are those of the first linear searched alone."""
    x, w = _inputs()
    fmt = INT4WeightFormat(group_size=32)
    mean = x.abs().mean(0)
    _, _, alone = search_scales(x, mean, [w], [fmt], grid=10)
    _, _, first_only = search_scales(x, mean, [w, w[:16] * 5], [fmt, fmt], grid=10, block=lambda x, ws: x @ ws[0].T)
    assert first_only == alone
    _, _, both = search_scales(x, mean, [w, w[:16] * 5], [fmt, fmt], grid=10)
    assert both != alone


def test_grid_and_clip_errors_of_disjoint_samples_add_up():
    """The searches can be split over shards (and ranks): errors are sums over samples."""
    from inferc.core.numerics.awq import candidate_errors, clip_errors, pick_clip, pick_scales, scale_candidates

    x, w = _inputs(tokens=512)
    fmt = INT4WeightFormat(group_size=32)
    cands = scale_candidates(x.abs().mean(0), [w], [fmt], grid=10)
    whole, n = candidate_errors(x, [w], [fmt], cands)
    (a, na), (b, nb) = candidate_errors(x[:200], [w], [fmt], cands), candidate_errors(x[200:], [w], [fmt], cands)
    assert na + nb == n
    torch.testing.assert_close(a + b, whole, rtol=1e-9, atol=0)
    s, alpha, losses = search_scales(x, x.abs().mean(0), [w], [fmt], grid=10)
    assert (pick_scales(cands, a + b, n)[1], losses) == (alpha, (whole / n).tolist())
    clip = clip_errors(x[:200], w, fmt) + clip_errors(x[200:], w, fmt)
    torch.testing.assert_close(clip, clip_errors(x, w, fmt), rtol=1e-5, atol=1e-6)
    assert torch.equal(pick_clip(w, fmt, clip_errors(x, w, fmt)), search_clip(x, w, fmt))
