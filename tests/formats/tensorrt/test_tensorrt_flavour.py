"""The tensorrt flavour of the ONNX export on tiny models: ONNX Runtime runs it (FP8 Q/DQ,
INT4 DQ, the Attention operator) against our reference; NVFP4's layout is checked by
decoding its initializers, since ONNX Runtime has no FLOAT4E2M1 DequantizeLinear."""

import ml_dtypes
import numpy as np
import onnx
import pytest

from inferc.core.numerics.nvfp4 import dequantize_nvfp4
from inferc.formats.onnx import Flavour, OnnxConfig, export_onnx, lower_graph
from inferc.formats.onnx import constants as C
from onnx_helpers import check_against_reference, prepared, session

pytest.importorskip("onnxruntime")

FP8 = {"pass": "quantize_fp8", "per_channel": True, "activations": "static"}
INT4 = dict(format="int4", group_size=32)
NVFP4_W4A4 = dict(format="nvfp4", activations="nvfp4")


def _check_against_reference(ir, tmp_path, tol=1e-5):
    check_against_reference(ir, tmp_path, Flavour.TENSORRT, tol, seed=5)


# FP8 activations are rounded to E4M3 at run time: an input within float error of a rounding
# boundary may land one E4M3 step away in ONNX Runtime (different accumulation order), which
# moves a logit by ~1e-3 of the largest; weights-only graphs agree to float error
@pytest.mark.parametrize("quant,tol", [(None, 1e-5), (FP8, 5e-3), (INT4, 1e-5)], ids=["fp32", "fp8", "int4"])
@pytest.mark.parametrize("family", ["llama", "qwen3", "gemma2"])
def test_tensorrt_flavour_runs_in_onnxruntime_and_matches_the_reference(tiny_checkpoint, tmp_path, family, quant, tol):
    _check_against_reference(prepared(tiny_checkpoint(family), dict(quant) if quant else None, fuse=True), tmp_path, tol)


def test_attention_is_one_operator_at_opset_23_with_grouped_heads_native(tiny_checkpoint):
    ir = prepared(tiny_checkpoint("llama"), dict(INT4), fuse=True)
    assert ir.spec.num_kv_heads < ir.spec.num_heads
    model = lower_graph(ir, OnnxConfig(flavour=Flavour.TENSORRT))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Attention") == ir.spec.num_layers
    assert "Softmax" not in ops and "Expand" not in ops  # no unfused softmax, no repeated K/V heads
    assert {o.domain: o.version for o in model.opset_import} == {"": C.TRT_OPSET}
    assert model.ir_version == C.TRT_IR_VERSION
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert {a.name: a.i for a in dq[0].attribute} == {"axis": 0, "block_size": 32}


def test_fp8_is_quantize_dequantize_of_float8e4m3fn(tiny_checkpoint):
    model = lower_graph(prepared(tiny_checkpoint("llama"), dict(FP8), fuse=True), OnnxConfig(flavour=Flavour.TENSORRT))
    ops = [n.op_type for n in model.graph.node]
    linears = 4 * 2  # q|k|v, o, gate|up, down in each of the 2 layers; the tied head stays dense
    assert ops.count("QuantizeLinear") == linears and ops.count("DequantizeLinear") == 2 * linears
    types = {i.name: i.data_type for i in model.graph.initializer}
    assert types["l0.qkv.qweight"] == onnx.TensorProto.FLOAT8E4M3FN
    assert types["l0.qkv.input_zero"] == onnx.TensorProto.FLOAT8E4M3FN


def test_nvfp4_weights_are_two_dequantize_linears_that_decode_to_our_weights(tiny_checkpoint):
    ir = prepared(tiny_checkpoint("llama"), dict(NVFP4_W4A4))  # unfused: each part has its own tensor scale
    model = lower_graph(ir, OnnxConfig(flavour=Flavour.TENSORRT))
    inits = {i.name: i for i in model.graph.initializer}
    codes, scales = inits["l0.q.qweight"], inits["l0.q.block_scales"]
    assert codes.data_type == onnx.TensorProto.FLOAT4E2M1 and scales.data_type == onnx.TensorProto.FLOAT8E4M3FN
    by_out = {o: n for n in model.graph.node for o in n.output}
    consumer = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == "l0.q.qweight")
    assert {a.name: a.i for a in consumer.attribute} == {"axis": 0, "block_size": C.NVFP4_BLOCK}
    scale_dq = by_out[consumer.input[1]]
    assert scale_dq.op_type == "DequantizeLinear" and list(scale_dq.input) == ["l0.q.block_scales", "l0.q.global_scale"]
    # decode the initializers as DequantizeLinear does, and compare with our dequantization
    c = onnx.numpy_helper.to_array(codes).astype(np.float32)  # [K, N]
    s = onnx.numpy_helper.to_array(scales).astype(np.float32) * onnx.numpy_helper.to_array(inits["l0.q.global_scale"])
    w = c * np.repeat(s, C.NVFP4_BLOCK, axis=0)
    expected = dequantize_nvfp4(ir.weights["layers.0.attn.q.weight"]).T.numpy()
    assert np.array_equal(w, expected)


def test_nvfp4_activations_go_through_tensorrts_dynamic_fp4_quantizer(tiny_checkpoint, tmp_path):
    ir = prepared(tiny_checkpoint("llama"), dict(NVFP4_W4A4))
    path = export_onnx(ir, tmp_path / "onnx", OnnxConfig(flavour=Flavour.TENSORRT))  # full_check passes
    model = onnx.load(str(path), load_external_data=False)
    quantizers = [n for n in model.graph.node if n.op_type == C.TRT_FP4_DYNAMIC_QUANTIZE]
    assert len(quantizers) == 7 * ir.spec.num_layers and all(n.domain == C.TRT_DOMAIN for n in quantizers)
    assert {a.name: a.i for a in quantizers[0].attribute} == {"axis": -1, "block_size": 16, "scale_type": C.ONNX_FLOAT8E4M3FN}
    assert quantizers[0].input[1] == "l0.q.input_global_scale"
    readers = [n for n in model.graph.node if quantizers[0].output[0] in n.input]
    assert [n.op_type for n in readers] == ["DequantizeLinear"]
    assert {a.name: a.i for a in readers[0].attribute} == {"axis": -1, "block_size": 16}
    assert {o.domain for o in model.opset_import} == {"", C.TRT_DOMAIN}


def test_onnxruntime_cannot_run_nvfp4(tiny_checkpoint, tmp_path):
    """Why NVFP4 is not proven in ONNX Runtime: its CPU provider has no FLOAT4E2M1
    DequantizeLinear (and no TensorRT FP4 quantizer)."""
    path = export_onnx(prepared(tiny_checkpoint("llama"), dict(format="nvfp4")), tmp_path / "onnx", OnnxConfig(flavour=Flavour.TENSORRT))
    with pytest.raises(Exception, match="DequantizeLinear"):
        session(path)


def test_nvfp4_has_no_mapping_in_the_standard_flavour(tiny_checkpoint):
    from inferc.core.errors import UnsupportedError

    with pytest.raises(UnsupportedError, match="NVFP4 goes through the tensorrt flavour"):
        lower_graph(prepared(tiny_checkpoint("llama"), dict(format="nvfp4")), OnnxConfig(flavour=Flavour.STANDARD))
