"""Fuse each residual add with the RMS norm that reads its sum into one node, which
hands on both the sum and its norm (ONNX Runtime's SkipSimplifiedLayerNormalization).
The add that closes a layer and the next layer's first norm become one node of the
next layer, so a layer then hands on the sum's two terms instead of the sum."""

from __future__ import annotations

from dataclasses import dataclass

from inferc.core.ir import Add, ModelIR, RMSNorm, SkipRMSNorm
from inferc.passes._joining import rewrite
from inferc.passes.base import Pass, PassContext, register_pass


@register_pass("fuse_residual_norm")
class FuseResidualNorm(Pass):
    @dataclass(frozen=True)
    class Config:
        pass

    def run(self, model: ModelIR, ctx: PassContext) -> ModelIR:
        graph = model.graph
        replaced: dict[int, object] = {}
        for k, add in enumerate(graph.nodes):
            if not isinstance(add, Add):
                continue
            norms = [(j, n) for j, n in enumerate(graph.nodes) if isinstance(n, RMSNorm) and n.x == add.out]
            if len(norms) != 1:
                continue  # the last layer's sum under a sandwich norm, say: nothing reads it through one norm
            j, norm = norms[0]
            if any(add.out in n.inputs for n in graph.nodes[k + 1 : j]):
                continue  # the sum is read before its norm: keep the add
            replaced[k] = None
            replaced[j] = SkipRMSNorm(layer=norm.layer, x=add.b, skip=add.a, out=norm.out, sum_out=add.out,
                                      weight=norm.weight, eps=norm.eps, offset=norm.offset)
        model.graph = graph.replace_nodes(rewrite(graph.nodes, replaced))  # type: ignore[arg-type]
        return model
