import pytest
import torch

from inferc.core.errors import RecipeError
from inferc.core.ir import QuantFormat
from inferc.passes import get_pass, make_config
from inferc.core.numerics import dequantize
from quant4_helpers import calib_set, context, load, logits, mean_kl


def _run(path, **options):
    model = load(path)
    cls = get_pass("quantize_rtn")
    calib = calib_set()
    ctx = context(model, calib)
    return cls(make_config(cls, options)).run(model, ctx), ctx


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_int4_auto_group_quantizes_every_linear(tiny_checkpoint, family):
    path = tiny_checkpoint(family)
    ids = calib_set(seed=1).tokens[:2]
    base = logits(load(path), ids)
    model, ctx = _run(path, format="int4", group_size="auto")
    assert set(model.weights) == set(model.linear_names())
    q = model.weights["layers.0.mlp.down.weight"]
    assert q.format is QuantFormat.INT4 and q.group_size == 128  # 128 inputs
    assert any(e.kind == "group_size" and "auto group size 64" in e.detail for e in ctx.events)
    kl = mean_kl(base, logits(model, ids))
    assert 0 < kl < 0.05


def test_group_size_that_does_not_divide_is_refused_before_any_work(tiny_checkpoint):
    with pytest.raises(RecipeError, match="group size 48 does not divide the input dimension 64"):
        _run(tiny_checkpoint("llama"), group_size=48)


def test_w4a4_needs_nvfp4_weights():
    cls = get_pass("quantize_rtn")
    with pytest.raises(RecipeError, match="needs format: nvfp4"):
        make_config(cls, {"format": "int4", "activations": "nvfp4"})


def test_mse_observer_is_int4_only():
    cls = get_pass("quantize_rtn")
    assert make_config(cls, {"format": "int4", "observer": "mse"}).observer == "mse"
    with pytest.raises(RecipeError, match="observer: mse searches INT4 group ranges; format nvfp4"):
        make_config(cls, {"format": "nvfp4", "observer": "mse"})
    with pytest.raises(RecipeError, match="observer"):
        make_config(cls, {"format": "int4", "observer": "percentile"})


def test_sym_range_is_int4_only_and_each_algorithm_resolves_auto():
    rtn, awq = get_pass("quantize_rtn"), get_pass("quantize_awq")
    with pytest.raises(RecipeError, match="sym_range chooses the symmetric INT4 grid; format nvfp4"):
        make_config(rtn, {"format": "nvfp4", "sym_range": "exact"})
    assert make_config(rtn, {}).int4_sym_range() == "full"
    assert make_config(awq, {}).int4_sym_range() == "exact"  # its clip search picks the clipping
    assert make_config(awq, {"clip_search": False}).int4_sym_range() == "full"
    assert make_config(awq, {"quantize": False}).int4_sym_range() == "full"
    assert make_config(awq, {"sym_range": "full"}).int4_sym_range() == "full"


def test_nvfp4_w4a4_annotates_static_input_scales(tiny_checkpoint):
    path = tiny_checkpoint("llama")
    ids = calib_set(seed=1).tokens[:2]
    base = logits(load(path), ids)
    w4a16, _ = _run(path, format="nvfp4")
    w4a4, _ = _run(path, format="nvfp4", activations="nvfp4")
    name = "layers.1.attn.q.weight"
    assert w4a4.weights[name].format is QuantFormat.NVFP4 and not w4a16.activations
    assert w4a4.activations[name].global_scale > 0
    kl16, kl4 = mean_kl(base, logits(w4a16, ids)), mean_kl(base, logits(w4a4, ids))
    assert 0 < kl16 < kl4


@pytest.mark.slow
def test_smollm2_auto_group_size_is_64_and_reported(smollm2_dir):
    model = load(smollm2_dir)
    cls = get_pass("quantize_rtn")
    ctx = context(model, calib_set(vocab=model.spec.vocab_size))
    cls(make_config(cls, {"format": "int4", "group_size": "auto", "ignore": ["lm_head", "layers.1*", "layers.2*"]})).run(model, ctx)
    q = model.weights["layers.0.attn.q.weight"]
    assert q.group_size == 64 and q.scale.shape == (576, 9)  # 576 = 9 x 64: 128 does not divide it
    assert model.weights["layers.0.mlp.down.weight"].group_size == 128  # 1536 = 12 x 128
    assert any("auto group size 64 for input dimension 576" in e.detail for e in ctx.events)


    w = model.dense("layers.0.mlp.up.weight").float()
    w_hat = dequantize(model.weights["layers.0.mlp.up.weight"])
    assert ((w - w_hat).norm() / w.norm()).item() < 0.15
