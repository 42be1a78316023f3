"""Writes a lowered model: model.onnx beside one model.onnx.data, checked with
onnx.checker (full_check) and moved into place only when whole."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from inferc.core.errors import FormatError, require
from inferc.formats.onnx import constants as C


def _register_ort_schemas(onnx) -> None:
    """ONNX Runtime implements SimplifiedLayerNormalization in the default domain (it is
    its contrib op, not a standard one); tell the checker its signature so full_check can
    type the graph. Registered once per process."""
    defs = onnx.defs
    if defs.has("SimplifiedLayerNormalization"):
        return
    P, A = defs.OpSchema.FormalParameter, defs.OpSchema.Attribute
    schema = defs.OpSchema(
        "SimplifiedLayerNormalization", "", 1,
        doc="ONNX Runtime's RMS normalization: x / rms(x) * scale over the trailing axes from `axis`.",
        inputs=[P("X", "T"), P("scale", "V")],
        outputs=[P("Y", "V"), P("inv_std_var", "U", param_option=defs.OpSchema.FormalParameterOption.Optional)],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"], ""),
                          ("U", ["tensor(float)"], ""),
                          ("V", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"], "")],
        attributes=[A("axis", defs.OpSchema.AttrType.INT, ""), A("epsilon", defs.OpSchema.AttrType.FLOAT, ""),
                    A("stash_type", defs.OpSchema.AttrType.INT, "")],
    )
    defs.register_schema(schema)


def _register_trt_schemas(onnx) -> None:
    """TensorRT's dynamic FP4 quantizer (domain `trt`), as its parser imports it, so that
    full_check can read a tensorrt-flavour graph. Registered once per process."""
    defs = onnx.defs
    if defs.has(C.TRT_FP4_DYNAMIC_QUANTIZE, C.TRT_DOMAIN):
        return
    P, A = defs.OpSchema.FormalParameter, defs.OpSchema.Attribute
    schema = defs.OpSchema(
        C.TRT_FP4_DYNAMIC_QUANTIZE, C.TRT_DOMAIN, C.TRT_DOMAIN_OPSET,
        doc="TensorRT's IDynamicQuantizeLayer: FP4 (E2M1) codes of x and its FP8 (E4M3) scales per block along `axis`, "
            "the block scales quantized by the scalar double-quantization scale.",
        inputs=[P("x", "T1"), P("double_quant_scale", "T4")],
        outputs=[P("y", "T2"), P("block_scales", "T3")],
        type_constraints=[("T1", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"], ""),
                          ("T2", ["tensor(float4e2m1)"], ""), ("T3", ["tensor(float8e4m3fn)"], ""),
                          ("T4", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"], "")],
        attributes=[A("axis", defs.OpSchema.AttrType.INT, ""), A("block_size", defs.OpSchema.AttrType.INT, ""),
                    A("scale_type", defs.OpSchema.AttrType.INT, "")],
    )
    defs.register_schema(schema)


def write_onnx(model, out_dir: Path, external_data: bool = True, beside: dict[str, bytes] | None = None) -> Path:
    """model.onnx (+ model.onnx.data, + the files `beside`, name -> bytes) in out_dir;
    returns the model path. Without external data a model over 2 GB is refused before
    anything is written."""
    onnx = require("onnx", "onnx", "exporting ONNX", "pip install 'inferc[onnx]'")
    _register_ort_schemas(onnx)
    _register_trt_schemas(onnx)
    out_dir = Path(out_dir)
    if not external_data:
        size = model.ByteSize()
        if size > C.PROTOBUF_LIMIT:
            raise FormatError(f"the ONNX model is {size / 2**30:.2f} GB, over protobuf's 2 GB limit; "
                              "export with external data (the default) instead")
    tmp = out_dir.parent / f".{out_dir.name}.onnx-tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        path = tmp / C.MODEL_FILE
        onnx.save_model(model, str(path), save_as_external_data=external_data, all_tensors_to_one_file=True,
                        location=C.DATA_FILE, size_threshold=C.EXTERNAL_THRESHOLD)
        try:
            onnx.checker.check_model(str(path), full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise FormatError(f"the lowered ONNX graph does not validate: {str(exc).splitlines()[0]}") from exc
        for name, data in (beside or {}).items():
            (tmp / name).write_bytes(data)
        out_dir.mkdir(parents=True, exist_ok=True)
        for f in tmp.iterdir():
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir / C.MODEL_FILE
