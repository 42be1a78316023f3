"""onnxruntime-genai runs our exported folder as it is (genai_config.json + tokenizer files)."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "gguf"))
from gguf_helpers import add_byte_tokenizer  # noqa: E402
from onnx_helpers import prepared  # noqa: E402

from inferc.formats.onnx import Flavour, OnnxConfig, export_onnx
from inferc.formats.onnx import constants as C
from inferc.runtime.torch_backend import TorchBackend

og = pytest.importorskip("onnxruntime_genai")


def _greedy_genai(folder: Path, prompt: list[int], n: int) -> list[int]:
    model = og.Model(str(folder))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + n, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(prompt)
    out = []
    while not gen.is_done():
        gen.generate_next_token()
        out.append(int(gen.get_next_tokens()[0]))
    return out[:n]


def _greedy_torch(ir, prompt: list[int], n: int) -> list[int]:
    backend = TorchBackend(ir)
    state, logits = backend.start(torch.tensor([prompt]))
    out = []
    for _ in range(n):
        out.append(int(logits[0].argmax()))
        logits = backend.step(state, out[-1])
    return out


@pytest.mark.parametrize("flavour", list(Flavour))
@pytest.mark.parametrize("family, quant", [("mistral", None), ("qwen2", dict(format="int4", group_size=32))])
def test_genai_greedy_continuation_equals_our_runtime(tiny_checkpoint, tmp_path, family, quant, flavour):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint(family), ckpt)
    add_byte_tokenizer(ckpt)
    ir = prepared(ckpt, quant and dict(quant), fuse=True)
    folder = export_onnx(ir, tmp_path / "onnx", OnnxConfig(flavour=flavour, max_positions=64)).parent
    config = json.loads((folder / C.GENAI_CONFIG_FILE).read_text())
    assert config["search"]["past_present_share_buffer"] == (flavour is Flavour.ORT)
    assert (folder / "tokenizer.json").is_file()
    prompt = torch.randint(3, ir.spec.vocab_size, (12,), generator=torch.Generator().manual_seed(3)).tolist()
    ours = _greedy_torch(ir, prompt, 32)
    assert len(set(ours)) > 4  # a continuation that can differ, not one token repeated
    assert _greedy_genai(folder, prompt, 32) == ours
