import pytest
import torch

from inferc.core.errors import RecipeError
from inferc.passes import get_pass, make_config
from inferc.calibration.distributed import Batch, Reducer
from inferc.passes.quantize_awq import _InputSampler, fold_scales, scale_groups
from quant4_helpers import calib_set, context, load, logits, mean_kl


@pytest.mark.parametrize("family", ["llama", "qwen3", "gemma2"])
def test_folding_scales_keeps_the_function(tiny_checkpoint, family):
    model = load(tiny_checkpoint(family))
    ids = calib_set(seed=2).tokens[:2]
    base = logits(model, ids)
    g = torch.Generator().manual_seed(0)
    folded = 0
    for layer in range(model.spec.num_layers):
        groups, skipped = scale_groups(model, layer)
        assert skipped  # the tiny models use grouped-query attention: v->o is not foldable
        for grp in groups:
            cols = model.tensors.shape(grp.consumers[0])[1]
            fold_scales(model, grp, torch.rand(cols, generator=g) * 4 + 0.25)
            folded += 1
    after = logits(model, ids)
    assert folded == 3 * model.spec.num_layers
    assert not torch.equal(model.tensors.get("layers.0.mlp.up.weight").float(), load(tiny_checkpoint(family)).dense("layers.0.mlp.up.weight").float())
    torch.testing.assert_close(after, base, rtol=1e-4, atol=1e-4)


def load_with_salient_channels(path):
    """The tiny model with a few input channels of every linear 8x larger than the rest,
    as trained LLMs have (random weights have none, leaving AWQ nothing to protect)."""
    model = load(path)
    for name in [n for n in model.tensors.names() if n.startswith("layers.") and n.endswith("norm.weight") and ".attn." not in n]:
        w = model.tensors.get(name).float().clone()
        w[:: w.numel() // 4] *= 8
        model.tensors.set(name, w)
    return model


@pytest.mark.parametrize("fmt", ["int4", "nvfp4"])
def test_awq_runs_and_is_no_worse_than_rtn(tiny_checkpoint, fmt):
    path = tiny_checkpoint("llama")
    calib = calib_set(n=16)
    ids = calib.tokens[:4]
    base = logits(load_with_salient_channels(path), ids)
    results = {}
    for name in ("quantize_rtn", "quantize_awq"):
        model = load_with_salient_channels(path)
        cls = get_pass(name)
        ctx = context(model, calib)
        results[name] = (cls(make_config(cls, {"format": fmt})).run(model, ctx), ctx)
    awq, ctx = results["quantize_awq"]
    assert set(awq.weights) == set(awq.linear_names())
    assert all(q.algorithm == "awq" for q in awq.weights.values())
    assert any(e.kind == "awq_scale" for e in ctx.events)
    assert any(e.kind == "awq_skip" for e in ctx.events)
    assert mean_kl(base, logits(awq, ids)) < 0.75 * mean_kl(base, logits(results["quantize_rtn"][0], ids))


def test_scales_only_then_gptq(tiny_checkpoint):
    """quantize: false folds AWQ's scales and leaves the (same-function) weights dense;
    quantize_gptq then rounds them."""
    path = tiny_checkpoint("llama")
    calib = calib_set(n=16)
    ids = calib.tokens[:4]
    model = load(path)
    base = logits(model, ids)
    awq = get_pass("quantize_awq")
    awq(make_config(awq, {"format": "int4", "quantize": False})).run(model, context(model, calib))
    assert not model.weights
    torch.testing.assert_close(logits(model, ids), base, rtol=1e-4, atol=1e-4)
    assert not torch.equal(model.tensors.get("layers.0.mlp.up.weight").float(), load(path).dense("layers.0.mlp.up.weight").float())
    gptq = get_pass("quantize_gptq")
    gptq(make_config(gptq, {"format": "int4"})).run(model, context(model, calib))
    assert len(model.weights) == len(model.linear_names()) - ("lm_head.weight" in model.linear_names())
    assert mean_kl(base, logits(model, ids)) < 0.5
    with pytest.raises(RecipeError, match="quantize: false leaves the weights dense"):
        make_config(awq, {"format": "fp8", "activations": "fp8", "quantize": False})


def test_sampler_keeps_every_stride_th_whole_sequence_across_batches_and_shards():
    sampler = _InputSampler(stride=3)
    seqs = torch.arange(10, dtype=torch.float32)[:, None, None].expand(10, 5, 2)  # sequence i is all i
    for shard, first, stop in ((0, 0, 4), (0, 4, 6), (1, 6, 8), (1, 8, 10)):
        sampler.observe("w", seqs[first:stop], Batch(shard, first, torch.zeros(0)))
    sampler.reduce(Reducer(), [0, 1])
    x0, i0 = sampler.x("w", 0)
    x1, i1 = sampler.x("w", 1)
    assert x0.shape == (2, 5, 2) and x0[:, 0, 0].tolist() == [0, 3] and i0.tolist() == [0, 1]
    assert x1[:, 0, 0].tolist() == [6, 9] and i1.tolist() == [2, 3]
    assert torch.equal(sampler.mean("w"), torch.full((2,), 4.5))
