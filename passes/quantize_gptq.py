"""GPTQ 4-bit weights (INT4 groups or NVFP4 blocks), calibrated layer by layer.

Each group of linears that reads one input (q/k/v, o, gate/up, down) gets one Hessian
from that input over the whole calibration set (under torch.distributed: summed per
shard on each rank and folded over the ranks, so every rank quantizes the same group
from the same Hessian and the walk goes on in step), and is quantized before the calibration
goes on through it; weights with the same format and no tensor-wide scale are run as one
GPTQ problem. In sequential mode every group is calibrated on the outputs of the
quantized groups before it (GPTQ's "true sequential"), and each layer runs once.
Fallbacks, each recorded per layer: a Cholesky failure is retried with ten times the
dampening (`cholesky_retry`); a Hessian still singular, or a linear whose calibration
inputs are all zero, is rounded to nearest instead (`fallback`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inferc.calibration.distributed import Batch
from inferc.calibration.layerwise import calibrate_linear_groups
from inferc.calibration.stats import hessian_of
from inferc.core.errors import CalibrationError, RecipeError
from inferc.core.ir import ModelIR
from inferc.passes.activations import WeightQuantConfig, activation_requirements, annotate_activations
from inferc.passes.base import Pass, PassContext, Requirement, fused_groups, register_pass, select_targets
from inferc.core.numerics.gptq import HessianAccumulator, SingularHessianError, gptq_quantize_shared
from inferc.passes.quantize_rtn import bind_format, rtn_quantize


@register_pass("quantize_gptq")
class QuantizeGPTQ(Pass):
    @dataclass(frozen=True)
    class Config(WeightQuantConfig):
        block_size: int = 128
        dampening: float = 0.01
        act_order: bool = True
        static_groups: bool = False
        sequential: bool = True
        batch_size: int = 8

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.block_size <= 0 or not 0 < self.dampening < 1:
                raise RecipeError(
                    f"block_size must be positive and dampening in (0, 1), found {self.block_size} and {self.dampening}"
                )

    requires = (Requirement.CALIBRATION,)

    def requirements(self) -> tuple[Requirement, ...]:
        return self.requires + activation_requirements(self.config.activations)

    def run(self, model: ModelIR, ctx: PassContext) -> ModelIR:
        cfg = self.config
        if ctx.calibration is None:
            raise RecipeError("quantize_gptq needs calibration data; the recipe configures none")
        targets = select_targets(model, self.name, ctx, cfg.ignore)
        formats = {name: bind_format(model, ctx, self.name, cfg, name) for name in targets}
        _check_tokens(model, ctx, targets)
        head = {w for lin in model.graph.linears(None) for w in lin.weights}
        lm_head = [n for n in targets if n in head]

        def on_inputs(names: list[str], inputs: list[torch.Tensor], batches: list[Batch]) -> None:
            names = [n for n in names if n in formats]
            if not names:
                return
            acc = hessian_of(inputs, batches, ctx.reducer)  # over every rank's shards
            while names:  # one GPTQ problem per format (per fused matrix for tensor-wide scales)
                same = [n for n in names if formats[n] == formats[names[0]]]
                if formats[same[0]].rows_independent:
                    self._quantize_group(model, ctx, same, formats[same[0]], acc)
                else:
                    for group in fused_groups(model, same):
                        self._quantize_group(model, ctx, group, formats[group[0]], acc, joint=True)
                names = [n for n in names if n not in same]

        calibrate_linear_groups(model, ctx.calibration, on_inputs, cfg.sequential, cfg.batch_size, ctx.device, ctx.progress,
                                ctx.reducer)
        for name in lm_head:  # no Hessian of the head's input is collected: RTN, reported
            ctx.event(self.name, name, "fallback", "outside the decoder layers; rounded to nearest")
            model.quantize(name, rtn_quantize(formats[name], model.dense(name)))
        annotate_activations(model, ctx, self.name, targets, cfg.activations)
        return model

    def _quantize_group(self, model: ModelIR, ctx: PassContext, names: list[str], fmt, acc: HessianAccumulator,
                        joint: bool = False) -> None:
        """GPTQ the weights `names`, which read the input whose Hessian is `acc`."""
        cfg = self.config
        if acc.count == 0 or not bool((acc.sum_xxt.diagonal() > 0).any()):
            for name in names:
                ctx.event(self.name, name, "fallback", "calibration inputs are all zero; rounded to nearest")
                model.quantize(name, rtn_quantize(fmt, model.dense(name)))
            return
        static = cfg.static_groups
        if cfg.act_order and not static and fmt.group_size and fmt.format.value != "int4":
            static = True  # NVFP4 has no g_idx: act-order needs groups fixed before permuting
            for name in names:
                ctx.event(self.name, name, "static_groups", f"{fmt.format.value} stores no g_idx; act-order uses static groups")
        weights = [model.dense(name) for name in names]
        try:
            results = gptq_quantize_shared(weights, acc.hessian, fmt, cfg.block_size, cfg.dampening, cfg.act_order, static, joint)
        except SingularHessianError as exc:
            for name, w in zip(names, weights):
                ctx.event(self.name, name, "fallback", f"{exc}; rounded to nearest")
                model.quantize(name, rtn_quantize(fmt, w))
            return
        for name, (qw, loss) in zip(names, results):
            if qw.meta["cholesky_retries"]:
                ctx.event(self.name, name, "cholesky_retry", f"Cholesky failed {qw.meta['cholesky_retries']} time(s); dampening raised to {qw.meta['damp']:.3g}")
            qw.meta["gptq_loss"] = loss
            model.quantize(name, qw)


def _check_tokens(model: ModelIR, ctx: PassContext, targets: list[str]) -> None:
    """Refuse a calibration set with fewer tokens than a Hessian has columns: H would be
    singular by construction and GPTQ would only be fitting the dampening."""
    widest = max((model.tensors.shape(n)[1] for n in targets), default=0)
    have = ctx.calibration.num_tokens
    if have < widest:
        raise CalibrationError(
            f"GPTQ needs at least as many calibration tokens as the widest linear input ({widest}); "
            f"found {have} ({ctx.calibration.num_sequences} x {ctx.calibration.seq_len}); add sequences or use quantize_rtn"
        )
