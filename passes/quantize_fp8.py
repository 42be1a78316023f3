"""FP8 E4M3 weights (per channel or per tensor) and activations (static per tensor from
calibration, or dynamic per token)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from inferc.compiler.ir import ActivationQuant, Granularity, ModelIR, QuantFormat
from inferc.passes.base import Pass, PassContext, Requirement, register_pass, select_linears
from inferc.passes.numerics.fp8 import FP8WeightFormat, fp8_scale


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
        targets, ignored = select_linears(model, cfg.ignore)
        for name in ignored:
            model.unquantized[name] = "ignored by recipe"
        stats = ctx.activation_stats() if cfg.activations == "static" else None
        for i, name in enumerate(targets):
            if model.is_quantized(name):
                ctx.event(self.name, name, "skipped", f"already quantized as {model.weights[name].format.value}")
                continue
            w = model.dense(name)
            model.quantize(name, fmt.quantize(w, fmt.choose_qparams(w)))
            if cfg.activations == "static":
                amax = stats[name].amax
                if amax <= 0:
                    ctx.event(self.name, name, "fallback", "calibration inputs are all zero; activation amax set to 1.0")
                    amax = amax.new_tensor(1.0)
                model.activations[name] = ActivationQuant(QuantFormat.FP8_E4M3, Granularity.TENSOR, dynamic=False, scale=fp8_scale(amax))
            elif cfg.activations == "dynamic":
                model.activations[name] = ActivationQuant(QuantFormat.FP8_E4M3, Granularity.TOKEN, dynamic=True)
            ctx.tick(self.name, i + 1, len(targets))
        return model
