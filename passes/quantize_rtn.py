"""Round-to-nearest 4-bit weights (INT4 groups or NVFP4 blocks), the baseline; with
`activations: nvfp4`, NVFP4 W4A4 (static per-tensor input scale from calibration)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from inferc.compiler.ir import ActivationQuant, Granularity, ModelIR, QuantFormat
from inferc.passes.base import Pass, PassContext, Requirement, register_pass, select_linears
from inferc.passes.numerics.choose import GroupSize, WeightFormatName, validate_options, weight_format_for
from inferc.passes.numerics.nvfp4 import global_scale_for


def bind_format(model: ModelIR, ctx: PassContext, pass_name: str, cfg, name: str):
    """The format object for linear `name`, recording an auto-chosen group size."""
    cols = model.tensors.shape(name)[1]
    fmt = weight_format_for(cfg.format, cfg.group_size, cfg.symmetric, cols, name)
    if cfg.format is WeightFormatName.INT4 and cfg.group_size == "auto":
        picked = fmt.group_size if fmt.group_size is not None else "per-channel (no 128/64/32 divides it)"
        ctx.event(pass_name, name, "group_size", f"auto group size {picked} for input dimension {cols}")
    return fmt


def rtn_quantize(fmt, w: torch.Tensor):
    bind = getattr(fmt, "for_tensor", None)
    fmt = bind(w) if bind is not None else fmt
    return fmt.quantize(w, fmt.choose_qparams(w))


def annotate_nvfp4_activations(model: ModelIR, ctx: PassContext, pass_name: str, names: list[str]) -> None:
    """W4A4: a static FP32 input scale (amax / (6 * 448)) per linear from calibration."""
    stats = ctx.activation_stats()
    for name in names:
        if name not in model.weights or model.weights[name].format is not QuantFormat.NVFP4:
            continue
        amax = stats[name].amax
        if amax <= 0:
            ctx.event(pass_name, name, "fallback", "calibration inputs are all zero; input amax set to 1.0")
            amax = amax.new_tensor(1.0)
        model.activations[name] = ActivationQuant(
            QuantFormat.NVFP4, Granularity.BLOCK, dynamic=True, global_scale=global_scale_for(amax)
        )


def select_targets(model: ModelIR, pass_name: str, ctx: PassContext, ignore: tuple[str, ...]) -> list[str]:
    targets, ignored = select_linears(model, ignore)
    for name in ignored:
        model.unquantized[name] = "ignored by recipe"
    chosen = []
    for name in targets:
        if model.is_quantized(name):
            ctx.event(pass_name, name, "skipped", f"already quantized as {model.weights[name].format.value}")
        else:
            chosen.append(name)
    return chosen


@register_pass("quantize_rtn")
class QuantizeRTN(Pass):
    @dataclass(frozen=True)
    class Config:
        format: WeightFormatName = WeightFormatName.INT4
        group_size: GroupSize = "auto"
        symmetric: bool = True
        activations: Literal["none", "nvfp4"] = "none"
        ignore: tuple[str, ...] = ("lm_head",)

        def __post_init__(self) -> None:
            validate_options(self.format, self.group_size, self.activations)

    requires = (Requirement.ACTIVATION_STATS,)

    def requirements(self) -> tuple[Requirement, ...]:
        return self.requires if self.config.activations == "nvfp4" else ()

    def run(self, model: ModelIR, ctx: PassContext) -> ModelIR:
        cfg = self.config
        targets = select_targets(model, self.name, ctx, cfg.ignore)
        formats = {name: bind_format(model, ctx, self.name, cfg, name) for name in targets}  # refuse before any work
        for i, name in enumerate(targets):
            model.quantize(name, rtn_quantize(formats[name], model.dense(name)))
            ctx.tick(self.name, i + 1, len(targets))
        if cfg.activations == "nvfp4":
            annotate_nvfp4_activations(model, ctx, self.name, targets)
        return model
