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
    Family.PHI3: "phi3",
}

# llama.cpp rotates q/k of these archs pairwise (GPT-J style): HF rows are permuted back.
PERMUTE_QK_ARCHS = frozenset({"llama"})

# general.file_type (llama_ftype) of each mixture
FILE_TYPES: dict[str, int] = {"f32": 0, "f16": 1, "q8_0": 7, "q4_k_s": 14, "q4_k_m": 15, "q5_k_m": 17, "bf16": 32}

# tokenizer.ggml.token_type values
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

# IR module (within a layer) -> llama.cpp tensor name (within blk.N). Fused q|k|v is
# attn_qkv; fused gate|up is ffn_up with 2 * n_ff rows (llama.cpp's Phi-3 layout).
LAYER_TENSORS: dict[str, str] = {
    "attn_norm": "attn_norm",
    "attn.q": "attn_q",
    "attn.k": "attn_k",
    "attn.v": "attn_v",
    "attn.qkv": "attn_qkv",
    "attn.o": "attn_output",
    "attn.q_norm": "attn_q_norm",
    "attn.k_norm": "attn_k_norm",
    "post_attn_norm": "post_attention_norm",
    "mlp_norm": "ffn_norm",
    "mlp.gate": "ffn_gate",
    "mlp.up": "ffn_up",
    "mlp.gate_up": "ffn_up",
    "mlp.down": "ffn_down",
    "post_mlp_norm": "post_ffw_norm",
}
GLOBAL_TENSORS: dict[str, str] = {
    "embed.weight": "token_embd.weight",
    "final_norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}

# Pre-tokenizer names llama.cpp knows (tokenizer.ggml.pre), chosen by the HF pre-tokenizer.
PRE_GPT2, PRE_SMOLLM, PRE_QWEN2, PRE_LLAMA3, PRE_DEFAULT = "gpt-2", "smollm", "qwen2", "llama-bpe", "default"
