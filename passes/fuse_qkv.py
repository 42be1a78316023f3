"""Fuse each attention's q, k and v linears into one linear over their parts, read by the
attention as one packed q|k|v value (one matrix product instead of three).

Before quantization the fused linear is quantized as one matrix (a tensor-wide scale is
shared by its parts); after it, the parts' quantized weights must be joinable (same
format and layout, equal per-tensor scales), otherwise the pass refuses. The tensors
keep their names, so exports are unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from inferc.core.ir import Attention, Linear, ModelIR
from inferc.passes._joining import join, rewrite
from inferc.passes.base import Pass, PassContext, register_pass


@register_pass("fuse_qkv")
class FuseQKV(Pass):
    @dataclass(frozen=True)
    class Config:
        pass

    def run(self, model: ModelIR, ctx: PassContext) -> ModelIR:
        graph = model.graph
        index = {id(n): k for k, n in enumerate(graph.nodes)}
        replaced: dict[int, object] = {}
        for attn in [n for n in graph.nodes if isinstance(n, Attention)]:
            if attn.packed:
                ctx.event(self.name, f"layers.{attn.layer}", "skipped", "q, k and v are one linear already")
                continue
            linears = [graph.producer(v) for v in (attn.q, attn.k, attn.v)]
            if not all(isinstance(lin, Linear) for lin in linears):
                ctx.event(self.name, f"layers.{attn.layer}", "skipped", "q, k or v is not a linear's output")
                continue
            fused = join(model, self.name, linears, f"l{attn.layer}.qkv")  # type: ignore[arg-type]
            first, *rest = sorted(index[id(lin)] for lin in linears)
            replaced[first] = fused
            replaced.update({k: None for k in rest})
            replaced[index[id(attn)]] = dataclasses.replace(attn, q=fused.out, k=None, v=None)
        model.graph = graph.replace_nodes(rewrite(graph.nodes, replaced))  # type: ignore[arg-type]
        return model
