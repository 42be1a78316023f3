"""GGUF / ggml spec constants used by inferc (the gguf package's enums where it has them)."""

from __future__ import annotations

from inferc.core.ir.quant import QuantFormat
from inferc.core.ir.spec import Family

GGUF_MAGIC = b"GGUF"
ALIGNMENT = 32
QK_K = 256  # K-quant super-block
QK = 32  # legacy block

# ggml type id (GGMLQuantizationType) of each inferc GGUF format
GGML_TYPE_IDS: dict[QuantFormat, int] = {
    QuantFormat.GGUF_F32: 0,
    QuantFormat.GGUF_F16: 1,
    QuantFormat.GGUF_Q4_0: 2,
    QuantFormat.GGUF_Q4_1: 3,
    QuantFormat.GGUF_Q5_0: 6,
    QuantFormat.GGUF_Q5_1: 7,
    QuantFormat.GGUF_Q8_0: 8,
    QuantFormat.GGUF_Q4_K: 12,
    QuantFormat.GGUF_Q5_K: 13,
    QuantFormat.GGUF_Q6_K: 14,
    QuantFormat.GGUF_BF16: 30,
}

# llama.cpp's architecture names (general.architecture); Mistral runs as llama.
ARCH_NAMES: dict[Family, str] = {
    Family.LLAMA: "llama",
    Family.MISTRAL: "llama",
    Family.QWEN2: "qwen2",
    Family.QWEN3: "qwen3",
    Family.GEMMA2: "gemma2",
    Family.GEMMA3: "gemma3",
}

# llama.cpp rotates q/k of these archs pairwise (GPT-J style): HF rows are permuted back.
PERMUTE_QK_ARCHS = frozenset({"llama"})

# general.file_type (llama_ftype) of each mixture
FILE_TYPES: dict[str, int] = {"f32": 0, "f16": 1, "q8_0": 7, "q4_k_s": 14, "q4_k_m": 15, "q5_k_m": 17, "bf16": 32}

# tokenizer.ggml.token_type values
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

# HF linear / norm suffix -> llama.cpp tensor name (within blk.N)
LAYER_TENSORS: dict[str, str] = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "input_layernorm": "attn_norm",
}
# post_attention_layernorm is ffn_norm in llama-style blocks and post_attention_norm in
# Gemma's sandwich blocks (where pre_feedforward_layernorm is ffn_norm).
SANDWICH_TENSORS: dict[str, str] = {
    "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "ffn_norm",
    "post_feedforward_layernorm": "post_ffw_norm",
}
PLAIN_TENSORS: dict[str, str] = {"post_attention_layernorm": "ffn_norm"}
GLOBAL_TENSORS: dict[str, str] = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}

# Pre-tokenizer names llama.cpp knows (tokenizer.ggml.pre), chosen by the HF pre-tokenizer.
PRE_GPT2, PRE_SMOLLM, PRE_QWEN2, PRE_LLAMA3, PRE_DEFAULT = "gpt-2", "smollm", "qwen2", "llama-bpe", "default"
