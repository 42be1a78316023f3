"""Fuse each gated MLP's gate and up linears into one linear over their parts, read by
the activation as one packed gate|up value. Quantized parts must be joinable, as in
fuse_qkv; the tensors keep their names, so exports are unchanged."""

from __future__ import annotations

from dataclasses import dataclass

from inferc.core.ir import GatedAct, ModelIR
from inferc.passes._joining import fuse_inputs_of
from inferc.passes.base import Pass, PassContext, register_pass


@register_pass("fuse_gate_up")
class FuseGateUp(Pass):
    @dataclass(frozen=True)
    class Config:
        pass

    def run(self, model: ModelIR, ctx: PassContext) -> ModelIR:
        return fuse_inputs_of(model, ctx, self.name, GatedAct, ("gate", "up"), "gate_up")
