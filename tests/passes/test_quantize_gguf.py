"""quantize_gguf: llama.cpp's per-tensor policy, fallbacks recorded, importance used; and
on the real model, llama.cpp's perplexity of our Q4_K_M GGUF agrees with our runtime's
perplexity on the dequantized weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from inferc.core.ir import QuantFormat as Q
from inferc.core.ir.spec import Family
from inferc.formats.hf.reader import load_checkpoint
from inferc.passes import PassContext, get_pass
from inferc.passes.gguf_policy import choose_format, use_more_bits
from inferc.core.numerics import dequantize


def _smol_like_spec(tiny_checkpoint):
    spec = load_checkpoint(tiny_checkpoint("llama")).spec
    return dataclasses.replace(spec, hidden_size=576, intermediate_size=1536, num_layers=30, tie_word_embeddings=True, family=Family.LLAMA)


def test_policy_q4_k_m_on_smollm2_shapes(tiny_checkpoint):
    spec = _smol_like_spec(tiny_checkpoint)
    assert choose_format("embed", None, (49152, 576), spec, "q4_k_m").format is Q.GGUF_Q8_0
    assert choose_format("q", 5, (576, 576), spec, "q4_k_m").format is Q.GGUF_Q5_0
    assert choose_format("v", 0, (192, 576), spec, "q4_k_m").format is Q.GGUF_Q8_0
    assert choose_format("down", 0, (576, 1536), spec, "q4_k_m").format is Q.GGUF_Q6_K
    assert choose_format("down", 4, (576, 1536), spec, "q4_k_m").format is Q.GGUF_Q4_K
    assert choose_format("down", 4, (576, 1536), spec, "q5_k_m").format is Q.GGUF_Q5_K
    assert choose_format("up", 5, (1536, 576), spec, "q5_k_m").format is Q.GGUF_Q5_1
    assert [i for i in range(30) if use_more_bits(i, 30)] == [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]


def test_pass_records_fallbacks_and_uses_importance(tiny_checkpoint):
    model = load_checkpoint(tiny_checkpoint("llama"))  # rows of 64 and 128: every K-quant falls back
    p = get_pass("quantize_gguf")
    ctx = PassContext()
    p(p.Config(mixture="q4_k_m")).run(model, ctx)
    fallbacks = {e.tensor for e in ctx.events if e.kind == "fallback"}
    assert "layers.0.attn.q.weight" in fallbacks
    name = "layers.1.mlp.up.weight"
    q = model.weights[name]
    assert q.format is Q.GGUF_Q5_0
    w = model.dense(name).float()
    rel = (dequantize(q) - w).norm() / w.norm()
    assert rel < 0.05

    imp = torch.rand(w.shape[1]) ** 4 * 100  # a few columns dominate
    model2 = load_checkpoint(tiny_checkpoint("llama"))
    ctx2 = PassContext(importance={name: imp})
    p(p.Config(mixture="q4_k_m", use_imatrix=True)).run(model2, ctx2)
    err = lambda qq: float((((dequantize(qq) - w) ** 2) * imp).sum())  # noqa: E731
    assert err(model2.weights[name]) < err(q)
    assert model2.weights[name].algorithm == "imatrix"


@pytest.mark.parametrize("mixture", ["q4_k_m", "q8_0", "f16"])
def test_row_slices_in_threads_equal_whole_tensors(mixture, tiny_checkpoint, monkeypatch):
    import inferc.passes.quantize_gguf as qg
    from inferc.core.numerics.ggml import CODECS

    monkeypatch.setattr(qg, "SLICE_ELEMENTS", 1000)  # several slices per tensor, uneven last slice
    model = load_checkpoint(tiny_checkpoint("llama"))
    imp = {n: torch.rand(model.tensors.shape(n)[1]) for n in model.linear_names()}
    p = get_pass("quantize_gguf")
    p(p.Config(mixture=mixture, use_imatrix=mixture != "f16", threads=3)).run(model, PassContext(importance=imp))
    for name, q in model.weights.items():
        w = model.dense(name).float()
        assert qg._row_slices(w.shape)[0][1] < w.shape[0]
        if q.format is Q.GGUF_F16:
            whole = w.half().view(torch.uint8)
        else:
            whole = CODECS[q.format].quantize(w, importance=imp.get(name))
        assert torch.equal(q.data, whole), name


@pytest.mark.slow
@pytest.mark.parametrize("mixture", ["q4_k_m", "q4_k_s", "q5_k_m", "q8_0"])
def test_llama_cpp_perplexity_matches_our_runtime(mixture, smollm2_dir, wikitext_path, tmp_path):
    """Each policy's GGUF of the real model: llama.cpp loads it, completes a prompt
    coherently, and its perplexity agrees with ours on the same (dequantized) weights."""
    from inferc.calibration.corpus import load_tokenizer, read_text_file, tokenize
    from inferc.formats.gguf import export_gguf
    from inferc.runtime.evaluate import perplexity
    from inferc.runtime.llamacpp_backend import LlamaCppBackend
    from inferc.runtime.torch_backend import TorchBackend

    tokens = tokenize(load_tokenizer(smollm2_dir), read_text_file(wikitext_path))[: 4 * 512]
    model = load_checkpoint(smollm2_dir)
    p = get_pass("quantize_gguf")
    p(p.Config(mixture=mixture)).run(model, PassContext())
    export_gguf(model, tmp_path / "m.gguf")
    lcpp = LlamaCppBackend(tmp_path / "m.gguf", n_ctx=512)
    theirs = perplexity(lcpp, tokens, ctx_len=512, n_chunks=4, method="half").ppl
    text = lcpp._llm.create_completion("The capital of France is", max_tokens=8, temperature=0)["choices"][0]["text"]
    lcpp.close()
    ours = perplexity(TorchBackend(model), tokens, ctx_len=512, n_chunks=4, method="half").ppl
    assert abs(theirs - ours) / ours < 0.01, f"llama.cpp {theirs:.4f} vs ours {ours:.4f}"
    assert "Paris" in text
