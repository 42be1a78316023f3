"""Fuse each attention's q, k and v linears into one linear over their parts, read by the
attention as one packed q|k|v value (one matrix product instead of three).

Before quantization the fused linear is quantized as one matrix (a tensor-wide scale is
shared by its parts); after it, the parts' quantized weights must be joinable (same
format and layout, equal per-tensor scales), otherwise the pass refuses. The tensors
keep their names, so exports are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferc.core.ir import Attention, ModelIR
from inferc.passes._joining import fuse_inputs_of
from inferc.passes.base import Pass, PassContext, register_pass


@register_pass("fuse_qkv")
class FuseQKV(Pass):
    @dataclass(frozen=True)
    class Config:
        pass

    def run(self, model: ModelIR, ctx: PassContext) -> ModelIR:
        return fuse_inputs_of(model, ctx, self.name, Attention, ("q", "k", "v"), "qkv")
