"""Which ggml codec each tensor gets under a llama.cpp mixture (Q4_K_M, Q4_K_S, Q5_K_M,
Q8_0, F16), following llama.cpp's llama_tensor_get_type: the output (or tied embedding)
in Q6_K, "more bits" attn_v / ffn_down layers, and the fallbacks for rows that are not a
multiple of the codec's block (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16)."""

from __future__ import annotations

from dataclasses import dataclass

from inferc.core.ir import QuantFormat, Role
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


def choose_format(kind: str, layer: int | None, shape: tuple[int, int], spec: ArchSpec, mixture: str) -> Choice:
    """The codec of one 2-D weight under a mixture. `kind` is what the tensor is in the
    graph: "embed", a linear role ("q", "v", "down", "lm_head", ...) or, for a stored
    fused matrix, its roles joined ("qkv", "gate_up"); `layer` its decoder layer."""
    base = _BASE[mixture]
    cols = shape[1]
    if mixture == "f16":
        return Choice(Q.GGUF_F16, Q.GGUF_F16, "f16")
    is_output = kind == Role.LM_HEAD.value or (spec.tie_word_embeddings and kind == "embed")
    if is_output:
        if cols % 256 != 0:
            return Choice(Q.GGUF_Q8_0, Q.GGUF_Q8_0, "output: rows not a multiple of 256")
        return Choice(Q.GGUF_Q6_K if mixture != "q8_0" else Q.GGUF_Q8_0, Q.GGUF_Q6_K, "output")
    if kind == "embed":
        return _fit(base, cols, "token embedding")
    layer = layer or 0
    n = spec.num_layers
    if kind == Role.V.value:
        if mixture in ("q4_k_m", "q5_k_m") and use_more_bits(layer, n):
            return _fit(Q.GGUF_Q6_K, cols, "attn_v: more bits")
        if mixture == "q4_k_s" and layer < 4:
            return _fit(Q.GGUF_Q5_K, cols, "attn_v: first layers")
    if kind == "qkv":  # one stored q|k|v matrix (llama.cpp's attn_qkv)
        if mixture == "q4_k_m":
            return _fit(Q.GGUF_Q5_K, cols, "attn_qkv")
        if mixture == "q5_k_m":
            return _fit(Q.GGUF_Q6_K, cols, "attn_qkv")
    if kind == Role.DOWN.value:
        if mixture in ("q4_k_m", "q5_k_m") and use_more_bits(layer, n):
            return _fit(Q.GGUF_Q6_K, cols, "ffn_down: more bits")
        if mixture == "q4_k_s" and layer < n // 8:
            return _fit(Q.GGUF_Q5_K, cols, "ffn_down: first layers")
    return _fit(base, cols, "default")
