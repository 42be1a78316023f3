"""What fuse_qkv and fuse_gate_up share: joining linears that read one value into one
linear over their parts, after checking that the parts can run as one matrix."""

from __future__ import annotations

import dataclasses

from inferc.core.errors import UnsupportedError
from inferc.core.ir import Linear, ModelIR, Node
from inferc.core.numerics import why_not_joinable
from inferc.passes.base import PassContext


def why_not_fusable(model: ModelIR, linears: list[Linear]) -> str | None:
    """Why these linears cannot become one (None when they can)."""
    if len({lin.x for lin in linears}) != 1:
        return "they read different inputs (" + ", ".join(f"{lin.out} <- {lin.x}" for lin in linears) + ")"
    if len({lin.bias for lin in linears}) != 1:
        return "some have a bias and some do not"
    weights = [w for lin in linears for w in lin.weights]
    quantized = [w for w in weights if model.is_quantized(w)]
    if quantized and len(quantized) != len(weights):
        return f"{', '.join(quantized)} are quantized but {', '.join(w for w in weights if w not in quantized)} are not"
    if quantized:
        why = why_not_joinable([model.weights[w] for w in weights])
        if why:
            return f"their quantized weights cannot be joined: {why}"
    acts = [model.activations.get(w) for w in weights]
    if any(a is not None for a in acts):
        first = acts[0]
        for a in acts[1:]:
            if a is None or first is None or (a.format, a.granularity, a.dynamic) != (first.format, first.granularity, first.dynamic):
                return "their input quantization differs"
            for t1, t2 in ((a.scale, first.scale), (a.global_scale, first.global_scale)):
                if (t1 is None) != (t2 is None) or (t1 is not None and float(t1) != float(t2)):
                    return "their static input scales differ"
    return None


def join(model: ModelIR, pass_name: str, linears: list[Linear], out: str) -> Linear:
    """One linear over the parts of `linears` (in order), writing `out`; refuses with one
    line naming the layer when they cannot run as one matrix."""
    why = why_not_fusable(model, linears)
    if why is not None:
        layer = linears[0].layer
        raise UnsupportedError(f"{pass_name}: layer {layer}: cannot fuse {', '.join(lin.out for lin in linears)}: {why}")
    first = linears[0]
    return Linear(layer=first.layer, x=first.x, out=out, parts=tuple(p for lin in linears for p in lin.parts), bias=first.bias)


def rewrite(nodes: tuple[Node, ...], replaced: dict[int, Node | None]) -> list[Node]:
    """The node list with node k replaced by replaced[k] (dropped when None)."""
    out = []
    for k, node in enumerate(nodes):
        if k in replaced:
            if replaced[k] is not None:
                out.append(replaced[k])
        else:
            out.append(node)
    return out


def fuse_inputs_of(model: ModelIR, ctx: PassContext, pass_name: str, reader: type, fields: tuple[str, ...], out: str) -> ModelIR:
    """For every `reader` node (Attention, GatedAct) whose `fields` are linears' outputs,
    one linear over those linears' parts writes `l{layer}.{out}`, which the reader takes
    packed in its first field (the others become None)."""
    graph = model.graph
    index = {id(n): k for k, n in enumerate(graph.nodes)}
    replaced: dict[int, Node | None] = {}
    for node in [n for n in graph.nodes if isinstance(n, reader)]:
        if node.packed:
            ctx.event(pass_name, f"layers.{node.layer}", "skipped", f"{', '.join(fields)} are one linear already")
            continue
        linears = [graph.producer(getattr(node, f)) for f in fields]
        if not all(isinstance(lin, Linear) for lin in linears):
            ctx.event(pass_name, f"layers.{node.layer}", "skipped", f"{', '.join(fields)} are not all linears' outputs")
            continue
        fused = join(model, pass_name, linears, f"l{node.layer}.{out}")  # type: ignore[arg-type]
        first, *rest = sorted(index[id(lin)] for lin in linears)
        replaced[first] = fused
        replaced.update({k: None for k in rest})
        replaced[index[id(node)]] = dataclasses.replace(node, **{fields[0]: fused.out}, **{f: None for f in fields[1:]})
    model.graph = graph.replace_nodes(rewrite(graph.nodes, replaced))
    return model
