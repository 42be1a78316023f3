"""`inferc inspect --graph` and the exporter/backend registries build and eval use."""

from __future__ import annotations

import pytest

from inferc.compiler.cli import main
from inferc.core.errors import RecipeError, UnsupportedError
from inferc.formats.registry import get_exporter
from inferc.runtime.backends import backend_names, open_backend


def test_inspect_graph_prints_every_layer_and_the_fused_form(tiny_checkpoint, capsys):
    path = tiny_checkpoint("qwen3")
    assert main(["inspect", str(path), "--graph"]) == 0
    out = capsys.readouterr().out
    assert out.count("attention(") == 2 and "qk_norm=(layers.0.attn.q_norm.weight" in out and "rms_norm(h2, final_norm.weight" in out
    assert main(["inspect", str(path), "--graph", "--fused"]) == 0
    fused = capsys.readouterr().out
    assert "l0.qkv = linear(" in fused and "skip_rms_norm" in fused and "l0.q = linear" not in fused


def test_registries_name_what_they_hold(tiny_checkpoint, tmp_path):
    with pytest.raises(RecipeError, match="unknown export format 'onnx-nope'; registered: .*gguf.*hf"):
        get_exporter("onnx-nope")
    assert {"torch", "llamacpp"} <= set(backend_names())
    assert open_backend(tiny_checkpoint("llama")).name == "torch"
    (tmp_path / "x.bin").write_bytes(b"0")
    with pytest.raises(UnsupportedError, match="no runtime backend runs"):
        open_backend(tmp_path / "x.bin")
