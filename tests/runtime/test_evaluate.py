"""Perplexity, KL divergence and top-1 agreement, checked against per-position loops
written straight from the definitions, on fake backends with known logits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inferc.core.errors import CalibrationError
from inferc.runtime.evaluate import compare_logits, compare_many, cut_chunks, perplexity

V = 11


class BigramBackend:
    """logits at position t depend only on ids[t]: table[ids[t]]. Records its inputs."""

    name = "bigram"

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table
        self.seen: list[torch.Tensor] = []

    @property
    def vocab_size(self) -> int:
        return self.table.shape[1]

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        self.seen.append(ids.clone())
        return self.table[ids]


class OracleBackend:
    """Knows the stream: certain of the next token at positions >= L//2, uniform before."""

    name = "oracle"
    vocab_size = V

    def __init__(self, chunks: torch.Tensor) -> None:
        self.chunks = chunks

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        b, L = ids.shape
        out = torch.zeros(b, L, V)
        for row in range(b):
            match = next(i for i in range(self.chunks.shape[0]) if torch.equal(self.chunks[i, 1:], ids[row, 1:]))
            for t in range(L // 2, L - 1):
                out[row, t, self.chunks[match, t + 1]] = 100.0
        return out


def _stream(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(seed))


def _table(seed: int) -> torch.Tensor:
    return torch.randn(V, V, generator=torch.Generator().manual_seed(seed)) * 2


def _loop_nll(table: torch.Tensor, chunk: list[int], first: int) -> list[float]:
    out = []
    for t in range(first, len(chunk) - 1):
        row = table[chunk[t]].double().tolist()
        lse = math.log(sum(math.exp(v) for v in row))
        out.append(lse - row[chunk[t + 1]])
    return out


def _loop_kl(p_table: torch.Tensor, q_table: torch.Tensor, token: int) -> float:
    p = torch.softmax(p_table[token].double(), -1).tolist()
    q = torch.softmax(q_table[token].double(), -1).tolist()
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


@pytest.mark.parametrize("method,first", [("half", 8), ("full", 0)])
def test_perplexity_matches_definition(method, first):
    table, stream, L = _table(1), _stream(16 * 5 + 7), 16
    res = perplexity(BigramBackend(table), stream, ctx_len=L, n_chunks=None, method=method)
    chunks = stream[: 5 * L].reshape(5, L).tolist()
    nll = [v for c in chunks for v in _loop_nll(table, c, first)]
    assert res.chunks == 5
    assert res.tokens_scored == len(nll) == 5 * (L - 1 - first)
    assert res.nll == pytest.approx(sum(nll) / len(nll), rel=1e-6)
    assert res.ppl == pytest.approx(math.exp(sum(nll) / len(nll)), rel=1e-6)
    assert res.chunk_nll[2] == pytest.approx(sum(_loop_nll(table, chunks[2], first)) / (L - 1 - first), rel=1e-6)


def test_half_scores_exactly_the_second_half():
    L = 10
    stream = _stream(4 * L, seed=3)
    chunks = cut_chunks(stream, L, None)
    half = perplexity(OracleBackend(chunks), stream, ctx_len=L, n_chunks=None, method="half")
    assert half.tokens_scored == 4 * (L - 1 - L // 2)  # 4 per chunk at L=10, like llama.cpp's n_ctx-1-n_ctx/2
    assert half.nll < 1e-30  # every scored position is one the oracle knows
    full = perplexity(OracleBackend(chunks), stream, ctx_len=L, n_chunks=None, method="full")
    # positions 0..L/2-1 are uniform: nll = ln V each
    assert full.nll == pytest.approx((L // 2) * math.log(V) / (L - 1), rel=1e-6)


def test_uniform_logits_give_vocab_perplexity():
    res = perplexity(BigramBackend(torch.zeros(V, V)), _stream(64), ctx_len=16, n_chunks=3)
    assert res.ppl == pytest.approx(V, rel=1e-6)
    assert res.chunks == 3 and res.tokens_scored == 3 * 7


def test_bos_replaces_first_token_of_each_chunk_and_batching_agrees():
    table, stream = _table(2), _stream(50)
    be = BigramBackend(table)
    res = perplexity(be, stream, ctx_len=12, n_chunks=None, bos=V - 1, batch_size=3, method="full")
    seen = torch.cat(be.seen)
    assert seen.shape == (4, 12)
    assert (seen[:, 0] == V - 1).all()
    assert torch.equal(seen[:, 1:], stream[:48].reshape(4, 12)[:, 1:])
    single = perplexity(BigramBackend(table), stream, ctx_len=12, n_chunks=None, bos=V - 1, method="full")
    assert res.ppl == pytest.approx(single.ppl, rel=1e-9)
    chunks = stream[:48].reshape(4, 12).clone()
    chunks[:, 0] = V - 1
    nll = [v for c in chunks.tolist() for v in _loop_nll(table, c, 0)]
    assert res.nll == pytest.approx(sum(nll) / len(nll), rel=1e-6)


def test_kl_and_top1_match_definition():
    p_table, q_table = _table(4), _table(4) + 0.7 * _table(5)
    stream, L = _stream(6 * 16, seed=7), 16
    q = compare_logits(BigramBackend(p_table), BigramBackend(q_table), stream, ctx_len=L, n_chunks=6)
    scored = [c[t] for c in stream.reshape(6, L).tolist() for t in range(L // 2, L - 1)]
    kls = [_loop_kl(p_table, q_table, tok) for tok in scored]
    agree = [int(p_table[tok].argmax() == q_table[tok].argmax()) for tok in scored]
    assert q.tokens_scored == len(scored) == 6 * 7
    assert q.kld_mean == pytest.approx(sum(kls) / len(kls), rel=1e-5)
    assert q.kld_max == pytest.approx(max(kls), rel=1e-5)
    assert q.kld_p99 == pytest.approx(float(np.quantile(kls, 0.99)), rel=1e-5)
    assert q.top1 == pytest.approx(sum(agree) / len(agree))
    assert 0 < q.top1 < 1  # the tables disagree somewhere, so this checks something
    ref = perplexity(BigramBackend(p_table), stream, ctx_len=L, n_chunks=6)
    cand = perplexity(BigramBackend(q_table), stream, ctx_len=L, n_chunks=6)
    assert q.reference.ppl == pytest.approx(ref.ppl, rel=1e-9)
    assert q.candidate.ppl == pytest.approx(cand.ppl, rel=1e-9)
    assert q.ppl_increase_pct == pytest.approx(100 * (cand.ppl / ref.ppl - 1), rel=1e-9)


def test_identical_backends_have_zero_kl_and_full_agreement():
    table = _table(6)
    q = compare_logits(BigramBackend(table), BigramBackend(table.clone()), _stream(80), ctx_len=16, n_chunks=None)
    assert q.kld_mean == pytest.approx(0.0, abs=1e-7) and q.kld_max == pytest.approx(0.0, abs=1e-6)
    assert q.top1 == 1.0 and q.ppl_increase_pct == pytest.approx(0.0, abs=1e-9)


def test_compare_many_computes_reference_once_per_chunk():
    ref, a, b = BigramBackend(_table(8)), BigramBackend(_table(9)), BigramBackend(_table(8))
    out = compare_many(ref, {"a": a, "b": b}, _stream(64), ctx_len=16, n_chunks=None)
    assert len(ref.seen) == 4 and len(a.seen) == 4 and len(b.seen) == 4
    assert out["b"].kld_mean == pytest.approx(0.0, abs=1e-7) and out["a"].kld_mean > 0.01
    single = compare_logits(BigramBackend(_table(8)), BigramBackend(_table(9)), _stream(64), ctx_len=16, n_chunks=None)
    assert out["a"].kld_mean == pytest.approx(single.kld_mean, rel=1e-12)


def test_presplit_sequences_use_the_same_path():
    table = _table(10)
    seqs = torch.randint(0, V, (5, 9), generator=torch.Generator().manual_seed(11))
    res = perplexity(BigramBackend(table), seqs, method="full", n_chunks=None)
    nll = [v for c in seqs.tolist() for v in _loop_nll(table, c, 0)]
    assert res.tokens_scored == 5 * 8 and res.ctx_len == 9
    assert res.nll == pytest.approx(sum(nll) / len(nll), rel=1e-6)
    q = compare_logits(BigramBackend(table), BigramBackend(_table(12)), seqs, method="full", n_chunks=3)
    assert q.tokens_scored == 3 * 8


def test_too_short_corpus_raises_a_user_error():
    with pytest.raises(CalibrationError, match="at least one chunk of 512"):
        perplexity(BigramBackend(_table(0)), _stream(100), ctx_len=512)


@pytest.mark.slow
def test_real_model_perplexity_matches_transformers(smollm2_dir, wikitext_path):
    """The torch backend's bf16 perplexity on wikitext is plausible and equals
    transformers' float32 forward on the same chunks within 0.1 %."""
    from transformers import AutoModelForCausalLM

    from inferc.calibration.corpus import load_tokenizer, read_text_file, tokenize
    from inferc.formats.hf.reader import load_checkpoint
    from inferc.runtime.torch_backend import TorchBackend

    text = read_text_file(wikitext_path)[:60_000]
    tokens = tokenize(load_tokenizer(smollm2_dir), text)
    ours = perplexity(TorchBackend(load_checkpoint(smollm2_dir)), tokens, ctx_len=512, n_chunks=3, method="half")
    assert ours.chunks == 3 and ours.tokens_scored == 3 * 255
    assert 5.0 < ours.ppl < 80.0  # SmolLM2-135M on wikitext-2 at 512 tokens is in the 20s

    hf = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()

    class HFBackend:
        name, vocab_size = "transformers", hf.config.vocab_size

        def logits(self, ids):
            with torch.inference_mode():
                return hf(ids).logits.float()

    theirs = perplexity(HFBackend(), tokens, ctx_len=512, n_chunks=3, method="half")
    assert ours.ppl == pytest.approx(theirs.ppl, rel=1e-3)
