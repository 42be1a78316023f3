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
