"""FP8 W8A8: the RTN pass, and GPTQ driving the same FP8 format (a combination of
existing pieces), which must lower the output error of round-to-nearest."""

from __future__ import annotations

import pytest
import torch

from inferc.core.errors import RecipeError
from inferc.core.ir import Granularity, QuantFormat
from inferc.passes import get_pass, make_config
from quant4_helpers import calib_set, context, load, logits, mean_kl


def _run(path, pass_name, options, calib):
    model = load(path)
    cls = get_pass(pass_name)
    cls(make_config(cls, options)).run(model, context(model, calib))
    return model


def test_fp8_static_annotates_every_linear(tiny_checkpoint):
    path = tiny_checkpoint("llama")
    model = _run(path, "quantize_fp8", {"activations": "static"}, calib_set())
    names = model.linear_names()
    assert all(model.weights[n].format is QuantFormat.FP8_E4M3 for n in names)
    assert all(model.activations[n].granularity is Granularity.TENSOR and model.activations[n].scale > 0 for n in names)


def test_gptq_into_fp8_beats_round_to_nearest(tiny_checkpoint):
    path = tiny_checkpoint("llama")
    calib = calib_set(n=16, length=64)
    ids = calib_set(n=4, length=64, seed=7).tokens  # held out from calibration
    ref = logits(load(path), ids, quantized=False)
    rtn = _run(path, "quantize_fp8", {"activations": "static"}, calib)
    gptq = _run(path, "quantize_gptq", {"format": "fp8", "activations": "fp8", "group_size": None}, calib)
    assert all(gptq.weights[n].format is QuantFormat.FP8_E4M3 and gptq.weights[n].algorithm == "gptq" for n in gptq.linear_names())
    assert set(gptq.activations) == set(rtn.activations)
    kl_rtn, kl_gptq = mean_kl(ref, logits(rtn, ids)), mean_kl(ref, logits(gptq, ids))
    assert kl_gptq < kl_rtn, f"GPTQ-FP8 KL {kl_gptq:.3e} not below RTN-FP8 KL {kl_rtn:.3e}"


def test_fp8_activations_need_fp8_weights():
    cls = get_pass("quantize_gptq")
    with pytest.raises(RecipeError, match="activations: fp8 .* needs format: fp8, found format: int4"):
        make_config(cls, {"format": "int4", "activations": "fp8"})


def test_ignore_patterns_must_match_a_linear(tiny_checkpoint):
    model = load(tiny_checkpoint("llama"))
    cls = get_pass("quantize_fp8")
    cls(make_config(cls, {"activations": "dynamic", "ignore": ["lm_head", "model.layers.0.*"]})).check(model)  # lm_head counts, tied or not
    typo = cls(make_config(cls, {"activations": "dynamic", "ignore": ["lm_head", "model.layer.0.*"]}))
    with pytest.raises(RecipeError, match="pattern 'model.layer.0.\\*' matches no linear of this model"):
        typo.check(model)
    with pytest.raises(RecipeError, match="matches no linear"):
        typo.run(model, context(model, calib_set()))
    assert not model.weights  # refused before quantizing anything
