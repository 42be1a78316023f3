"""ONNX: the model graph lowered to ONNX in two flavours (`ort`: ONNX Runtime's fused
operators; `standard`: standard ops only), written with external data."""

from __future__ import annotations

from pathlib import Path

from inferc.core.ir import ModelIR
from inferc.formats.onnx.genai import genai_files
from inferc.formats.onnx.lower import Flavour, OnnxConfig, lower_graph
from inferc.formats.onnx.writer import write_onnx
from inferc.formats.registry import register_exporter


def export_onnx(ir: ModelIR, out_dir: Path, cfg: OnnxConfig = OnnxConfig(), external_data: bool = True) -> Path:
    """Lower the IR's graph and write `out_dir/model.onnx` (+ `model.onnx.data`), with
    genai_config.json and the checkpoint's tokenizer files beside it (the folder runs in
    onnxruntime-genai). Nothing is left in out_dir when lowering or checking fails."""
    max_length = cfg.max_positions or ir.spec.max_position_embeddings
    beside = genai_files(ir, shared_buffer=cfg.flavour is Flavour.ORT, max_length=max_length)
    return write_onnx(lower_graph(ir, cfg), Path(out_dir), external_data=external_data, beside=beside)


__all__ = ["Flavour", "OnnxConfig", "export_onnx", "lower_graph", "write_onnx"]


ONNX_DIR = "onnx"


@register_exporter("onnx")
def _export_artifact(ir: ModelIR, root: Path, options: dict) -> Path:
    """The artifact's ONNX part: `onnx/model.onnx` (+ `model.onnx.data`)."""
    cfg = OnnxConfig(flavour=Flavour(options.get("flavour", "ort")), dtype=options.get("dtype", "fp32"),
                     accuracy_level=options.get("accuracy_level", OnnxConfig().accuracy_level),
                     lm_head=options.get("lm_head", "dense"))
    return export_onnx(ir, root / ONNX_DIR, cfg).parent
