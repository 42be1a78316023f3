"""TensorRT spec constants: file names, the packages of the two builders, the compute
capabilities each builds for, and which precisions need which architecture."""

from __future__ import annotations

TRT_DIR = "tensorrt"  # the artifact's part: model.onnx (+ .data), model.engine, build_info.json
ENGINE_FILE = "model.engine"
BUILD_INFO_FILE = "build_info.json"
BUILD_INFO_VERSION = 1

# full TensorRT: builds for the GPU it runs on (no ahead-of-time build for another architecture)
TENSORRT_MODULE = "tensorrt"
TENSORRT_PACKAGE = "tensorrt"
TENSORRT_INSTALL = "pip install tensorrt (full TensorRT, on a GPU of that architecture)"
# TensorRT-RTX: builds ahead of time, without a GPU, for these compute capabilities
RTX_MODULE = "tensorrt_rtx_bindings"
RTX_PACKAGE = "tensorrt-rtx-cu13-bindings"
RTX_INSTALL = "pip install 'inferc[tensorrt-rtx]'"
RTX_ARCHS = (75, 80, 86, 89, 120, 121)

# the lowest compute capability with tensor cores for each precision TensorRT builds
PRECISION_MIN_ARCH = {"fp8": 89, "nvfp4": 100}
PRECISION_WHY = {"fp8": "FP8 tensor cores need sm89 or newer", "nvfp4": "FP4 tensor cores need Blackwell (sm100/sm120)"}

# optimization profiles: batch and sequence length (prefill), and the context a decode step sees
DEFAULT_MAX_BATCH = 4
DEFAULT_MAX_SEQ_LEN = 1024  # tokens of one prefill
DEFAULT_MAX_CONTEXT = 2048  # past + new tokens of one decode step
OPT_BATCH = 1
OPT_SEQ_LEN = 128
OPT_CONTEXT = 512

WEIGHTS_LOG_PREFIX = "Total Weights Memory:"  # the builder's log line with the engine's weight bytes
