"""File names and keys of Hugging Face checkpoints and their quantization configs."""

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# safetensors: a little-endian u64 header length, the JSON header, then the tensor data
SAFETENSORS_HEADER_SIZE_BYTES = 8
SAFETENSORS_METADATA_KEY = "__metadata__"
GENERATION_CONFIG_FILE = "generation_config.json"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
    "generation_config.json",
    "vocab.json",
    "merges.txt",
)
QUANTIZATION_CONFIG = "quantization_config"
QUANT_METHOD = "quant_method"
SHARD_NAME = "model-{index:05d}-of-{total:05d}.safetensors"
DEFAULT_SHARD_BYTES = 5 * 1024**3  # what transformers' save_pretrained uses by default
SAFETENSORS_METADATA = {"format": "pt"}

# ---- compressed-tensors 0.20.0 (what vLLM, SGLang and transformers load) ----------------
CT_QUANT_METHOD = "compressed-tensors"
CT_VERSION = "0.20.0"
CT_STATUS_COMPRESSED = "compressed"
CT_FORMAT_DENSE = "dense"
CT_FORMAT_FLOAT = "float-quantized"  # FP8: weight float8_e4m3fn as is
CT_FORMAT_NAIVE = "naive-quantized"  # older FP8/INT8 checkpoints: quantized weight in its dtype
CT_FORMAT_PACK = "pack-quantized"  # INT1..8: weight_packed int32, 32 bits of consecutive codes per word
CT_FORMAT_NVFP4 = "nvfp4-pack-quantized"  # E2M1 pairs in uint8, low nibble = even column
CT_FORMAT_MIXED = "mixed-precision"
CT_TARGET_LINEAR = "Linear"
CT_REGEX_PREFIX = "re:"
CT_TYPE_INT = "int"
CT_TYPE_FLOAT = "float"
CT_STRATEGY_TENSOR = "tensor"
CT_STRATEGY_CHANNEL = "channel"
CT_STRATEGY_GROUP = "group"
CT_STRATEGY_TOKEN = "token"
CT_STRATEGY_TENSOR_GROUP = "tensor_group"
CT_DYNAMIC_LOCAL = "local"
CT_ACTORDER_GROUP = "group"  # g_idx act-order; compressed-tensors >= 0.20 refuses it, vLLM < that reads it
CT_SCALE_DTYPE_FP8 = "torch.float8_e4m3fn"
CT_WEIGHT = "weight"
CT_WEIGHT_SCALE = "weight_scale"
CT_WEIGHT_ZERO_POINT = "weight_zero_point"
CT_WEIGHT_GLOBAL_SCALE = "weight_global_scale"  # = 1 / ModelOpt's weight_scale_2
CT_WEIGHT_PACKED = "weight_packed"
CT_WEIGHT_SHAPE = "weight_shape"
CT_WEIGHT_G_IDX = "weight_g_idx"
CT_INPUT_SCALE = "input_scale"
CT_INPUT_GLOBAL_SCALE = "input_global_scale"  # = 1 / ModelOpt's input_scale
CT_INT4_PACK_OFFSET = 8  # symmetric codes [-8, 7] are stored as unsigned nibbles code + 8

# ---- ModelOpt unified HF checkpoint (what TensorRT-LLM loads) --------------------------
HF_QUANT_CONFIG_FILE = "hf_quant_config.json"
MODELOPT_QUANT_METHOD = "modelopt"
MODELOPT_PRODUCER = {"name": "modelopt", "version": "0.40.0"}  # the export layout we follow
MO_ALGO_FP8 = "FP8"  # per-tensor weight scale, static per-tensor input scale
MO_ALGO_FP8_PC_PT = "FP8_PER_CHANNEL_PER_TOKEN"  # per-channel weight scale, dynamic per-token inputs
MO_ALGO_W4A16_AWQ = "W4A16_AWQ"  # signed INT4, two output rows per byte, group scales
MO_ALGO_NVFP4 = "NVFP4"  # W4A4: E2M1 weights + E4M3 block scales + FP32 weight_scale_2, input_scale
MO_ALGO_MIXED = "MIXED_PRECISION"
MO_WEIGHT = "weight"
MO_WEIGHT_SCALE = "weight_scale"
MO_WEIGHT_SCALE_2 = "weight_scale_2"
MO_INPUT_SCALE = "input_scale"
MO_PRE_QUANT_SCALE = "pre_quant_scale"
NVFP4_BLOCK_SIZE = 16
