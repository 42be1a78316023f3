"""ONNX spec constants: opsets, domains, file names, the I/O names runtimes expect, and
the limits of the operators the lowering emits."""

from __future__ import annotations

OPSET = 21  # blocked DequantizeLinear with INT4/UINT4 initializers arrived in opset 21
IR_VERSION = 10  # what opset 21 ships with; ONNX Runtime and OpenVINO read it
MS_DOMAIN = "com.microsoft"  # ONNX Runtime's contrib operators
MS_OPSET = 1
# the tensorrt flavour: FLOAT4E2M1 DequantizeLinear and the Attention operator need opset 23
TRT_OPSET = 23
TRT_IR_VERSION = 11  # what opset 23 ships with
TRT_DOMAIN = "trt"  # TensorRT's own ONNX operators (its parser imports them as layers)
TRT_DOMAIN_OPSET = 1
TRT_FP4_DYNAMIC_QUANTIZE = "TRT_FP4DynamicQuantize"  # TensorRT's IDynamicQuantizeLayer: x -> (FP4 x, FP8 block scales)
NVFP4_BLOCK = 16  # FP4 elements per FP8 block scale
ONNX_FLOAT8E4M3FN = 17  # TensorProto.FLOAT8E4M3FN: the dynamic quantizer's scale_type

MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"  # every initializer of a model, external data
GENAI_CONFIG_FILE = "genai_config.json"  # onnxruntime-genai's description of the folder
EXTERNAL_THRESHOLD = 1024  # bytes: smaller initializers stay inside model.onnx
PROTOBUF_LIMIT = 2**31 - 1  # a serialized ModelProto cannot exceed 2 GB

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
LOGITS = "logits"


def past_key(i: int) -> str:
    return f"past_key_values.{i}.key"


def past_value(i: int) -> str:
    return f"past_key_values.{i}.value"


def present_key(i: int) -> str:
    return f"present.{i}.key"


def present_value(i: int) -> str:
    return f"present.{i}.value"


# metadata_props the runtime reads: which flavour (ort: GroupQueryAttention may share one
# past/present buffer of max positions), the activation dtype, the rotary table length
META_FLAVOUR = "inferc.flavour"
META_DTYPE = "inferc.dtype"
META_MAX_POSITIONS = "inferc.max_positions"

# dynamic axes
BATCH = "batch_size"
SEQUENCE = "sequence_length"
PAST_SEQUENCE = "past_sequence_length"
TOTAL_SEQUENCE = "total_sequence_length"

# MatMulNBits: block (group) sizes along K are powers of two, at least 16
MATMULNBITS_MIN_BLOCK = 16
# accuracy_level: the minimum precision of A in the product (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8)
ACCURACY_LEVELS = (0, 1, 2, 3, 4)

# the ort flavour's `lm_head` option: bits of an unquantized head rounded into MatMulNBits,
# over blocks of HEAD_BLOCK along K (symmetric, zero point 2^(bits-1))
HEAD_BITS = {"dense": 0, "int8": 8, "int4": 4}
HEAD_BLOCK = 32
