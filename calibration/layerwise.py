"""Layer-by-layer calibration: one decoder layer's weights and the calibration
activations in memory at a time. Two walks:

`calibrate_layerwise` (AWQ), which hands the algorithm a whole layer to search in:

    state = embedding of the calibration tokens
    for each layer i:
        run layer i on h with observers on its linears     (inputs seen by the algorithm)
        quantize(i, LayerInputs)                            (the algorithm's callback)
        h = layer i on h again, now with quantized weights  (sequential mode)
              or the outputs of the first run               (non-sequential mode)

`calibrate_linear_groups` (GPTQ), which hands it each group of linears reading one
input (q/k/v, o, gate/up, down) and runs every layer once:

    for each layer i, for each linear group, in order:
        the group's input over the whole calibration set -> on_inputs(names, inputs)
        (sequential mode: the group then runs with the weights on_inputs quantized, so
        each group is calibrated on the outputs of the quantized groups before it)

Weights are materialized per layer and released after it, so peak memory is about one
decoder layer plus the activations of the calibration set. Each walk runs on this
rank's batches only (`Reducer.batches`: the whole set in one process, a shard range
under torch.distributed); the callbacks see which batch an input came from, so the
statistics they keep can be summed per shard and reduced (calibration/distributed.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from inferc.calibration.dataset import CalibrationSet
from inferc.calibration.distributed import Batch, Reducer
from inferc.core.ir import ModelIR
from inferc.runtime.reference import ReferenceModel, State

Observer = Callable[[str, torch.Tensor, Batch], None]  # (weight name, input [b, t, in], its batch)
GroupInputs = Callable[[list[str], list[torch.Tensor], list[Batch]], None]


@dataclass
class LayerInputs:
    """What a layer callback gets: the layer index, its input states (the values entering
    the layer, per calibration batch), positions, and the running model (for re-running
    parts of the layer), and which calibration batch each state holds."""

    layer: int
    hidden: list[State]
    positions: torch.Tensor
    model: ReferenceModel
    batches: list[Batch]


def calibrate_layerwise(
    model: ModelIR,
    calib: CalibrationSet,
    observer_for: Callable[[int], Observer],
    quantize_layer: Callable[[LayerInputs], None],
    sequential: bool = True,
    batch_size: int = 8,
    device: str = "cpu",
    progress: Callable[[str, int, int], None] | None = None,
    reducer: Reducer | None = None,
) -> None:
    """Walk the decoder layers once; see the module docstring. `observer_for(i)` returns
    the observer that sees layer i's linear inputs (name, x [..., in], batch) in the
    first run."""
    ref = ReferenceModel(model, device=device, quantized=True)
    positions = torch.arange(calib.seq_len, device=ref.device)
    batches = (reducer or Reducer()).batches(calib, batch_size)
    with torch.inference_mode():
        hidden = [ref.start(b.tokens, positions) for b in batches]
    ref.release()
    num_layers = model.graph.num_layers
    for i in range(num_layers):
        layer_tensors = _layer_tensors(model, i)
        observe = observer_for(i)
        current: list[Batch] = batches[:1]  # the batch now running, for the observer
        observer = lambda name, x: observe(name, x, current[0])  # noqa: E731
        ref.observers.append(observer)
        try:
            outputs = _run_layer(ref, i, hidden, positions, batches, current)
        finally:
            ref.observers.remove(observer)
        quantize_layer(LayerInputs(i, hidden, positions, ref, batches))
        _release(ref, layer_tensors)
        if sequential:
            outputs = _run_layer(ref, i, hidden, positions)
        _release(ref, layer_tensors)
        hidden = outputs
        if progress is not None:
            progress("calibrating layers", i + 1, num_layers)


def _run_layer(ref: ReferenceModel, i: int, hidden: list[State], positions: torch.Tensor,
               batches: list[Batch] | None = None, current: list[Batch] | None = None) -> list[State]:
    out = []
    with torch.inference_mode():
        for k, h in enumerate(hidden):
            if current is not None:
                current[0] = batches[k]
            out.append(ref.layer(i, h, positions))
    return out


def _layer_tensors(model: ModelIR, i: int) -> set[str]:
    return {t for node in model.graph.layer(i) for t in node.tensors()}


def _release(ref: ReferenceModel, names: set[str]) -> None:
    for name in names:
        ref.release(name)


def calibrate_linear_groups(
    model: ModelIR,
    calib: CalibrationSet,
    on_inputs: GroupInputs,
    sequential: bool = True,
    batch_size: int = 8,
    device: str = "cpu",
    progress: Callable[[str, int, int], None] | None = None,
    reducer: Reducer | None = None,
) -> None:
    """Walk the decoder layers once; see the module docstring. `on_inputs(names, inputs,
    batches)` gets the weight names of a group of linears and their input, one tensor
    [batch, tokens, in] per calibration batch of this rank (`batches`), before the group
    runs; it may quantize them. In
    sequential mode the walk goes on with the quantized weights, otherwise with the
    original ones (every layer then sees the unquantized model's activations)."""
    ref = ReferenceModel(model, device=device, quantized=True)
    positions = torch.arange(calib.seq_len, device=ref.device)
    batches = (reducer or Reducer()).batches(calib, batch_size)
    with torch.no_grad():
        hidden = [ref.start(b.tokens, positions) for b in batches]
    ref.release()

    def before(names: list[str], inputs: list[torch.Tensor]) -> None:
        for name in names:
            if sequential:
                ref.release(name)  # read again after on_inputs: the quantized weight
            else:
                ref.param(name)  # held as it is now, whatever on_inputs does to it
        on_inputs(names, inputs, batches)

    num_layers = model.graph.num_layers
    for i in range(num_layers):
        with torch.no_grad():  # not inference_mode: what on_inputs makes lives on as weights
            hidden = ref.layer_batches(i, hidden, positions, before=before)
        _release(ref, _layer_tensors(model, i))
        if progress is not None:
            progress("calibrating layers", i + 1, num_layers)
