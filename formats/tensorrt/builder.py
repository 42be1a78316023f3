"""One builder interface over two back ends: full TensorRT (`tensorrt`) and TensorRT-RTX
(`tensorrt_rtx_bindings`), which expose the same Python builder API. Which one builds an
engine is chosen by the target's compute capability: TensorRT-RTX builds ahead of time,
without a GPU, for the architectures in RTX_ARCHS; full TensorRT builds for the GPU it runs
on. Networks are strongly typed: precision comes from the ONNX's Q/DQ, not builder flags.
"""

from __future__ import annotations

import importlib
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferc.core.errors import FormatError, MissingDependencyError, UnsupportedError
from inferc.formats.onnx import constants as OC
from inferc.formats.tensorrt import constants as C

Shape = tuple[int, ...]


def arch_number(arch: str) -> int:
    """'sm89' -> 89; anything else (a CPU target) is refused."""
    m = re.fullmatch(r"sm(\d+)", arch)
    if m is None:
        raise UnsupportedError(f"TensorRT engines are built for NVIDIA GPUs (sm75 and newer), not for '{arch}'")
    return int(m.group(1))


@dataclass(frozen=True)
class EngineLimits:
    """The optimization profiles' extents: batch, prefill tokens, decode context."""

    max_batch: int = C.DEFAULT_MAX_BATCH
    max_seq_len: int = C.DEFAULT_MAX_SEQ_LEN
    max_context: int = C.DEFAULT_MAX_CONTEXT

    def __post_init__(self) -> None:
        if min(self.max_batch, self.max_seq_len, self.max_context) < 1:
            raise UnsupportedError(f"TensorRT profile limits must be positive, found {self}")
        if self.max_seq_len > self.max_context:
            raise UnsupportedError(f"max_seq_len ({self.max_seq_len}) cannot exceed max_context ({self.max_context})")


@dataclass(frozen=True)
class Profile:
    """One optimization profile: (min, opt, max) shape of every network input."""

    name: str
    shapes: dict[str, tuple[Shape, Shape, Shape]]

    def to_dict(self) -> dict[str, Any]:
        """{"name": ..., "shapes": {input: "min / opt / max"}}, each shape as 1x128."""
        dims = lambda s: "x".join(map(str, s))  # noqa: E731
        return {"name": self.name, "shapes": {k: " / ".join(dims(s) for s in v) for k, v in self.shapes.items()}}


def make_profiles(kv_inputs: list[tuple[str, int, int]], limits: EngineLimits) -> list[Profile]:
    """Two profiles, so that every shape the runtime feeds is consistent with its own:
    `prefill` (batch x up to max_seq_len new tokens, empty cache) and `decode` (batch x one
    token after up to max_context - 1 cached ones). kv_inputs: (past name, kv heads, head_dim)."""
    b = (1, min(C.OPT_BATCH, limits.max_batch), limits.max_batch)
    s = (1, min(C.OPT_SEQ_LEN, limits.max_seq_len), limits.max_seq_len)
    ctx = (1, min(C.OPT_CONTEXT, limits.max_context), limits.max_context)

    def shapes(seq: Shape, past: Shape, total: Shape) -> dict[str, tuple[Shape, Shape, Shape]]:
        out = {OC.INPUT_IDS: tuple((b[i], seq[i]) for i in range(3)),
               OC.ATTENTION_MASK: tuple((b[i], total[i]) for i in range(3))}
        for name, kv, hd in kv_inputs:
            out[name] = tuple((b[i], kv, past[i], hd) for i in range(3))
        return out  # type: ignore[return-value]

    return [Profile("prefill", shapes(s, (0, 0, 0), s)),
            Profile("decode", shapes((1, 1, 1), tuple(c - 1 for c in ctx), ctx))]


@dataclass
class BuiltEngine:
    plan: bytes
    seconds: float
    profiles: list[Profile]
    layers: dict[str, int]  # TensorRT layer type -> count in the parsed network
    tensor_types: dict[str, dict[str, int]]  # quantize/dequantize layer -> element type of its quantized side -> count
    weight_bytes: int | None  # the builder's own figure (its log), None if it did not say
    log: list[str] = field(default_factory=list)


class EngineBuilder:
    """Builds an engine from an ONNX file for one compute capability with a module that has
    TensorRT's Python builder API. Subclasses say how the architecture is chosen."""

    flavour: str = ""
    module_name: str = ""

    def __init__(self, trt: Any) -> None:
        self.trt = trt
        self.version = str(getattr(trt, "__version__", "unknown"))

    def _select_arch(self, config: Any, arch: int) -> None:
        raise NotImplementedError

    def _logger(self, sink: list[str]) -> Any:
        trt = self.trt

        class _Sink(trt.ILogger):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: Any, msg: str) -> None:  # keep warnings, errors and the weights figure
                if int(severity) <= int(trt.ILogger.Severity.WARNING) or C.WEIGHTS_LOG_PREFIX in msg:
                    sink.append(f"{severity.name}: {msg}")

        return _Sink()

    def build(self, onnx_path: Path, arch: int, limits: EngineLimits) -> BuiltEngine:
        trt, log = self.trt, []  # type: ignore[var-annotated]
        logger = self._logger(log)
        builder = trt.Builder(logger)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(parser.get_error(i).desc() for i in range(parser.num_errors))
            raise FormatError(f"{self.flavour} {self.version} cannot parse '{onnx_path}': {errors}")
        config = builder.create_builder_config()
        self._select_arch(config, arch)
        kv = [(t.name, int(t.shape[1]), int(t.shape[3])) for t in (network.get_input(i) for i in range(network.num_inputs))
              if t.name.startswith("past_key_values.")]
        profiles = make_profiles(kv, limits)
        for p in profiles:
            prof = builder.create_optimization_profile()
            for name, (lo, opt, hi) in p.shapes.items():
                prof.set_shape(name, lo, opt, hi)
            config.add_optimization_profile(prof)
        start = time.perf_counter()
        plan = builder.build_serialized_network(network, config)
        seconds = time.perf_counter() - start
        if plan is None:
            errors = [line for line in log if line.startswith(("ERROR", "INTERNAL_ERROR"))]
            raise UnsupportedError(f"{self.flavour} {self.version} could not build an engine for sm{arch}: "
                                   f"{(errors[-1] if errors else 'no error logged').splitlines()[0]}")
        layers, types = _network_summary(trt, network)
        return BuiltEngine(bytes(memoryview(plan)), seconds, profiles, layers, types, _weight_bytes(log), log)


def _network_summary(trt: Any, network: Any) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """Layer types of the parsed network, and for its quantize/dequantize layers the element
    type on their quantized side (what the engine stores and computes in)."""
    layers: Counter[str] = Counter()
    types: dict[str, Counter[str]] = {}
    quantized_side = {"QUANTIZE": lambda l: l.get_output(0), "DYNAMIC_QUANTIZE": lambda l: l.get_output(0),
                      "DEQUANTIZE": lambda l: l.get_input(0)}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        kind = layer.type.name
        layers[kind] += 1
        if kind in quantized_side:
            tensor = quantized_side[kind](layer)
            types.setdefault(kind, Counter())[tensor.dtype.name] += 1
    return dict(sorted(layers.items())), {k: dict(v) for k, v in types.items()}


def _weight_bytes(log: list[str]) -> int | None:
    for line in reversed(log):
        if C.WEIGHTS_LOG_PREFIX in line:
            m = re.search(r"(\d+) bytes", line.split(C.WEIGHTS_LOG_PREFIX, 1)[1])
            if m:
                return int(m.group(1))
    return None


class RTXBuilder(EngineBuilder):
    """TensorRT-RTX: ahead-of-time builds for a chosen compute capability, no GPU needed."""

    flavour = "tensorrt-rtx"
    module_name = C.RTX_MODULE

    def _select_arch(self, config: Any, arch: int) -> None:
        config.num_compute_capabilities = 1
        config.set_compute_capability(getattr(self.trt.ComputeCapability, f"SM{arch}"), 0)


class FullTensorRTBuilder(EngineBuilder):
    """Full TensorRT: builds for the GPU of this machine, which must be of the target's
    architecture (it has no ahead-of-time build for another GPU)."""

    flavour = "tensorrt"
    module_name = C.TENSORRT_MODULE

    def _select_arch(self, config: Any, arch: int) -> None:
        present = _local_gpu_arch()
        if present != arch:
            raise UnsupportedError(f"full TensorRT builds an engine for the GPU it runs on; the target is sm{arch} and this "
                                   f"machine has {f'sm{present}' if present else 'no CUDA GPU'}")


def _local_gpu_arch() -> int | None:
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability()
    return 10 * major + minor


def _import(module: str) -> Any | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def find_builder(arch: str) -> EngineBuilder:
    """The builder for a target architecture ('sm89'): TensorRT-RTX where it covers the
    architecture, else full TensorRT. Raises MissingDependencyError naming the package to
    install and why the other one does not fit."""
    n = arch_number(arch)
    if n in C.RTX_ARCHS:
        rtx = _import(C.RTX_MODULE)
        if rtx is not None:
            return RTXBuilder(rtx)
    full = _import(C.TENSORRT_MODULE)
    if full is not None:
        return FullTensorRTBuilder(full)
    if n in C.RTX_ARCHS:
        raise MissingDependencyError(C.RTX_PACKAGE, f"a TensorRT engine for {arch} (built ahead of time by TensorRT-RTX)", C.RTX_INSTALL)
    rtx_archs = "/".join(str(a) for a in C.RTX_ARCHS)
    raise MissingDependencyError(
        C.TENSORRT_PACKAGE, f"a TensorRT engine for {arch} (TensorRT-RTX has no {arch}: it builds sm{rtx_archs})", C.TENSORRT_INSTALL)


def check_precisions(arch: str, precisions: set[str]) -> None:
    """Refuse, with the reason, a precision the architecture has no tensor cores for."""
    n = arch_number(arch)
    for p in sorted(precisions):
        need = C.PRECISION_MIN_ARCH.get(p)
        if need is not None and n < need:
            raise UnsupportedError(f"a TensorRT engine for {arch} cannot run {p}: {C.PRECISION_WHY[p]}; {arch} has none")
