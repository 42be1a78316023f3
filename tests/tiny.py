"""Tiny random checkpoints of each supported family, written with transformers."""

from __future__ import annotations

from pathlib import Path

import torch

# Small but not degenerate: several heads, GQA, two layers (Gemma alternates kinds).
_COMMON = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
)

FAMILY_CONFIGS: dict[str, dict] = {
    "llama": dict(model_type="llama", tie_word_embeddings=True),
    "mistral": dict(model_type="mistral", sliding_window=8, tie_word_embeddings=False),
    "qwen2": dict(model_type="qwen2", tie_word_embeddings=False),
    "qwen3": dict(model_type="qwen3", head_dim=32, tie_word_embeddings=True),
    "gemma2": dict(
        model_type="gemma2", head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
        attn_logit_softcapping=50.0, final_logit_softcapping=30.0, hidden_activation="gelu_pytorch_tanh",
    ),
    "gemma3_text": dict(
        model_type="gemma3_text", head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
        sliding_window_pattern=2, hidden_activation="gelu_pytorch_tanh",
    ),
    # q|k|v and gate|up stored fused; partial rotary (Phi-4-mini style) and a sliding window
    "phi3": dict(model_type="phi3", sliding_window=8, partial_rotary_factor=0.5, tie_word_embeddings=False,
                 pad_token_id=0, bos_token_id=1, eos_token_id=2),
}


def make_tiny_checkpoint(model_type: str, out: Path, seed: int = 0) -> Path:
    """Write a random checkpoint of the family to `out` (config + bf16 safetensors)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = {**_COMMON, **FAMILY_CONFIGS[model_type]}
    mt = kwargs.pop("model_type")
    config = AutoConfig.for_model(mt, **kwargs)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    norm_center = 0.0 if mt.startswith("gemma") else 1.0  # Gemma norms scale by (1 + w)
    with torch.no_grad():  # random norms and biases, so norm offsets and biases are exercised
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(norm_center, 0.1)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.1)
    model.to(torch.bfloat16).save_pretrained(out)
    return out
