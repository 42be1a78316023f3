"""Which ggml codec each tensor gets under a llama.cpp mixture (Q4_K_M, Q4_K_S, Q5_K_M,
Q8_0, F16), following llama.cpp's llama_tensor_get_type: the output (or tied embedding)
in Q6_K, "more bits" attn_v / ffn_down layers, and the fallbacks for rows that are not a
multiple of the codec's block (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16)."""

from __future__ import annotations

from dataclasses import dataclass

from inferc.core.ir import QuantFormat
from inferc.core.ir.spec import ArchSpec

Q = QuantFormat
MIXTURES = ("q4_k_m", "q4_k_s", "q5_k_m", "q8_0", "f16")
_BASE = {"q4_k_m": Q.GGUF_Q4_K, "q4_k_s": Q.GGUF_Q4_K, "q5_k_m": Q.GGUF_Q5_K, "q8_0": Q.GGUF_Q8_0, "f16": Q.GGUF_F16}
_BLOCK = {Q.GGUF_Q4_K: 256, Q.GGUF_Q5_K: 256, Q.GGUF_Q6_K: 256, Q.GGUF_Q8_0: 32, Q.GGUF_Q4_0: 32,
          Q.GGUF_Q4_1: 32, Q.GGUF_Q5_0: 32, Q.GGUF_Q5_1: 32, Q.GGUF_F16: 1}
_FALLBACK = {Q.GGUF_Q4_K: Q.GGUF_Q5_0, Q.GGUF_Q5_K: Q.GGUF_Q5_1, Q.GGUF_Q6_K: Q.GGUF_Q8_0}


@dataclass(frozen=True)
class Choice:
    format: QuantFormat
    wanted: QuantFormat  # before the fallback for the row width
    reason: str

    @property
    def fallback(self) -> bool:
        return self.format is not self.wanted


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def _fit(fmt: QuantFormat, cols: int, reason: str) -> Choice:
    if cols % _BLOCK[fmt] == 0:
        return Choice(fmt, fmt, reason)
    fb = _FALLBACK.get(fmt, Q.GGUF_F16)
    if cols % _BLOCK[fb] != 0:
        fb = Q.GGUF_F16
    return Choice(fb, fmt, f"{reason}; rows of {cols} are not a multiple of {_BLOCK[fmt]}")


def choose_format(name: str, shape: tuple[int, int], spec: ArchSpec, mixture: str) -> Choice:
    """The codec of one 2-D weight (HF name, [out, in]) under a mixture."""
    base = _BASE[mixture]
    cols = shape[1]
    if mixture == "f16":
        return Choice(Q.GGUF_F16, Q.GGUF_F16, "f16")
    is_output = name == "lm_head.weight" or (spec.tie_word_embeddings and name == "model.embed_tokens.weight")
    if is_output:
        if cols % 256 != 0:
            return Choice(Q.GGUF_Q8_0, Q.GGUF_Q8_0, "output: rows not a multiple of 256")
        return Choice(Q.GGUF_Q6_K if mixture != "q8_0" else Q.GGUF_Q8_0, Q.GGUF_Q6_K, "output")
    if name == "model.embed_tokens.weight":
        return _fit(base, cols, "token embedding")
    layer = int(name.split(".")[2]) if name.startswith("model.layers.") else 0
    n = spec.num_layers
    if name.endswith("self_attn.v_proj.weight"):
        if mixture in ("q4_k_m", "q5_k_m") and use_more_bits(layer, n):
            return _fit(Q.GGUF_Q6_K, cols, "attn_v: more bits")
        if mixture == "q4_k_s" and layer < 4:
            return _fit(Q.GGUF_Q5_K, cols, "attn_v: first layers")
    if name.endswith("mlp.down_proj.weight"):
        if mixture in ("q4_k_m", "q5_k_m") and use_more_bits(layer, n):
            return _fit(Q.GGUF_Q6_K, cols, "ffn_down: more bits")
        if mixture == "q4_k_s" and layer < n // 8:
            return _fit(Q.GGUF_Q5_K, cols, "ffn_down: first layers")
    return _fit(base, cols, "default")
