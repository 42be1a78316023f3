from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from inferc.core.errors import FormatError
from inferc.core.ir import QuantFormat
from inferc.formats.gguf import export_gguf
from inferc.formats.hf.reader import load_checkpoint

pytest.importorskip("llama_cpp")
sys.path.insert(0, str(Path(__file__).parents[1] / "formats" / "gguf"))
from gguf_helpers import make_wide_llama  # noqa: E402


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("lcpp")
    path = d / "m.gguf"
    export_gguf(load_checkpoint(make_wide_llama(d / "ckpt")), path, dense=QuantFormat.GGUF_F32)
    return path


def test_logits_and_cached_decode_agree(gguf_file):
    from inferc.runtime.llamacpp_backend import LlamaCppBackend

    b = LlamaCppBackend(gguf_file, n_ctx=64)
    ids = torch.tensor([[1, 72, 101, 108, 108, 111, 32, 119, 111, 114]])
    full = b.logits(ids)
    assert full.shape == (1, 10, b.vocab_size)
    state, last = b.start(ids[:, :5])
    steps = [last] + [b.step(state, t) for t in ids[0, 5:-1].tolist()]
    torch.testing.assert_close(torch.cat(steps), full[0, 4:9], rtol=1e-3, atol=1e-3)
    assert torch.equal(b.logits(ids), full)  # the cache is reset between calls
    b.close()


def test_corrupt_file_is_a_format_error(gguf_file, tmp_path):
    from inferc.runtime.llamacpp_backend import LlamaCppBackend

    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf_file.read_bytes()[:5000])
    with pytest.raises(FormatError):
        LlamaCppBackend(cut)
