"""Activation quantization annotations shared by every weight pass: which runtime
quantizer the input of each quantized linear gets, with static scales from calibration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from inferc.core.ir import ActivationQuant, Granularity, ModelIR, QuantFormat
from inferc.passes.base import PassContext, Requirement
from inferc.core.numerics.choose import GroupSize, WeightFormatName, validate_options
from inferc.core.numerics.fp8 import fp8_scale
from inferc.core.numerics.nvfp4 import global_scale_for

# none: weight-only; nvfp4: W4A4 (dynamic block scales, static FP32 tensor scale);
# fp8: static per-tensor FP8 E4M3 scale; fp8_dynamic: FP8 scales per token at run time.
ActivationKind = Literal["none", "nvfp4", "fp8", "fp8_dynamic"]

_WEIGHT_FORMAT = {"nvfp4": QuantFormat.NVFP4, "fp8": QuantFormat.FP8_E4M3, "fp8_dynamic": QuantFormat.FP8_E4M3}


@dataclass(frozen=True)
class WeightQuantConfig:
    """Options every weight-quantizing algorithm shares (RTN, AWQ, GPTQ extend it):
    which format, its grouping and symmetry, the activations, and what to leave alone."""

    format: WeightFormatName = WeightFormatName.INT4
    group_size: GroupSize = "auto"
    symmetric: bool = True
    activations: ActivationKind = "none"
    ignore: tuple[str, ...] = ("lm_head",)
    observer: Literal["minmax", "mse"] = "minmax"  # how INT4 group ranges are chosen
    # symmetric INT4 grid: amax / 7.5 (full) or amax / 7 (exact); auto: the algorithm's choice
    sym_range: Literal["auto", "full", "exact"] = "auto"

    def __post_init__(self) -> None:
        validate_options(self.format, self.group_size, self.activations, self.observer, self.sym_range)

    def int4_sym_range(self) -> str:
        """The symmetric INT4 grid this algorithm rounds to; `full` unless set."""
        return "full" if self.sym_range == "auto" else self.sym_range


def activation_requirements(kind: ActivationKind) -> tuple[Requirement, ...]:
    """Static scales need calibration statistics; dynamic ones and weight-only do not."""
    return (Requirement.ACTIVATION_STATS,) if kind in ("nvfp4", "fp8") else ()


def _static_amax(ctx: PassContext, pass_name: str, name: str) -> torch.Tensor:
    amax = ctx.activation_stats()[name].amax
    if amax <= 0:
        ctx.event(pass_name, name, "fallback", "calibration inputs are all zero; input amax set to 1.0")
        amax = amax.new_tensor(1.0)
    return amax


def annotate_activations(model: ModelIR, ctx: PassContext, pass_name: str, names: list[str], kind: ActivationKind) -> None:
    """Annotate the inputs of the listed linears whose weights are in the matching format."""
    if kind == "none":
        return
    for name in names:
        weight = model.weights.get(name)
        if weight is None or weight.format is not _WEIGHT_FORMAT[kind]:
            continue
        if kind == "nvfp4":
            aq = ActivationQuant(QuantFormat.NVFP4, Granularity.BLOCK, dynamic=True,
                                 global_scale=global_scale_for(_static_amax(ctx, pass_name, name)))
        elif kind == "fp8":
            aq = ActivationQuant(QuantFormat.FP8_E4M3, Granularity.TENSOR, dynamic=False,
                                 scale=fp8_scale(_static_amax(ctx, pass_name, name)))
        else:
            aq = ActivationQuant(QuantFormat.FP8_E4M3, Granularity.TOKEN, dynamic=True)
        model.activations[name] = aq
