"""GGUF exports of fused graphs: byte-identical to the unfused build."""

from __future__ import annotations

from inferc.formats.gguf import export_gguf
from inferc.formats.hf.reader import load_checkpoint
from inferc.passes import PassContext, get_pass, make_config

FUSIONS = ("fuse_qkv", "fuse_gate_up", "fuse_residual_norm")


def run(model, name, **options):
    cls = get_pass(name)
    return cls(make_config(cls, options)).run(model, PassContext())


def test_gguf_exports_byte_identical(tiny_with_tokenizer, tmp_path):
    path = tiny_with_tokenizer("llama")
    export_gguf(run(load_checkpoint(path), "quantize_gguf", mixture="q8_0"), tmp_path / "plain.gguf")
    fused = load_checkpoint(path)
    for name in FUSIONS:
        fused = run(fused, name)
    export_gguf(run(fused, "quantize_gguf", mixture="q8_0"), tmp_path / "fused.gguf")
    assert (tmp_path / "plain.gguf").read_bytes() == (tmp_path / "fused.gguf").read_bytes()


