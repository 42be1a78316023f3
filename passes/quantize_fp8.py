"""FP8 E4M3 weights (per channel or per tensor) and activations (static per tensor from
calibration, or dynamic per token)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from inferc.core.ir import ModelIR
from inferc.passes.activations import annotate_activations
from inferc.passes.base import Pass, PassContext, Requirement, fused_groups, register_pass, select_targets
from inferc.core.numerics import quantize_joint
from inferc.core.numerics.fp8 import FP8WeightFormat

_ACTIVATIONS = {"static": "fp8", "dynamic": "fp8_dynamic", "none": "none"}


@register_pass("quantize_fp8")
class QuantizeFP8(Pass):
    @dataclass(frozen=True)
    class Config:
        per_channel: bool = True
        activations: Literal["static", "dynamic", "none"] = "static"
        ignore: tuple[str, ...] = ("lm_head",)

    requires = (Requirement.ACTIVATION_STATS,)

    def requirements(self) -> tuple[Requirement, ...]:
        return self.requires if self.config.activations == "static" else ()

    def run(self, model: ModelIR, ctx: PassContext) -> ModelIR:
        cfg = self.config
        fmt = FP8WeightFormat(per_channel=cfg.per_channel)
        targets = select_targets(model, self.name, ctx, cfg.ignore)
        done = 0
        for group in fused_groups(model, targets):  # a fused matrix shares a per-tensor scale
            qws = quantize_joint(fmt, [model.dense(n) for n in group], lambda f, w: f.quantize(w, f.choose_qparams(w)))
            for name, qw in zip(group, qws):
                model.quantize(name, qw)
            done += len(group)
            ctx.tick(self.name, done, len(targets))
        annotate_activations(model, ctx, self.name, targets, _ACTIVATIONS[cfg.activations])
        return model
