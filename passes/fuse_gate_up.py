"""Fuse each gated MLP's gate and up linears into one linear over their parts, read by
the activation as one packed gate|up value. Quantized parts must be joinable, as in
fuse_qkv; the tensors keep their names, so exports are unchanged."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from inferc.core.ir import GatedAct, Linear, ModelIR
from inferc.passes._joining import join, rewrite
from inferc.passes.base import Pass, PassContext, register_pass


@register_pass("fuse_gate_up")
class FuseGateUp(Pass):
    @dataclass(frozen=True)
    class Config:
        pass

    def run(self, model: ModelIR, ctx: PassContext) -> ModelIR:
        graph = model.graph
        index = {id(n): k for k, n in enumerate(graph.nodes)}
        replaced: dict[int, object] = {}
        for act in [n for n in graph.nodes if isinstance(n, GatedAct)]:
            if act.packed:
                ctx.event(self.name, f"layers.{act.layer}", "skipped", "gate and up are one linear already")
                continue
            linears = [graph.producer(act.gate), graph.producer(act.up)]  # type: ignore[arg-type]
            if not all(isinstance(lin, Linear) for lin in linears):
                ctx.event(self.name, f"layers.{act.layer}", "skipped", "gate or up is not a linear's output")
                continue
            fused = join(model, self.name, linears, f"l{act.layer}.gate_up")  # type: ignore[arg-type]
            first, rest = sorted(index[id(lin)] for lin in linears)
            replaced[first], replaced[rest] = fused, None
            replaced[index[id(act)]] = dataclasses.replace(act, gate=fused.out, up=None)
        model.graph = graph.replace_nodes(rewrite(graph.nodes, replaced))  # type: ignore[arg-type]
        return model
