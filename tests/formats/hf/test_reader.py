"""Loading checkpoints, and every kind of bad checkpoint getting a CheckpointError."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from inferc.core.errors import CheckpointError, UnsupportedError
from inferc.formats.hf.reader import load_checkpoint


@pytest.fixture()
def ckpt(tiny_checkpoint, tmp_path):
    """A private, writable copy of the tiny llama checkpoint."""
    dst = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint("llama"), dst)
    return dst


def test_loads_lazily_with_spec(ckpt):
    ir = load_checkpoint(ckpt)
    assert ir.spec.num_layers == 2 and ir.spec.num_kv_heads == 2
    assert "layers.0.attn.q.weight" in ir.tensors and ir.source_name("layers.0.attn.q.weight") == "model.layers.0.self_attn.q_proj.weight"
    assert len(ir.source.sha256) == 64


def test_sharded_checkpoint_with_index(ckpt):
    tensors = load_file(ckpt / "model.safetensors")
    names = sorted(tensors)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for fname, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, ckpt / fname, metadata={"format": "pt"})
    (ckpt / "model.safetensors").unlink()
    weight_map = {k: f for f, keys in shards.items() for k in keys}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    ir = load_checkpoint(ckpt)
    by_hf = {hf: name for name, hf in ir.source_names.items()}
    assert torch.equal(ir.tensors.get(by_hf[names[0]]), tensors[names[0]])
    assert torch.equal(ir.tensors.get(by_hf[names[-1]]), tensors[names[-1]])


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")


def test_missing_config(ckpt):
    (ckpt / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json"):
        load_checkpoint(ckpt)


def test_unsupported_architecture_lists_supported(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["model_type"] = "gpt_bigcode"
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedError, match="gpt_bigcode.*supported: llama, mistral, qwen2, qwen3, gemma2, gemma3_text"):
        load_checkpoint(ckpt)


def test_truncated_safetensors(ckpt):
    f = ckpt / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(ckpt)


def test_corrupt_header(ckpt):
    f = ckpt / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[8:16] = b"\xff" * 8  # garbage where the JSON header starts
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_checkpoint(ckpt)


def test_shape_disagrees_with_config(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["intermediate_size"] = 96
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"mlp\.\w+_proj\.weight' has shape .* config.json implies"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weight_names_the_tensor(ckpt, bad):
    tensors = load_file(ckpt / "model.safetensors")
    name = "model.layers.1.mlp.up_proj.weight"
    tensors[name][3, 5] = bad
    save_file(tensors, ckpt / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=rf"{name}' contains {'NaN' if bad != bad else 'Inf'}"):
        load_checkpoint(ckpt)


def test_missing_tensor(ckpt):
    tensors = load_file(ckpt / "model.safetensors")
    del tensors["model.layers.0.self_attn.k_proj.weight"]
    save_file(tensors, ckpt / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="missing tensors.*k_proj"):
        load_checkpoint(ckpt)
