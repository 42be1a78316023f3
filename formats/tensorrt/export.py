"""The artifact's TensorRT part: the tensorrt-flavour ONNX, the engine built from it for the
target's compute capability, and build_info.json describing the build."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from inferc.core.errors import RecipeError, UnsupportedError
from inferc.core.ir import Linear, ModelIR, QuantFormat
from inferc.formats.onnx import Flavour, OnnxConfig, export_onnx
from inferc.formats.registry import register_exporter
from inferc.formats.tensorrt import constants as C
from inferc.formats.tensorrt.builder import BuiltEngine, EngineLimits, arch_number, check_precisions, find_builder

_PRECISION = {QuantFormat.FP8_E4M3: "fp8", QuantFormat.INT4: "int4", QuantFormat.NVFP4: "nvfp4"}


def _role(node: Linear) -> str:
    """'attn.q+attn.k+attn.v' for a fused q|k|v: the parts' modules without their layer prefix."""
    if node.tied:
        return "lm_head (tied to the embedding)"
    return "+".join(p.module.split(".", 2)[2] if p.module.startswith("layers.") else p.module for p in node.parts)


def linear_precisions(ir: ModelIR, dtype: str) -> dict[str, dict[str, Any]]:
    """Per kind of linear: its weights' and input activations' precision, and how many."""
    out: dict[str, dict[str, Any]] = {}
    for node in ir.graph:
        if not isinstance(node, Linear):
            continue
        q = ir.weights.get(node.parts[0].weight)
        act = ir.activations.get(node.parts[0].weight)
        w = _PRECISION.get(q.format, q.format.value) if q is not None else dtype
        a = _PRECISION.get(act.format, act.format.value) if act is not None else dtype
        entry = out.setdefault(_role(node), {"weights": w, "activations": a, "count": 0})
        if (entry["weights"], entry["activations"]) != (w, a):
            entry["weights"], entry["activations"] = "mixed", "mixed"
        entry["count"] += 1
    return out


def engine_precisions(ir: ModelIR) -> set[str]:
    """The quantized precisions an engine of this model computes in (fp8, int4, nvfp4)."""
    found = {_PRECISION.get(q.format, q.format.value) for q in ir.weights.values() if q is not None}
    found |= {_PRECISION.get(a.format, a.format.value) for a in ir.activations.values() if a is not None}
    return found


def build_info(ir: ModelIR, arch: str, dtype: str, builder_flavour: str, version: str, built: BuiltEngine,
               engine_bytes: int) -> dict[str, Any]:
    return {
        "build_info_version": C.BUILD_INFO_VERSION,
        "builder": {"flavour": builder_flavour, "version": version},
        "compute_capability": arch,
        "activation_dtype": dtype,
        "precisions": {
            "linear": linear_precisions(ir, dtype),
            "attention": {"dtype": dtype, "layers": built.layers.get("ATTENTION_OUTPUT", 0)},
            "network_quantize_layers": built.tensor_types,
        },
        "network_layers": built.layers,
        "optimization_profiles": [p.to_dict() for p in built.profiles],
        "build_seconds": round(built.seconds, 3),
        "engine_bytes": engine_bytes,
        "engine_weight_bytes": built.weight_bytes,
        "files": {"onnx": "model.onnx", "engine": C.ENGINE_FILE},
    }


def export_tensorrt(ir: ModelIR, out_dir: Path, arch: str, dtype: str = "fp16", limits: EngineLimits = EngineLimits()) -> Path:
    """Write out_dir/{model.onnx, model.onnx.data, model.engine, build_info.json}; returns
    out_dir. The builder is found and the precisions checked before anything is written;
    nothing is left in out_dir when a step fails."""
    if dtype != "fp16":
        raise UnsupportedError(f"TensorRT engines take fp16 activations here, found '{dtype}': TensorRT's fused attention "
                               "kernels have no fp32 form")
    arch_number(arch)
    check_precisions(arch, engine_precisions(ir))
    builder = find_builder(arch)
    out_dir = Path(out_dir)
    existed = out_dir.exists()
    try:
        onnx_path = export_onnx(ir, out_dir, OnnxConfig(flavour=Flavour.TENSORRT, dtype=dtype))
        built = builder.build(onnx_path, arch_number(arch), limits)
        tmp = out_dir / f".{C.ENGINE_FILE}.tmp-{os.getpid()}"
        tmp.write_bytes(built.plan)
        os.replace(tmp, out_dir / C.ENGINE_FILE)
        info = build_info(ir, arch, dtype, builder.flavour, builder.version, built, len(built.plan))
        (out_dir / C.BUILD_INFO_FILE).write_text(json.dumps(info, indent=2))
    except BaseException:
        if not existed:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return out_dir


def _limits(options: dict[str, Any]) -> EngineLimits:
    return EngineLimits(max_batch=int(options.get("max_batch", C.DEFAULT_MAX_BATCH)),
                        max_seq_len=int(options.get("max_seq_len", C.DEFAULT_MAX_SEQ_LEN)),
                        max_context=int(options.get("max_context", C.DEFAULT_MAX_CONTEXT)))


@register_exporter("tensorrt")
def _export_artifact(ir: ModelIR, root: Path, options: dict[str, Any]) -> Path:
    """The artifact's TensorRT part, `tensorrt/`; options: arch (the target's, given by the
    build driver), dtype, max_batch, max_seq_len, max_context."""
    if "arch" not in options:
        raise RecipeError("the tensorrt export needs the target's compute capability ('arch', e.g. sm89)")
    return export_tensorrt(ir, root / C.TRT_DIR, options["arch"], options.get("dtype") or "fp16", _limits(options))
