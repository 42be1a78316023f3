"""Read quantized Hugging Face checkpoints (compressed-tensors, ModelOpt) back into IR
annotations: each quantized linear becomes a `QuantizedWeight` (and `ActivationQuant`),
its packed tensors leave the dense tensor store, and every shape is checked against the
config in quantized form."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from inferc.core.errors import CheckpointError, UnsupportedError
from inferc.core.ir import ModelIR
from inferc.formats.hf import compressed_tensors as ct
from inferc.formats.hf import constants as C
from inferc.formats.hf import modelopt as mo
from inferc.formats.hf.names import hf_module

log = logging.getLogger(__name__)

SUPPORTED_QUANT_METHODS: tuple[str, ...] = (C.CT_QUANT_METHOD, C.MODELOPT_QUANT_METHOD)
_KV_SCALE_SUFFIXES = (".k_scale", ".v_scale", ".q_scale")


def quant_method(cfg: dict[str, Any]) -> str | None:
    """The quantization method config.json declares, or None for a dense checkpoint."""
    qcfg = cfg.get(C.QUANTIZATION_CONFIG)
    if qcfg is None:
        return None
    method = qcfg.get(C.QUANT_METHOD) if isinstance(qcfg, dict) else None
    if method not in SUPPORTED_QUANT_METHODS:
        raise UnsupportedError(
            f"config.json quantization_config has quant_method '{method}'; supported: {', '.join(SUPPORTED_QUANT_METHODS)}"
        )
    return method


def _modules(ir: ModelIR) -> dict[str, tuple[int, int]]:
    """HF linear module name -> [out, in] the config implies (the store still holds the
    checkpoint's names while this reader runs)."""
    shapes = ir.graph.shapes
    return {hf_module(w.removesuffix(".weight"), ir.spec): tuple(shapes[w]) for w in ir.quantizable()}  # type: ignore[misc]


def _local_tensors(ir: ModelIR, module: str) -> dict[str, torch.Tensor]:
    prefix = module + "."
    return {n[len(prefix):]: ir.tensors.get(n) for n in ir.tensors.names()
            if n.startswith(prefix) and "." not in n[len(prefix):] and n != prefix + "bias"}


def _modelopt_section(model_dir: Path, qcfg: dict[str, Any]) -> dict[str, Any]:
    path = model_dir / C.HF_QUANT_CONFIG_FILE
    if path.is_file():
        try:
            return json.loads(path.read_text())["quantization"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise CheckpointError(f"{path} is not a valid ModelOpt quant config (needs a 'quantization' section)") from exc
    if "quantization" in qcfg:
        return qcfg["quantization"]
    section = dict(qcfg)
    section["exclude_modules"] = qcfg.get("exclude_modules", qcfg.get("ignore"))
    return section


def attach_quantization(ir: ModelIR, model_dir: Path, validate: bool = True) -> None:
    """Turn the packed tensors of a quantized checkpoint into IR annotations, in place."""
    method = quant_method(ir.source.config)
    qcfg = ir.source.config[C.QUANTIZATION_CONFIG]
    modules = _modules(ir)
    if method == C.CT_QUANT_METHOD:
        if qcfg.get("kv_cache_scheme"):
            log.warning("KV-cache quantization (%s) is not represented in the IR; its scales are dropped", qcfg["kv_cache_scheme"])
        plans: dict[str, Any] = ct.resolve_schemes(qcfg, list(modules))

        def decode(m: str, plan: Any, t: dict[str, torch.Tensor]):
            return ct.decode_linear(m, plan, t, modules[m])
    else:
        section = _modelopt_section(Path(model_dir), qcfg)
        if section.get("kv_cache_quant_algo"):
            log.warning("KV-cache quantization (%s) is not represented in the IR; its scales are dropped", section["kv_cache_quant_algo"])
        plans = mo.resolve_layers(section, list(modules))

        def decode(m: str, plan: Any, t: dict[str, torch.Tensor]):
            return mo.decode_linear(m, plan, t, modules[m])
    for module, plan in plans.items():
        tensors = _local_tensors(ir, module)
        if not tensors:
            raise CheckpointError(f"config.json quantizes '{module}' but the checkpoint has no tensors for it")
        qw, act = decode(module, plan, tensors)
        if validate:
            _validate_quantized(module, qw.scale, act)
        wname = module + ".weight"
        ir.weights[wname] = qw
        if act is not None:
            ir.activations[wname] = act
        for key in tensors:
            ir.tensors.drop(f"{module}.{key}")
    for name in ir.tensors.names():
        if name.endswith(_KV_SCALE_SUFFIXES):
            ir.tensors.drop(name)
    for module in modules:
        if module + ".weight" not in ir.weights:
            ir.unquantized[module + ".weight"] = "left dense in the checkpoint"


def _validate_quantized(module: str, scale: torch.Tensor | None, act: Any) -> None:
    for what, t in (("weight_scale", scale), ("input scale", getattr(act, "scale", None)), ("input global scale", getattr(act, "global_scale", None))):
        if t is not None and not torch.isfinite(t.float()).all():
            raise CheckpointError(f"'{module}' has a non-finite {what}; the checkpoint is corrupt")
