import pytest
import torch

from inferc.calibration.dataset import CalibrationSet
from inferc.core.errors import CalibrationError
from inferc.passes import get_pass, make_config
from inferc.core.numerics.gptq import HessianAccumulator
from inferc.core.numerics.int4 import INT4WeightFormat
from quant4_helpers import calib_set, context, load, logits, mean_kl


def _run(path, name="quantize_gptq", calib=None, **options):
    model = load(path)
    cls = get_pass(name)
    calib = calib if calib is not None else calib_set(n=16)
    ctx = context(model, calib)
    return cls(make_config(cls, options)).run(model, ctx), ctx


@pytest.mark.parametrize("options", [dict(act_order=True), dict(act_order=False, sequential=False), dict(format="nvfp4")])
def test_gptq_beats_rtn_on_calibration_tokens(tiny_checkpoint, options):
    path = tiny_checkpoint("llama")
    ids = calib_set(n=16).tokens[:4]
    base = logits(load(path), ids)
    fmt = options.get("format", "int4")
    rtn, _ = _run(path, "quantize_rtn", format=fmt)
    gptq, ctx = _run(path, **options)
    assert set(gptq.weights) == set(gptq.linear_names())
    assert all(q.algorithm == "gptq" for q in gptq.weights.values())
    if options.get("act_order") and fmt == "int4":
        assert gptq.weights["layers.0.mlp.down.weight"].g_idx is not None
    assert mean_kl(base, logits(gptq, ids)) < mean_kl(base, logits(rtn, ids))


def test_too_few_tokens_refused(tiny_checkpoint):
    few = CalibrationSet(tokens=torch.randint(0, 256, (1, 100)), source="few")
    with pytest.raises(CalibrationError, match="at least as many calibration tokens as the widest linear input \\(128\\)"):
        _run(tiny_checkpoint("llama"), calib=few)


def test_all_zero_inputs_fall_back_to_rtn_with_event(tiny_checkpoint):
    model = load(tiny_checkpoint("llama"))
    cls = get_pass("quantize_gptq")
    pass_ = cls(make_config(cls, {}))
    ctx = context(model, calib_set())
    name = "layers.0.mlp.down.weight"
    pass_._quantize_group(model, ctx, [name], INT4WeightFormat(group_size=64), HessianAccumulator.zeros(128))
    assert model.weights[name].algorithm == "rtn"
    assert [e.kind for e in ctx.events] == ["fallback"] and "all zero" in ctx.events[0].detail
