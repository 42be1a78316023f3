"""The reference forward against transformers, per family, with and without a cache."""

from __future__ import annotations

import pytest
import torch

from inferc.core.ir import RopeSpec
from inferc.formats.hf.reader import load_checkpoint
from inferc.runtime.reference import ReferenceModel, rope_inv_freq
from tiny import FAMILY_CONFIGS

transformers = pytest.importorskip("transformers")


def _hf_logits(path, ids):
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("model_type", list(FAMILY_CONFIGS))
def test_logits_match_transformers(tiny_checkpoint, model_type):
    path = tiny_checkpoint(model_type)
    ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(1))  # 24 > sliding window 8
    ours = ReferenceModel(load_checkpoint(path)).forward(ids)
    theirs = _hf_logits(path, ids)
    rel = (ours - theirs).abs().max() / theirs.abs().max()
    assert rel < 1e-5, f"{model_type}: max relative logit error {rel:.2e}"


ROPES = {
    "default": ({"rope_type": "default", "rope_theta": 100000.0}, RopeSpec(theta=100000.0)),
    "linear": ({"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}, RopeSpec(theta=10000.0, kind="linear", factor=4.0)),
    "llama3": ({"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192},
               RopeSpec(theta=500000.0, kind="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position=8192)),
}


@pytest.mark.parametrize("kind", list(ROPES))
def test_rope_frequencies_are_transformers_bit_for_bit(kind):
    """FP8 activation rounding turns a 1-ulp frequency difference into different logits
    (max |Δlogit| / max |logit| 4e-2 on SmolLM2 W8A8), so the frequencies must be the
    consumer's, not merely close."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    params, spec = ROPES[kind]
    cfg = LlamaConfig(hidden_size=576, num_attention_heads=9, head_dim=64, max_position_embeddings=16384, rope_parameters=params)
    theirs = LlamaRotaryEmbedding(cfg).inv_freq
    ours = rope_inv_freq(spec, 64)
    assert ours.dtype == theirs.dtype == torch.float32
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("model_type", ["llama", "gemma2"])
def test_kv_cache_decoding_matches_full_forward(tiny_checkpoint, model_type):
    ref = ReferenceModel(load_checkpoint(tiny_checkpoint(model_type)))
    ids = torch.randint(0, 256, (1, 20), generator=torch.Generator().manual_seed(2))
    full = ref.forward(ids)
    cache = ref.new_cache()
    parts = [ref.forward(ids[:, :7], cache)] + [ref.forward(ids[:, t : t + 1], cache) for t in range(7, 20)]
    stepped = torch.cat(parts, dim=1)
    assert (stepped - full).abs().max() < 1e-4


def test_overriding_weights_is_undone_on_exit(tiny_checkpoint):
    ref = ReferenceModel(load_checkpoint(tiny_checkpoint("llama")))
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(3))
    base = ref.forward(ids)
    up = "layers.0.mlp.up.weight"
    ref.release()  # nothing materialized: the override must not leave its tensor behind
    with ref.overriding({up: torch.zeros(ref.ir.tensors.shape(up))}):
        changed = ref.forward(ids)
    assert not torch.allclose(changed, base)
    torch.testing.assert_close(ref.forward(ids), base)
    with ref.overriding({up: torch.zeros(ref.ir.tensors.shape(up))}):  # now over a materialized weight
        ref.forward(ids)
    torch.testing.assert_close(ref.forward(ids), base)


@pytest.mark.slow
def test_real_model_logits_match_transformers(smollm2_dir):
    ids = torch.randint(0, 49152, (1, 64), generator=torch.Generator().manual_seed(3))
    ours = ReferenceModel(load_checkpoint(smollm2_dir)).forward(ids)
    theirs = _hf_logits(smollm2_dir, ids)
    rel = (ours - theirs).abs().max() / theirs.abs().max()
    assert rel < 1e-4, f"max relative logit error {rel:.2e}"
