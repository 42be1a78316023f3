"""Quantize every weight matrix into llama.cpp's block codecs under a mixture policy
(Q4_K_M, Q4_K_S, Q5_K_M, Q8_0, F16), optionally weighted by an importance matrix."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import torch
from inferc.core.errors import RecipeError
from inferc.core.ir import Embed, Granularity, ModelIR, QuantFormat, QuantizedWeight, Role
from inferc.passes.base import Pass, PassContext, Requirement, register_pass
from inferc.passes.gguf_policy import choose_format
from inferc.core.numerics.ggml import CODECS


@register_pass("quantize_gguf")
class QuantizeGGUF(Pass):
    @dataclass(frozen=True)
    class Config:
        mixture: Literal["q4_k_m", "q4_k_s", "q5_k_m", "q8_0", "f16"] = "q4_k_m"
        use_imatrix: bool = False
        threads: int = 0  # encoding threads; 0: torch's intra-op thread count

        def __post_init__(self) -> None:
            if self.threads < 0:
                raise RecipeError(f"threads must be 0 (automatic) or positive, found {self.threads}")

    requires = (Requirement.ACTIVATION_STATS,)

    def requirements(self) -> tuple[Requirement, ...]:
        return self.requires if self.config.use_imatrix else ()

    def _importance(self, ctx: PassContext) -> dict[str, torch.Tensor]:
        """Per-input-column mean squared activation of each linear (llama.cpp's imatrix)."""
        if ctx.importance:
            return {k: torch.as_tensor(v, dtype=torch.float32) for k, v in ctx.importance.items()}
        stats = ctx.activation_stats()
        return {name: s.mean_sq.float() for name, s in stats.by_weight.items()}

    def run(self, model: ModelIR, ctx: PassContext) -> ModelIR:
        cfg = self.config
        importance = self._importance(ctx) if cfg.use_imatrix else {}
        jobs = []
        for name, kind, layer in _weight_kinds(model):
            if model.is_quantized(name):
                ctx.event(self.name, name, "skipped", f"already quantized as {model.weights[name].format.value}")
                continue
            shape = tuple(model.tensors.shape(name))
            choice = choose_format(kind, layer, shape, model.spec, cfg.mixture)
            if choice.fallback:
                ctx.event(self.name, name, "fallback", f"{choice.wanted.value} -> {choice.format.value}: {choice.reason}")
            jobs.append((name, choice.format, shape))

        # The codecs are numpy over whole arrays and release the GIL, and every block is
        # independent of the other rows, so tensors are cut into row slices of about
        # SLICE_ELEMENTS that threads encode in parallel (llama.cpp's quantizer splits rows
        # over nthread workers likewise). Small slices also keep each codec's temporaries
        # in cache, and the largest tensor (the embedding) no longer runs alone at the end.
        slices = [(name, fmt, r0, r1) for name, fmt, shape in jobs for r0, r1 in _row_slices(shape)]

        def encode(item) -> torch.Tensor:
            name, fmt, r0, r1 = item
            w = model.dense(name)[r0:r1].to(torch.float32)
            if fmt is QuantFormat.GGUF_F16:
                return w.to(torch.float16).contiguous().view(torch.uint8)
            return CODECS[fmt].quantize(w, importance=importance.get(name))

        workers = cfg.threads or torch.get_num_threads()
        parts: dict[str, list[torch.Tensor]] = {name: [] for name, _, _ in jobs}
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for (name, _, _, _), data in zip(slices, pool.map(encode, slices)):
                parts[name].append(data)
        for i, (name, fmt, shape) in enumerate(jobs):
            chunks = parts.pop(name)
            data = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
            model.quantize(name, self._annotate(data, fmt, name in importance, cfg.mixture, shape))
            ctx.tick(self.name, i + 1, len(jobs))
        return model

    @staticmethod
    def _annotate(data: torch.Tensor, fmt: QuantFormat, weighted: bool, mixture: str, shape) -> QuantizedWeight:
        coded = fmt in CODECS
        return QuantizedWeight(
            format=fmt, shape=(int(shape[0]), int(shape[1])), data=data, granularity=Granularity.BLOCK,
            bits=8 if coded else 16, algorithm="imatrix" if weighted and coded else "rtn", meta={"mixture": mixture},
        )


def _weight_kinds(model: ModelIR) -> list[tuple[str, str, int | None]]:
    """(weight, kind, layer) of every matrix a mixture assigns: the decoder's linear parts
    (kind: their roles, "qkv" for a stored q|k|v), the embedding, an untied head."""
    def kind(part) -> str:
        return "".join(s.role.value for s in part.segments) if len(part.segments) > 1 and part.segments[0].role is Role.Q \
            else "_".join(s.role.value for s in part.segments)

    decoder = [(p.weight, kind(p), lin.layer) for lin in model.graph.linears() if lin.layer is not None for p in lin.parts]
    embed = [(n.weight, "embed", None) for n in model.graph.prologue() if isinstance(n, Embed)]
    head = [(p.weight, Role.LM_HEAD.value, None) for lin in model.graph.linears(None) if not lin.tied for p in lin.parts]
    return decoder + embed + head


SLICE_ELEMENTS = 1 << 20  # ~4 MiB of float32 per slice


def _row_slices(shape) -> list[tuple[int, int]]:
    rows, cols = int(shape[0]), int(shape[1])
    step = max(1, SLICE_ELEMENTS // max(cols, 1))
    return [(r, min(r + step, rows)) for r in range(0, rows, step)]
