"""Tensor names: inferc's IR names <-> Hugging Face checkpoint names.

This table (and the GGUF one in formats/gguf/names.py) is the only place that knows what
transformers calls a tensor; the rest of inferc speaks of the graph's roles.
"""

from __future__ import annotations

from inferc.core.ir import ModelIR
from inferc.core.ir.spec import ArchSpec

# IR module (within a layer) -> HF module (within model.layers.N)
_LAYER_MODULES: dict[str, str] = {
    "attn_norm": "input_layernorm",
    "attn.q": "self_attn.q_proj",
    "attn.k": "self_attn.k_proj",
    "attn.v": "self_attn.v_proj",
    "attn.qkv": "self_attn.qkv_proj",
    "attn.o": "self_attn.o_proj",
    "attn.q_norm": "self_attn.q_norm",
    "attn.k_norm": "self_attn.k_norm",
    "mlp.gate": "mlp.gate_proj",
    "mlp.up": "mlp.up_proj",
    "mlp.gate_up": "mlp.gate_up_proj",
    "mlp.down": "mlp.down_proj",
}
# llama-style blocks call the norm before the MLP post_attention_layernorm; Gemma's
# sandwich blocks have four norms, and there post_attention_layernorm follows attention.
_PLAIN_NORMS = {"mlp_norm": "post_attention_layernorm"}
_SANDWICH_NORMS = {
    "post_attn_norm": "post_attention_layernorm",
    "mlp_norm": "pre_feedforward_layernorm",
    "post_mlp_norm": "post_feedforward_layernorm",
}
_GLOBAL: dict[str, str] = {"embed": "model.embed_tokens", "final_norm": "model.norm", "lm_head": "lm_head"}
# Gemma 3 multimodal checkpoints keep the text model under this prefix
MULTIMODAL_PREFIX = "model.language_model."


def _module_map(spec: ArchSpec) -> dict[str, str]:
    return {**_LAYER_MODULES, **(_SANDWICH_NORMS if spec.sandwich_norm else _PLAIN_NORMS)}


def hf_name(ir_name: str, spec: ArchSpec) -> str:
    """The checkpoint name of an IR tensor (`layers.0.attn.q.weight` ->
    `model.layers.0.self_attn.q_proj.weight`)."""
    module, _, suffix = ir_name.rpartition(".")
    if module in _GLOBAL:
        return f"{_GLOBAL[module]}.{suffix}"
    parts = module.split(".", 2)
    if len(parts) == 3 and parts[0] == "layers":
        local = _module_map(spec).get(parts[2])
        if local is not None:
            return f"model.layers.{parts[1]}.{local}.{suffix}"
    raise KeyError(f"no Hugging Face name for IR tensor '{ir_name}'")


def hf_module(ir_module: str, spec: ArchSpec) -> str:
    return hf_name(ir_module + ".weight", spec).removesuffix(".weight")


def names_for(model: ModelIR) -> dict[str, str]:
    """IR name -> HF name of every tensor the graph reads."""
    return {name: hf_name(name, model.spec) for name, _ in model.graph.params}


def ir_names(spec: ArchSpec, hf_names: list[str], graph_params: list[str]) -> dict[str, str]:
    """HF name -> IR name for the checkpoint's tensors that the graph knows."""
    inverse = {hf_name(n, spec): n for n in graph_params}
    out = {}
    for name in hf_names:
        plain = "model." + name[len(MULTIMODAL_PREFIX):] if name.startswith(MULTIMODAL_PREFIX) else name
        if plain in inverse:
            out[name] = inverse[plain]
    return out
