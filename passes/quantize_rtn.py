"""Round-to-nearest weights (INT4 groups, NVFP4 blocks, FP8 channels), the baseline; with
`activations: nvfp4`, NVFP4 W4A4 (static per-tensor input scale from calibration), with
`activations: fp8` or `fp8_dynamic`, FP8 W8A8."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from inferc.core.ir import ModelIR
from inferc.passes.activations import WeightQuantConfig, activation_requirements, annotate_activations
from inferc.passes.base import Pass, PassContext, Requirement, fused_groups, register_pass, select_targets
from inferc.core.numerics import quantize_joint
from inferc.core.numerics.choose import WeightFormatName, weight_format_for


def bind_format(model: ModelIR, ctx: PassContext, pass_name: str, cfg, name: str):
    """The format object for linear `name`, recording an auto-chosen group size."""
    cols = model.tensors.shape(name)[1]
    fmt = weight_format_for(cfg.format, cfg.group_size, cfg.symmetric, cols, name, cfg.observer, cfg.int4_sym_range())
    if cfg.format is WeightFormatName.INT4 and cfg.group_size == "auto":
        picked = fmt.group_size if fmt.group_size is not None else "per-channel (no 128/64/32 divides it)"
        ctx.event(pass_name, name, "group_size", f"auto group size {picked} for input dimension {cols}")
    return fmt


def rtn_quantize(fmt, w: torch.Tensor):
    bind = getattr(fmt, "for_tensor", None)
    fmt = bind(w) if bind is not None else fmt
    return fmt.quantize(w, fmt.choose_qparams(w))


@register_pass("quantize_rtn")
class QuantizeRTN(Pass):
    @dataclass(frozen=True)
    class Config(WeightQuantConfig):
        pass

    requires = ()

    def requirements(self) -> tuple[Requirement, ...]:
        return activation_requirements(self.config.activations)

    def run(self, model: ModelIR, ctx: PassContext) -> ModelIR:
        cfg = self.config
        targets = select_targets(model, self.name, ctx, cfg.ignore)
        formats = {name: bind_format(model, ctx, self.name, cfg, name) for name in targets}  # refuse before any work
        done = 0
        for group in fused_groups(model, targets):
            qws = quantize_joint(formats[group[0]], [model.dense(n) for n in group], rtn_quantize)
            for name, qw in zip(group, qws):
                model.quantize(name, qw)
            done += len(group)
            ctx.tick(self.name, done, len(targets))
        annotate_activations(model, ctx, self.name, targets, cfg.activations)
        return model
