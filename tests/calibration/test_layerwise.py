import pytest
import torch

from inferc.calibration.dataset import CalibrationSet
from inferc.calibration.layerwise import calibrate_layerwise, calibrate_linear_groups
from inferc.formats.hf.reader import load_checkpoint
from inferc.core.numerics.int4 import INT4WeightFormat
from inferc.runtime.reference import ReferenceModel


@pytest.mark.parametrize("sequential", [True, False])
def test_layer_inputs_follow_quantized_layers_in_sequential_mode(tiny_checkpoint, sequential):
    model = load_checkpoint(tiny_checkpoint("llama"))
    calib = CalibrationSet(torch.randint(0, 256, (3, 16), generator=torch.Generator().manual_seed(0)), "random")
    fmt = INT4WeightFormat(group_size=32)
    seen_inputs, observed = {}, {}

    def observer_for(i):
        return lambda name, x, batch: observed.setdefault(name, x.shape[-1])

    def quantize_layer(inputs):
        seen_inputs[inputs.layer] = torch.cat([st[f"h{inputs.layer}"] for st in inputs.hidden])
        for name in [n for n in model.linear_names() if n.startswith(f"layers.{inputs.layer}.")]:
            w = model.dense(name)
            model.quantize(name, fmt.quantize(w, fmt.choose_qparams(w)))

    calibrate_layerwise(model, calib, observer_for, quantize_layer, sequential=sequential, batch_size=2)
    assert set(observed) == set(model.linear_names())
    positions = torch.arange(16)
    ref = ReferenceModel(model, quantized=sequential)  # all layers are quantized now
    with torch.inference_mode():
        h0 = ref.start(calib.tokens)
        expected = ref.layer(0, h0, positions)["h1"]
    torch.testing.assert_close(seen_inputs[1], expected, rtol=1e-5, atol=1e-5)
    other = ReferenceModel(model, quantized=not sequential)
    with torch.inference_mode():
        assert not torch.allclose(seen_inputs[1], other.layer(0, h0, positions)["h1"], atol=1e-5)


@pytest.mark.parametrize("sequential", [True, False])
def test_linear_groups_are_calibrated_on_the_quantized_groups_before_them(tiny_checkpoint, sequential):
    """Sequential: every group's input is what the finished quantized model computes
    (so o_proj saw the quantized q/k/v of its own layer); otherwise the original model's."""
    model = load_checkpoint(tiny_checkpoint("llama"))
    calib = CalibrationSet(torch.randint(0, 256, (3, 16), generator=torch.Generator().manual_seed(0)), "random")
    fmt = INT4WeightFormat(group_size=32)
    seen, groups = {}, []

    def on_inputs(names, inputs, batches):
        groups.append(names)
        seen[names[0]] = torch.cat(inputs)
        for name in names:
            w = model.dense(name)
            model.quantize(name, fmt.quantize(w, fmt.choose_qparams(w)))

    calibrate_linear_groups(model, calib, on_inputs, sequential=sequential, batch_size=2)
    assert sorted(n for g in groups for n in g) == sorted(n for n in model.linear_names() if n.startswith("layers."))
    assert [len(g) for g in groups[:4]] == [3, 1, 2, 1]  # q/k/v, o, gate/up, down

    def replay(quantized):
        ref, again = ReferenceModel(model, quantized=quantized), {}
        with torch.inference_mode():
            h = [ref.start(calib.tokens)]
            for i in range(model.spec.num_layers):
                h = ref.layer_batches(i, h, torch.arange(16), before=lambda names, xs: again.setdefault(names[0], torch.cat(xs)))
        return again

    expected, other = replay(quantized=sequential), replay(quantized=not sequential)
    o_proj = "layers.0.attn.o.weight"
    for name, x in seen.items():
        torch.testing.assert_close(x, expected[name], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(seen[o_proj], other[o_proj], atol=1e-5)
