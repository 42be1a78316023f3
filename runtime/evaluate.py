"""Quality of a backend on a token stream: perplexity, and KL divergence and top-1
agreement against a reference backend (usually the unquantized model).

Two scoring methods, both on non-overlapping chunks of `ctx_len` tokens (the tail
that does not fill a chunk is dropped, as llama.cpp does):

- "half": llama.cpp's `perplexity` tool (tools/perplexity/perplexity.cpp). With
  `first = ctx_len // 2`, the logits at positions first .. ctx_len-2 are scored against
  the tokens at first+1 .. ctx_len-1, so each chunk scores ctx_len - 1 - ctx_len//2
  tokens (255 at 512), every one with at least ctx_len/2 tokens of context. When `bos`
  is given the first token of each chunk is replaced by it (llama.cpp does this when the
  vocabulary adds BOS). ppl = exp(total nll / total tokens scored).
- "full": every position of the chunk predicts the next, logits 0 .. ctx_len-2 against
  tokens 1 .. ctx_len-1 (ctx_len - 1 tokens per chunk).

Sequences already cut (a 2-D tensor, e.g. held-out text sampled from the model when
there is no corpus) go through the same code path; each row is one chunk.

KL divergence is KL(reference || candidate) = sum_v p_ref(v) (log p_ref(v) - log p_cand(v))
at every scored position; top-1 agreement is the fraction of scored positions where both
argmaxes are equal. Logits are computed chunk by chunk, reference then candidates, and
never all kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from inferc.core.errors import CalibrationError
from inferc.runtime.backend import Backend

Method = Literal["half", "full"]
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PerplexityResult:
    ppl: float
    nll: float  # mean negative log-likelihood per scored token (nats)
    ppl_stderr: float  # llama.cpp's "+/-": ppl * std(nll) / sqrt(tokens - 1)
    tokens_scored: int
    chunks: int
    method: str
    ctx_len: int
    chunk_nll: tuple[float, ...]  # mean nll of each chunk


@dataclass(frozen=True)
class QualityResult:
    """A candidate against the reference on the same scored positions."""

    reference: PerplexityResult
    candidate: PerplexityResult
    ppl_increase_pct: float  # 100 * (ppl_cand / ppl_ref - 1)
    kld_mean: float  # mean KL(reference || candidate) per scored token (nats)
    kld_p99: float
    kld_max: float
    top1: float  # fraction of scored positions with equal argmax
    tokens_scored: int
    source: str  # what was scored, e.g. "wiki.test.raw, 40 chunks x 512" or "model samples"


def cut_chunks(tokens: torch.Tensor, ctx_len: int, n_chunks: int | None, bos: int | None = None) -> torch.Tensor:
    """A 1-D stream -> [chunks, ctx_len] (non-overlapping, tail dropped); a 2-D tensor is
    taken as pre-cut sequences (first n_chunks rows). With `bos`, each chunk's first
    token is replaced by it."""
    if tokens.dim() == 1:
        available = tokens.numel() // ctx_len
        n = available if n_chunks is None else min(n_chunks, available)
        if n < 1:
            raise CalibrationError(
                f"evaluation needs at least one chunk of {ctx_len} tokens, the corpus has {tokens.numel()}; "
                "give a larger corpus or a smaller context length"
            )
        chunks = tokens[: n * ctx_len].reshape(n, ctx_len)
    elif tokens.dim() == 2:
        chunks = tokens if n_chunks is None else tokens[:n_chunks]
    else:
        raise ValueError(f"tokens must be 1-D (a stream) or 2-D (sequences), got shape {tuple(tokens.shape)}")
    if chunks.shape[1] < 2 or chunks.shape[0] < 1:
        raise CalibrationError(f"evaluation needs sequences of at least 2 tokens, found shape {tuple(chunks.shape)}")
    chunks = chunks.to(torch.int64).clone()
    if bos is not None:
        chunks[:, 0] = bos
    return chunks


def first_scored(method: Method, seq_len: int) -> int:
    """Index of the first logit scored: logits[first .. seq_len-2] predict tokens[first+1 ..]."""
    if method == "half":
        return seq_len // 2
    if method == "full":
        return 0
    raise ValueError(f"unknown perplexity method {method!r}; expected 'half' or 'full'")


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits [T, V], targets [T] -> negative log-likelihood [T] (float64)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -logp.gather(-1, targets[:, None]).squeeze(-1).double()


def kl_divergence(ref_logits: torch.Tensor, cand_logits: torch.Tensor) -> torch.Tensor:
    """KL(ref || cand) per row: logits [T, V] each -> [T] (float64)."""
    ref_logp = torch.log_softmax(ref_logits.float(), dim=-1)
    cand_logp = torch.log_softmax(cand_logits.float(), dim=-1)
    return (ref_logp.exp() * (ref_logp - cand_logp)).sum(-1).double().clamp(min=0.0)


class _PplAccumulator:
    def __init__(self) -> None:
        self.nll: list[torch.Tensor] = []

    def add(self, nll: torch.Tensor) -> None:
        self.nll.append(nll)

    def result(self, method: str, ctx_len: int) -> PerplexityResult:
        all_nll = torch.cat(self.nll)
        n = all_nll.numel()
        mean = float(all_nll.mean())
        ppl = math.exp(mean)
        var = float((all_nll * all_nll).mean()) - mean * mean
        stderr = ppl * math.sqrt(max(var, 0.0) / (n - 1)) if n > 1 else float("nan")
        return PerplexityResult(
            ppl=ppl, nll=mean, ppl_stderr=stderr, tokens_scored=n, chunks=len(self.nll),
            method=method, ctx_len=ctx_len, chunk_nll=tuple(float(c.mean()) for c in self.nll),
        )


def _batches(chunks: torch.Tensor, batch_size: int):
    for i in range(0, chunks.shape[0], batch_size):
        yield chunks[i : i + batch_size]


def perplexity(
    backend: Backend,
    tokens: torch.Tensor,
    ctx_len: int = 512,
    n_chunks: int | None = 40,
    method: Method = "half",
    bos: int | None = None,
    batch_size: int = 1,
    progress: Progress | None = None,
) -> PerplexityResult:
    """Perplexity of `backend` on `tokens` (a 1-D stream, or 2-D pre-cut sequences),
    scored by `method` ("half": llama.cpp's method, "full": every position; see the
    module docstring). `n_chunks=None` uses every full chunk."""
    chunks = cut_chunks(tokens, ctx_len, n_chunks, bos)
    seq_len = chunks.shape[1]
    first = first_scored(method, seq_len)
    acc = _PplAccumulator()
    for batch in _batches(chunks, batch_size):
        logits = backend.logits(batch)  # [b, L, V]
        for row in range(batch.shape[0]):
            acc.add(token_nll(logits[row, first : seq_len - 1], batch[row, first + 1 :].to(logits.device)).cpu())
        del logits
        if progress is not None:
            progress("perplexity", len(acc.nll), chunks.shape[0])
    return acc.result(method, seq_len)


def compare_many(
    reference: Backend,
    candidates: Mapping[str, Backend],
    tokens: torch.Tensor,
    ctx_len: int = 512,
    n_chunks: int | None = 40,
    method: Method = "half",
    bos: int | None = None,
    source: str = "",
    progress: Progress | None = None,
) -> dict[str, QualityResult]:
    """Each candidate against the reference in one pass over the chunks: per chunk the
    reference logits are computed once and every candidate is scored against them."""
    chunks = cut_chunks(tokens, ctx_len, n_chunks, bos)
    seq_len = chunks.shape[1]
    first = first_scored(method, seq_len)
    ref_acc = _PplAccumulator()
    cand_acc = {name: _PplAccumulator() for name in candidates}
    kld: dict[str, list[torch.Tensor]] = {name: [] for name in candidates}
    agree: dict[str, list[torch.Tensor]] = {name: [] for name in candidates}
    for i in range(chunks.shape[0]):
        ids = chunks[i : i + 1]
        targets = ids[0, first + 1 :]
        ref = reference.logits(ids)[0, first : seq_len - 1].float()  # [scored, V]
        ref_acc.add(token_nll(ref, targets.to(ref.device)).cpu())
        ref_top = ref.argmax(-1)
        for name, backend in candidates.items():
            cand = backend.logits(ids)[0, first : seq_len - 1].float().to(ref.device)
            cand_acc[name].add(token_nll(cand, targets.to(cand.device)).cpu())
            kld[name].append(kl_divergence(ref, cand).cpu())
            agree[name].append((cand.argmax(-1) == ref_top).cpu())
            del cand
        del ref
        if progress is not None:
            progress("quality", i + 1, chunks.shape[0])
    ref_result = ref_acc.result(method, seq_len)
    source = source or f"{chunks.shape[0]} sequences x {seq_len} tokens, method {method}"
    out = {}
    for name in candidates:
        cand_result = cand_acc[name].result(method, seq_len)
        k = torch.cat(kld[name])
        out[name] = QualityResult(
            reference=ref_result,
            candidate=cand_result,
            ppl_increase_pct=100.0 * (cand_result.ppl / ref_result.ppl - 1.0),
            kld_mean=float(k.mean()),
            kld_p99=float(np.quantile(k.numpy(), 0.99)),
            kld_max=float(k.max()),
            top1=float(torch.cat(agree[name]).double().mean()),
            tokens_scored=k.numel(),
            source=source,
        )
    return out


def compare_logits(
    reference: Backend,
    candidate: Backend,
    tokens: torch.Tensor,
    ctx_len: int = 512,
    n_chunks: int | None = 40,
    method: Method = "half",
    bos: int | None = None,
    source: str = "",
    progress: Progress | None = None,
) -> QualityResult:
    """One candidate against the reference; see `compare_many`. For held-out sequences
    sampled from the model (no corpus), pass them as a 2-D tensor with method="full"."""
    return compare_many(reference, {"candidate": candidate}, tokens, ctx_len, n_chunks, method, bos, source, progress)[
        "candidate"
    ]
