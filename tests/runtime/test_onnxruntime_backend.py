"""The ONNX Runtime backend: its cached decode (IO binding) against the torch backend."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "formats" / "onnx"))
from onnx_helpers import prepared  # noqa: E402

from inferc.formats.onnx import Flavour, OnnxConfig, export_onnx
from inferc.runtime.onnxruntime_backend import OnnxRuntimeBackend
from inferc.runtime.torch_backend import TorchBackend

pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("flavour", list(Flavour))
def test_greedy_decode_follows_the_torch_backend(tiny_checkpoint, tmp_path, flavour):
    ir = prepared(tiny_checkpoint("qwen2"), dict(format="int4", group_size=32), fuse=True)
    backend = OnnxRuntimeBackend(export_onnx(ir, tmp_path / "m", OnnxConfig(flavour=flavour)).parent)
    assert backend.shared_buffer == (flavour is Flavour.ORT)  # GroupQueryAttention appends in place
    torch_be = TorchBackend(ir)
    ids = torch.randint(0, ir.spec.vocab_size, (1, 10), generator=torch.Generator().manual_seed(5))
    (s1, a), (s2, b) = backend.start(ids), torch_be.start(ids)
    tokens, worst = [], float((a - b).abs().max())
    for _ in range(24):
        tok = int(b.argmax())
        tokens.append(tok)
        a, b = backend.step(s1, tok), torch_be.step(s2, tok)
        worst = max(worst, float((a - b).abs().max()))
    assert worst < 1e-4 and s1.length == 10 + 24
    assert (backend.logits(ids) - torch_be.logits(ids)).abs().max() < 1e-4
    backend.close()


def test_a_folder_with_genai_config_gives_symbolic_cache_axes_and_the_shared_buffer(tiny_checkpoint, tmp_path):
    """A model written by another tool (the onnxruntime-genai builder) names its cache axes
    symbolically and says in genai_config.json whether past and present share one buffer."""
    import json

    import onnx

    ir = prepared(tiny_checkpoint("qwen2"), dict(format="int4", group_size=32), fuse=True)
    folder = export_onnx(ir, tmp_path / "m", OnnxConfig()).parent
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    for value in list(model.graph.input) + list(model.graph.output):
        if value.name.startswith(("past_key_values.", "present.")):
            value.type.tensor_type.shape.dim[1].dim_param = "kv_heads"
            value.type.tensor_type.shape.dim[3].dim_param = "kv_cache_dim"
    del model.metadata_props[:]
    onnx.save(model, str(folder / "model.onnx"))
    (folder / "genai_config.json").unlink()  # ours writes one; a folder without it cannot name the axes
    with pytest.raises(Exception, match="symbolic and no genai_config.json"):
        OnnxRuntimeBackend(folder)
    attn = next(n for n in ir.graph if type(n).__name__ == "Attention")
    (folder / "genai_config.json").write_text(json.dumps({
        "model": {"decoder": {"num_key_value_heads": attn.num_kv_heads, "head_size": attn.head_dim}},
        "search": {"past_present_share_buffer": True, "max_length": 64}}))
    backend = OnnxRuntimeBackend(folder)
    assert backend.shared_buffer and backend.max_length == 64
    torch_be = TorchBackend(ir)
    ids = torch.randint(0, ir.spec.vocab_size, (1, 10), generator=torch.Generator().manual_seed(2))
    (s1, a), (s2, b) = backend.start(ids), torch_be.start(ids)
    for _ in range(8):
        tok = int(b.argmax())
        a, b = backend.step(s1, tok), torch_be.step(s2, tok)
    assert (a - b).abs().max() < 1e-4
    backend.close()
