"""TensorRT: engines built from the tensorrt flavour of the ONNX export, by full TensorRT
or TensorRT-RTX (one builder interface, chosen by the target's compute capability)."""

from __future__ import annotations

from inferc.formats.tensorrt.builder import EngineBuilder, EngineLimits, Profile, check_precisions, find_builder, make_profiles
from inferc.formats.tensorrt.export import engine_precisions, export_tensorrt, linear_precisions

__all__ = ["EngineBuilder", "EngineLimits", "Profile", "check_precisions", "engine_precisions", "export_tensorrt",
           "find_builder", "linear_precisions", "make_profiles"]
