"""Architecture spec: everything the reference forward and the exporters need to know
about a decoder-only model, read once from its Hugging Face `config.json`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from inferc.core.errors import CheckpointError, UnsupportedError


class Family(str, Enum):
    LLAMA = "llama"
    MISTRAL = "mistral"
    QWEN2 = "qwen2"
    QWEN3 = "qwen3"
    GEMMA2 = "gemma2"
    GEMMA3 = "gemma3"
    PHI3 = "phi3"


# model_type in config.json -> family
_MODEL_TYPES: dict[str, Family] = {
    "llama": Family.LLAMA,
    "mistral": Family.MISTRAL,
    "qwen2": Family.QWEN2,
    "qwen3": Family.QWEN3,
    "gemma2": Family.GEMMA2,
    "gemma3_text": Family.GEMMA3,
    "phi3": Family.PHI3,
}

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(_MODEL_TYPES)


class LayerKind(str, Enum):
    FULL = "full_attention"
    SLIDING = "sliding_attention"


@dataclass(frozen=True)
class RopeSpec:
    theta: float
    kind: str = "default"  # default | linear | llama3
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position: int = 8192


@dataclass(frozen=True)
class ArchSpec:
    family: Family
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope: RopeSpec
    max_position_embeddings: int
    tie_word_embeddings: bool
    hidden_act: str = "silu"
    attention_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False  # Qwen3, Gemma3: RMSNorm on each head of q and k
    norm_offset: float = 0.0  # Gemma: norms scale by (1 + weight)
    embedding_scale: float = 1.0  # Gemma: embeddings times sqrt(hidden)
    sandwich_norm: bool = False  # Gemma2/3: norms after attention and after the MLP too
    attn_scale: float = 0.0  # softmax scale; 0 means 1/sqrt(head_dim)
    attn_logit_softcap: float | None = None
    final_logit_softcap: float | None = None
    sliding_window: int | None = None
    layer_kinds: tuple[LayerKind, ...] = ()
    rope_local: RopeSpec | None = None  # Gemma3: rope of sliding-window layers
    partial_rotary_factor: float = 1.0  # Phi-3/4: rope on the leading dims of each head
    fused_qkv: bool = False  # the checkpoint stores q, k, v as one matrix (Phi-3)
    fused_gate_up: bool = False  # likewise gate and up (Phi-3)
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    raw_config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def softmax_scale(self) -> float:
        return self.attn_scale or 1.0 / math.sqrt(self.head_dim)

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    def layer_window(self, layer: int) -> int | None:
        """Sliding window of a layer, or None when it attends to the full context."""
        if self.sliding_window and self.layer_kinds and self.layer_kinds[layer] is LayerKind.SLIDING:
            return self.sliding_window
        return None

    def layer_rope(self, layer: int) -> RopeSpec:
        if self.rope_local is not None and self.layer_kinds[layer] is LayerKind.SLIDING:
            return self.rope_local
        return self.rope

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)


def _rope_from(params: dict[str, Any] | None, fallback_theta: float | None) -> RopeSpec:
    params = dict(params or {})
    theta = params.get("rope_theta", fallback_theta)
    if theta is None:
        theta = 10000.0
    kind = params.get("rope_type", params.get("type", "default")) or "default"
    if kind not in ("default", "linear", "llama3"):  # longrope (Phi-3 128k) is not
        raise UnsupportedError(
            f"rope scaling '{kind}' is not supported; supported: default, linear, llama3"
        )
    return RopeSpec(
        theta=float(theta),
        kind=kind,
        factor=float(params.get("factor", 1.0) or 1.0),
        low_freq_factor=float(params.get("low_freq_factor", 1.0)),
        high_freq_factor=float(params.get("high_freq_factor", 4.0)),
        original_max_position=int(params.get("original_max_position_embeddings", 8192)),
    )


def _rope_specs(cfg: dict[str, Any]) -> tuple[RopeSpec, RopeSpec | None]:
    """Global and (Gemma3) local rope, from transformers 4 or 5 style configs."""
    params = cfg.get("rope_parameters")
    theta = cfg.get("rope_theta")
    if isinstance(params, dict) and LayerKind.FULL.value in params:
        glob = _rope_from(params[LayerKind.FULL.value], theta)
        local_params = params.get(LayerKind.SLIDING.value)
        local = _rope_from(local_params, cfg.get("rope_local_base_freq", 10000.0)) if local_params else None
        return glob, local
    glob = _rope_from(params if isinstance(params, dict) else cfg.get("rope_scaling"), theta)
    local = None
    if "rope_local_base_freq" in cfg:
        local = RopeSpec(theta=float(cfg["rope_local_base_freq"]))
    return glob, local


def _require(cfg: dict[str, Any], key: str) -> Any:
    if key not in cfg or cfg[key] is None:
        raise CheckpointError(f"config.json has no '{key}'; it is required for model_type '{cfg.get('model_type')}'")
    return cfg[key]


def _layer_kinds(cfg: dict[str, Any], family: Family, num_layers: int) -> tuple[LayerKind, ...]:
    if "layer_types" in cfg and cfg["layer_types"]:
        kinds = tuple(LayerKind(k) for k in cfg["layer_types"])
        if len(kinds) != num_layers:
            raise CheckpointError(f"config.json layer_types has {len(kinds)} entries, expected {num_layers}")
        return kinds
    if family is Family.GEMMA2:  # alternates, starting with a sliding layer
        return tuple(LayerKind.SLIDING if i % 2 == 0 else LayerKind.FULL for i in range(num_layers))
    if family is Family.GEMMA3:
        pattern = int(cfg.get("sliding_window_pattern", 6))
        return tuple(LayerKind.FULL if (i + 1) % pattern == 0 else LayerKind.SLIDING for i in range(num_layers))
    window = cfg.get("sliding_window")
    use = cfg.get("use_sliding_window", family in (Family.MISTRAL, Family.PHI3))
    kind = LayerKind.SLIDING if (window and use) else LayerKind.FULL
    return tuple(kind for _ in range(num_layers))


def spec_from_config(cfg: dict[str, Any]) -> ArchSpec:
    """Read an ArchSpec from a parsed config.json; unknown model types are refused."""
    model_type = cfg.get("model_type")
    if model_type not in _MODEL_TYPES:
        raise UnsupportedError(
            f"model_type '{model_type}' is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    family = _MODEL_TYPES[model_type]
    hidden = int(_require(cfg, "hidden_size"))
    heads = int(_require(cfg, "num_attention_heads"))
    layers = int(_require(cfg, "num_hidden_layers"))
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    is_gemma = family in (Family.GEMMA2, Family.GEMMA3)
    rope, rope_local = _rope_specs(cfg)
    kinds = _layer_kinds(cfg, family, layers)
    window = cfg.get("sliding_window") if any(k is LayerKind.SLIDING for k in kinds) else None
    attn_scale = float(cfg["query_pre_attn_scalar"]) ** -0.5 if is_gemma and cfg.get("query_pre_attn_scalar") else 0.0
    act = cfg.get("hidden_activation") or cfg.get("hidden_act") or "silu"
    if act not in ("silu", "gelu_pytorch_tanh", "gelu"):
        raise UnsupportedError(f"activation '{act}' is not supported; supported: silu, gelu_pytorch_tanh, gelu")
    return ArchSpec(
        family=family,
        model_type=model_type,
        vocab_size=int(_require(cfg, "vocab_size")),
        hidden_size=hidden,
        intermediate_size=int(_require(cfg, "intermediate_size")),
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=head_dim,
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope=rope,
        rope_local=rope_local if family is Family.GEMMA3 else None,
        max_position_embeddings=int(cfg.get("max_position_embeddings", 4096)),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", is_gemma)),
        hidden_act=act,
        attention_bias=bool(cfg.get("attention_bias", family is Family.QWEN2)),
        mlp_bias=bool(cfg.get("mlp_bias", False)),
        qk_norm=family in (Family.QWEN3, Family.GEMMA3),
        norm_offset=1.0 if is_gemma else 0.0,
        embedding_scale=math.sqrt(hidden) if is_gemma else 1.0,
        sandwich_norm=is_gemma,
        attn_scale=attn_scale,
        attn_logit_softcap=cfg.get("attn_logit_softcapping") if is_gemma else None,
        final_logit_softcap=cfg.get("final_logit_softcapping") if is_gemma else None,
        sliding_window=int(window) if window else None,
        layer_kinds=kinds,
        bos_token_id=cfg.get("bos_token_id"),
        eos_token_id=tuple(cfg["eos_token_id"]) if isinstance(cfg.get("eos_token_id"), list) else cfg.get("eos_token_id"),
        partial_rotary_factor=_partial_rotary(cfg),
        fused_qkv=family is Family.PHI3,
        fused_gate_up=family is Family.PHI3,
        raw_config=dict(cfg),
    )


def _partial_rotary(cfg: dict[str, Any]) -> float:
    params = cfg.get("rope_parameters")
    factor = params.get("partial_rotary_factor") if isinstance(params, dict) else None
    factor = float(factor if factor is not None else cfg.get("partial_rotary_factor", 1.0) or 1.0)
    if not 0 < factor <= 1:
        raise CheckpointError(f"config.json partial_rotary_factor is {factor}; it must be in (0, 1]")
    return factor
