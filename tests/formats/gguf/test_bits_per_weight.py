"""`inferc inspect` and the build report give one bits-per-weight figure for the same
file: tensor data bytes x 8 / weights, file headers and metadata not counted."""

from __future__ import annotations

import pytest

from inferc.compiler.build import size_info
from inferc.compiler.inspect import inspect_path
from inferc.formats.hf.reader import load_checkpoint
from inferc.passes import PassContext, get_pass


def _bpw(summary: list[tuple[str, str]]) -> float:
    return float(dict(summary)["bits per weight"].split()[0])


def test_gguf_report_and_inspect_agree(tiny_with_tokenizer, tmp_path):
    pytest.importorskip("gguf")
    from inferc.formats.gguf import export_gguf, read_gguf_summary

    ir = load_checkpoint(tiny_with_tokenizer("llama"))
    p = get_pass("quantize_gguf")
    p(p.Config(mixture="q4_k_m")).run(ir, PassContext())
    path = tmp_path / "model.gguf"
    export_gguf(ir, path)
    reported = size_info(ir, [path]).bits_per_weight
    summary = read_gguf_summary(path)
    tensor_bytes = sum(t.nbytes for t in summary.tensors)
    assert reported == pytest.approx(8 * tensor_bytes / ir.num_parameters())
    assert _bpw(inspect_path(path)[0]) == pytest.approx(reported, abs=5e-4)
    assert 8 * path.stat().st_size / ir.num_parameters() > reported + 0.1  # the file's header and vocab are not weights


def test_hf_report_and_inspect_agree(tiny_checkpoint, tmp_path):
    from inferc.formats.hf.writer import export_hf

    ir = load_checkpoint(tiny_checkpoint("llama"))
    p = get_pass("quantize_fp8")
    p(p.Config(activations="dynamic")).run(ir, PassContext())
    export_hf(ir, tmp_path / "hf")
    reported = size_info(ir, [tmp_path / "hf"]).bits_per_weight
    assert _bpw(inspect_path(tmp_path / "hf")[0]) == pytest.approx(reported, abs=5e-4)
    assert 8 < reported < 16  # FP8 linears, bf16 embeddings and norms
