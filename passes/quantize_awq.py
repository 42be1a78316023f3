"""AWQ 4-bit weights (INT4 groups or NVFP4 blocks), calibrated layer by layer.

Per decoder layer, for each set of linears sharing an input (read off the model graph:
`scale_groups`), per-input-channel scales are searched (`numerics.awq`: the squared error
of each grid point, `candidate_errors`, then `pick_scales`)
and folded into what produces that input, so the model computes the same function
before rounding. For a llama-style layer:

    attention norm  -> q, k, v (or a fused q|k|v)
    v's rows        -> o       (only without grouped-query attention, where one v
                                channel feeds several heads; skipped otherwise)
    MLP norm        -> gate, up (or a fused gate|up)
    up's rows       -> down

The loss each search minimises is, by default (`loss: block`), the error of the whole
block the linears feed, as in the AWQ paper: the attention (its softmax and o
included) for q/k/v, the MLP (activation and down included) for gate/up, the
linear's own output for o and down. `loss: linear` measures the linears'
outputs only. The search runs on whole calibration sequences (attention needs them).
Under torch.distributed each rank measures the errors on the kept sequences of its
shards; the sums are folded over the ranks (`_Search`), so every rank picks the same
scales and clipping.

A norm that scales by (offset + w) (Gemma: offset 1) becomes (offset + w) / s - offset.
Folded tensors are written back to `model.tensors` in float32. Then each linear's
groups get a clipping search and are rounded by the format; or, with `quantize: false`,
the weights stay dense and scaled (no clipping) for a following pass to round: AWQ's
scales under GPTQ's error compensation is `quantize_awq {quantize: false}` then
`quantize_gptq`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from inferc.calibration.distributed import Batch, Reducer
from inferc.calibration.layerwise import LayerInputs, calibrate_layerwise
from inferc.core.errors import CalibrationError, RecipeError
from inferc.core.ir import Attention, GatedAct, Linear, LinearPart, ModelIR, Node, RMSNorm, Role, SkipRMSNorm
from inferc.passes.activations import WeightQuantConfig, activation_requirements, annotate_activations
from inferc.passes.base import Pass, PassContext, Requirement, register_pass, select_targets
from inferc.core.numerics.awq import (
    Block,
    apply_clip,
    candidate_errors,
    clip_errors,
    linear_outputs,
    pick_clip,
    pick_scales,
    scale_candidates,
)
from inferc.passes.quantize_rtn import bind_format, rtn_quantize

MIN_TOKENS = 256
CLIP_TOKENS = 512  # tokens the clipping search measures on (as AutoAWQ)


@dataclass
class ScaleGroup:
    """Linears (`consumers`, weight names) reading the value `start`, which `prev` produces:
    a norm's weight, or rows `prev_rows` of a linear part's weight."""

    prev: str  # weight name of the norm or linear part producing the input
    prev_is_norm: bool
    consumers: list[str]
    block: Literal["attention", "mlp", "linear"]  # what the consumers feed, for the block loss
    start: str = ""  # the graph value the consumers read
    stop: str = ""  # the block's output value (attention: o's output; mlp: down's output)
    prev_rows: tuple[int, int] | None = None


def _feeds(graph, lin: Linear) -> Node | None:
    readers = graph.consumers(lin.out)
    return readers[0] if readers else None


def _block_of(graph, group: list[Linear]) -> tuple[str, str]:
    """What a group's outputs feed ("attention", "mlp" or "linear") and that block's output."""
    reader = _feeds(graph, group[0])
    if isinstance(reader, (Attention, GatedAct)):
        after = graph.consumers(reader.out)
        if after and isinstance(after[0], Linear):
            return ("attention" if isinstance(reader, Attention) else "mlp"), after[0].out
    return "linear", group[0].out


def _rows_producing(graph, value: str, role: Role) -> tuple[LinearPart, int, int] | None:
    """The linear part and rows whose output is `role`'s slice of `value`."""
    producer = graph.producer(value)
    if isinstance(producer, Linear) and role in producer.roles:
        return producer.rows_of(role)
    return None


def scale_groups(model: ModelIR, layer: int) -> tuple[list[ScaleGroup], list[str]]:
    """The foldable groups of a decoder layer, read off the graph, and why any was skipped:
    a norm feeds its linears; v's rows feed o through the attention (unless grouped-query
    attention shares one v channel among heads); up's rows feed down through the gating."""
    graph = model.graph
    groups, skipped = [], []
    for group in graph.input_groups(layer):
        x = group[0].x
        consumers = [w for lin in group for w in lin.weights]
        block, stop = _block_of(graph, group)
        producer = graph.producer(x)
        if isinstance(producer, (RMSNorm, SkipRMSNorm)):
            groups.append(ScaleGroup(producer.weight, True, consumers, block, x, stop))
            continue
        if isinstance(producer, Attention):
            src = _rows_producing(graph, producer.q if producer.packed else producer.v, Role.V)
            if src is None or producer.num_heads != producer.num_kv_heads:
                skipped.append(f"v->o not folded: {producer.num_kv_heads} kv heads serve {producer.num_heads} query heads (grouped-query attention)")
                continue
        elif isinstance(producer, GatedAct):
            src = _rows_producing(graph, producer.gate if producer.packed else producer.up, Role.UP)
            if src is None:
                continue
        else:
            continue
        part, r0, r1 = src
        rows = None if (r0, r1) == (0, part.rows) else (r0, r1)
        groups.append(ScaleGroup(part.weight, False, consumers, block, x, stop, rows))
    return groups, skipped


def fold_scales(model: ModelIR, group: ScaleGroup, s: torch.Tensor) -> None:
    """Divide `group.prev`'s output by s [in] and multiply the consumers' columns by s."""
    t = model.tensors
    for name in group.consumers:
        t.set(name, t.get(name).float() * s)
    w_prev = t.get(group.prev).float()
    if group.prev_is_norm:
        off = model.spec.norm_offset
        t.set(group.prev, (off + w_prev) / s - off)
        return
    r0, r1 = group.prev_rows or (0, w_prev.shape[0])
    w_prev = w_prev.clone()
    w_prev[r0:r1] /= s[:, None]
    t.set(group.prev, w_prev)
    bias = group.prev.removesuffix(".weight") + ".bias"
    if bias in t:
        b = t.get(bias).float().clone()
        b[r0:r1] /= s
        t.set(bias, b)


@dataclass
class _InputSampler:
    """Per linear input and per shard of the calibration set: sum |x| over all tokens,
    and every `stride`-th sequence of the whole set kept whole (on the CPU), with its
    index among the kept ones. `reduce` turns the sums into means over every rank."""

    stride: int
    abs_sum: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)
    count: dict[str, dict[int, int]] = field(default_factory=dict)
    samples: dict[str, dict[int, list[tuple[int, torch.Tensor]]]] = field(default_factory=dict)
    means: dict[str, torch.Tensor] = field(default_factory=dict)

    def observe(self, name: str, x: torch.Tensor, batch: Batch) -> None:
        x = x.detach().float()
        x = x.reshape(-1, *x.shape[-2:])  # [sequences, tokens, in]
        k = batch.shard
        sums, counts, kept = self.abs_sum.setdefault(name, {}), self.count.setdefault(name, {}), self.samples.setdefault(name, {})
        sums[k] = sums[k] + x.abs().sum((0, 1)).cpu() if k in sums else x.abs().sum((0, 1)).cpu()
        counts[k] = counts.get(k, 0) + x.shape[0] * x.shape[1]
        first = -batch.first % self.stride  # the first kept sequence in this batch
        for j in range(first, x.shape[0], self.stride):
            kept.setdefault(k, []).append(((batch.first + j) // self.stride, x[j].to("cpu", copy=True)))

    def reduce(self, reducer: Reducer, shards: list[int]) -> None:
        """Means of |x| over every rank's tokens, for every observed input (one reduction)."""
        names = sorted(self.abs_sum)
        sums = reducer.fold(torch.cat([self.abs_sum[n][k] for n in names]) for k in shards)
        counts = reducer.total(torch.tensor([sum(self.count[n].values()) for n in names], dtype=torch.int64))
        for n, total, c in zip(names, sums.float().split([self.abs_sum[n][shards[0]].numel() for n in names]), counts.tolist()):
            self.means[n] = total / max(c, 1)

    def clear(self) -> None:
        for d in (self.abs_sum, self.count, self.samples, self.means):
            d.clear()

    def mean(self, name: str) -> torch.Tensor:
        return self.means[name]

    def x(self, name: str, shard: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A shard's kept sequences [n, tokens, in] and their indices among all kept ones [n]."""
        kept = self.samples[name].get(shard, [])
        if not kept:
            return torch.empty(0), torch.empty(0, dtype=torch.int64)
        return torch.stack([x for _, x in kept]), torch.tensor([i for i, _ in kept])


@register_pass("quantize_awq")
class QuantizeAWQ(Pass):
    @dataclass(frozen=True)
    class Config(WeightQuantConfig):
        grid: int = 20
        clip_search: bool = True
        search_tokens: int = 2048  # tokens (whole sequences) the grid and clip losses are measured on
        loss: Literal["block", "linear"] = "block"  # error of the attention/MLP block, or of the linears alone
        sequential: bool = True
        batch_size: int = 8
        quantize: bool = True  # false: fold the scales only, leave rounding to the next pass
        duo_scaling: Literal["off", "on", "both"] = "off"  # scales from activations only, also weights, or the better

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.grid < 1 or self.search_tokens < 1:
                raise RecipeError(f"grid and search_tokens must be positive, found {self.grid} and {self.search_tokens}")
            if not self.quantize and self.activations != "none":
                raise RecipeError(f"quantize: false leaves the weights dense; set activations on the pass that rounds them, not here ({self.activations})")

        def int4_sym_range(self) -> str:
            """When this pass rounds with the clip search, the grid clips nothing (amax / 7):
            the search picks each group's clipping by its output error, from 1 down to 0.55
            of the range."""
            if self.sym_range == "auto" and self.clip_search and self.quantize:
                return "exact"
            return super().int4_sym_range()

    requires = (Requirement.CALIBRATION,)

    def requirements(self) -> tuple[Requirement, ...]:
        return self.requires + activation_requirements(self.config.activations)

    def run(self, model: ModelIR, ctx: PassContext) -> ModelIR:
        cfg = self.config
        calib = ctx.calibration
        if calib is None:
            raise RecipeError("quantize_awq needs calibration data; the recipe configures none")
        if calib.num_tokens < MIN_TOKENS:
            raise CalibrationError(
                f"AWQ needs at least {MIN_TOKENS} calibration tokens to rank input channels; found {calib.num_tokens}; add sequences"
            )
        targets = select_targets(model, self.name, ctx, cfg.ignore)
        formats = {name: bind_format(model, ctx, self.name, cfg, name) for name in targets}
        kept = math.ceil(cfg.search_tokens / calib.seq_len)
        sampler = _InputSampler(stride=max(1, calib.num_sequences // kept))
        kept_tokens = math.ceil(calib.num_sequences / sampler.stride) * calib.seq_len

        def quantize_layer(inputs: LayerInputs) -> None:
            shards = sorted({b.shard for b in inputs.batches})
            sampler.reduce(ctx.reducer, shards)
            self._quantize_layer(model, ctx, inputs, _Search(sampler, shards, ctx.reducer, kept_tokens), formats)
            sampler.clear()

        calibrate_layerwise(model, calib, lambda i: sampler.observe, quantize_layer, cfg.sequential, cfg.batch_size, ctx.device, ctx.progress,
                            ctx.reducer)
        if not cfg.quantize:
            return model
        head = {w for lin in model.graph.linears(None) for w in lin.weights}
        for name in [n for n in targets if n in head]:
            ctx.event(self.name, name, "fallback", "outside the decoder layers; rounded to nearest without scaling")
            model.quantize(name, rtn_quantize(formats[name], model.dense(name)))
        annotate_activations(model, ctx, self.name, targets, cfg.activations)
        return model

    def _block(self, group: ScaleGroup, inputs: LayerInputs) -> Block:
        """The function of (input, the group's weights) whose error a scale search minimises."""
        if self.config.loss == "linear" or group.block == "linear":
            return lambda x, ws: linear_outputs(x.reshape(-1, x.shape[-1]), ws)
        ref, layer = inputs.model, inputs.layer

        def block(x: torch.Tensor, ws: list[torch.Tensor]) -> torch.Tensor:
            with torch.inference_mode(), ref.overriding(dict(zip(group.consumers, ws))):
                return ref.run_between(layer, group.start, group.stop, x.to(ref.device), inputs.positions)

        return block

    def _quantize_layer(self, model: ModelIR, ctx: PassContext, inputs: LayerInputs, search: _Search, formats: dict) -> None:
        layer, sampler = inputs.layer, search.sampler
        groups, skipped = scale_groups(model, layer)
        for why in skipped:
            ctx.event(self.name, f"layers.{layer}", "awq_skip", why)
        scales = {}
        for g in groups:  # every search sees the layer's original weights and inputs
            key = g.consumers[0]
            if not bool((sampler.mean(key) > 0).any()):
                ctx.event(self.name, key, "fallback", "calibration inputs are all zero; no AWQ scaling")
                continue
            fmts = [formats.get(n) for n in g.consumers]  # None: an ignored linear, kept exact
            ws = [model.tensors.get(n) for n in g.consumers]
            s, alpha = search.scales(key, ws, fmts, self.config.grid, self.config.duo_scaling, self._block(g, inputs))
            scales[key] = s
            ctx.event(self.name, key, "awq_scale", f"alpha {alpha:.2f} for {len(g.consumers)} linear(s)")
        for g in groups:
            if g.consumers[0] in scales:
                fold_scales(model, g, scales[g.consumers[0]])
        if not self.config.quantize:
            return
        covered = {n for g in groups for n in g.consumers}
        in_layer = {w for lin in model.graph.linears(layer) for w in lin.weights}
        unscaled = [n for n in formats if n in in_layer and n not in covered]
        plan = [(g.consumers, scales.get(g.consumers[0])) for g in groups]
        plan += [([n], None) for n in unscaled]  # e.g. o under GQA: clip search only
        for names, s in plan:
            for name in (n for n in names if n in formats):
                w = model.tensors.get(name).float()
                if self.config.clip_search:
                    w = apply_clip(w, search.clip(names[0], s, w, formats[name], self.config.grid))
                model.quantize(name, rtn_quantize(formats[name], w))
                model.weights[name].algorithm = "awq"


@dataclass
class _Search:
    """The grid and clip searches of one layer over the kept sequences of every rank: each
    shard's squared errors are summed on its rank, and the shards folded in order
    (calibration/distributed.py), so every rank picks the same scales and clipping."""

    sampler: _InputSampler
    shards: list[int]  # this rank's
    reducer: Reducer
    kept_tokens: int  # tokens in all kept sequences of every rank

    def scales(self, key: str, ws: list[torch.Tensor], fmts: list, grid: int, duo: str, block: Block) -> tuple[torch.Tensor, float]:
        candidates = scale_candidates(self.sampler.mean(key), ws, fmts, grid, duo)

        def partials():
            for k in self.shards:  # zeros for a shard without kept sequences
                x, _ = self.sampler.x(key, k)
                errors, count = candidate_errors(x, ws, fmts, candidates, block) if len(x) else (torch.zeros(len(candidates), dtype=torch.float64), 0)
                yield torch.cat([errors, torch.tensor([float(count)], dtype=torch.float64)])

        total = self.reducer.fold(partials())
        s, alpha, _ = pick_scales(candidates, total[:-1], int(total[-1]))
        return s, alpha

    def clip(self, key: str, s: torch.Tensor | None, w: torch.Tensor, fmt, grid: int) -> torch.Tensor:
        """Clipping thresholds [out, groups] of w, on every CLIP_TOKENS-th share of the kept tokens."""
        step = max(1, self.kept_tokens // CLIP_TOKENS)

        def partials():
            for k in self.shards:
                x, index = self.sampler.x(key, k)
                if not len(x):
                    yield clip_errors(w.new_zeros(0, w.shape[1]), w, fmt, grid)
                    continue
                rows = (index[:, None] * x.shape[1] + torch.arange(x.shape[1])).reshape(-1)  # token index among all kept
                x = x.reshape(-1, x.shape[-1])[rows % step == 0]
                yield clip_errors(x if s is None else x / s, w, fmt, grid)

        return pick_clip(w, fmt, self.reducer.fold(partials()), grid)
