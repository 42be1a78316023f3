"""Deployment targets: what each can run natively, and the defaults it implies."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from inferc.core.errors import UnsupportedError


class Quant(str, Enum):
    """The `--quant` choices; each resolves to a preset recipe of the same name."""

    BF16 = "bf16"
    FP8 = "fp8"
    NVFP4 = "nvfp4"
    AWQ = "awq"
    GPTQ = "gptq"
    RTN = "rtn"
    Q4_K_M = "q4_k_m"
    Q4_K_S = "q4_k_s"
    Q5_K_M = "q5_k_m"
    Q8_0 = "q8_0"
    F16 = "f16"  # unquantized fp16: the GGUF baseline on cpu


class ExportFormat(str, Enum):
    HF = "hf"  # quantized HF checkpoint (compressed-tensors or ModelOpt layout)
    GGUF = "gguf"
    ONNX = "onnx"  # model.onnx + model.onnx.data (ort, standard or tensorrt flavour)
    TENSORRT = "tensorrt"  # a TensorRT engine (+ its tensorrt-flavour ONNX and build_info.json)


_INT4_WEIGHT_ONLY = (Quant.AWQ, Quant.GPTQ, Quant.RTN)
_UNQUANTIZED_DTYPE = {Quant.BF16: "bf16", Quant.F16: "fp16"}  # the dtype an unquantized build exports
_GGUF = (Quant.Q4_K_M, Quant.Q4_K_S, Quant.Q5_K_M, Quant.Q8_0)


@dataclass(frozen=True)
class Target:
    name: str
    arch: str  # "sm90", ..., or "cpu"
    description: str
    native: tuple[Quant, ...]
    default_quant: Quant
    default_formats: tuple[ExportFormat, ...]
    why_not: dict[Quant, str]  # reason a quant is not native here
    native_by_format: tuple[tuple[ExportFormat, tuple[Quant, ...]], ...] = ()  # more natives when exporting a format
    # built beside the recipe's exports when a builder fits the target, else listed as skipped with the reason
    optional_formats: tuple[ExportFormat, ...] = ()

    def check(self, quant: Quant, emulate: bool = False, formats: tuple[ExportFormat, ...] = ()) -> str | None:
        """None if `quant` runs natively (with the export formats asked for); a warning text
        if emulation was asked for; raises UnsupportedError otherwise, naming the reason
        and the alternatives."""
        if quant in self.native or any(quant in qs for f, qs in self.native_by_format if f in formats):
            return None
        reason = self.why_not.get(quant, f"{self.name} has no kernels for {quant.value}")
        if emulate:
            return f"{quant.value} on {self.name} is emulated: {reason}"
        alternatives = ", ".join(q.value for q in self.native if q not in _UNQUANTIZED_DTYPE)
        raise UnsupportedError(
            f"--quant {quant.value} cannot run natively on --target {self.name} ({reason}); "
            f"native choices: {alternatives}; pass --emulate to build it anyway"
        )

    def default_exports(self, quant: Quant | None) -> tuple[dict[str, str], ...]:
        """The exports of a recipe that lists none: the target's formats; an unquantized
        GGUF keeps the quant's dtype (bf16 or f16)."""
        dtype = _UNQUANTIZED_DTYPE.get(quant) if quant else None
        return tuple({"format": f, **({"dtype": dtype} if dtype and f is ExportFormat.GGUF else {})} for f in self.default_formats)


def _gpu(name: str, arch: str, description: str, native: tuple[Quant, ...], default: Quant) -> Target:
    why: dict[Quant, str] = {
        Quant.FP8: f"FP8 tensor cores need sm89 or newer; {name} is {arch}",
        Quant.NVFP4: f"FP4 tensor cores need Blackwell (sm100/sm120); {name} is {arch}",
    }
    for q in _GGUF:
        why[q] = "GGUF K-quant mixtures are a llama.cpp/CPU format; use --target cpu"
    why[Quant.F16] = "f16 is the unquantized GGUF of --target cpu; GPU targets take bf16 as the unquantized baseline"
    return Target(name, arch, description, native, default, (ExportFormat.HF,), why, optional_formats=(ExportFormat.TENSORRT,))


_HOPPER = (Quant.BF16, Quant.FP8, *_INT4_WEIGHT_ONLY)
_ADA = _HOPPER
_AMPERE = (Quant.BF16, *_INT4_WEIGHT_ONLY)
_BLACKWELL = (Quant.BF16, Quant.FP8, Quant.NVFP4, *_INT4_WEIGHT_ONLY)

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        _gpu("h100", "sm90", "NVIDIA H100 (Hopper)", _HOPPER, Quant.FP8),
        _gpu("h200", "sm90", "NVIDIA H200 (Hopper)", _HOPPER, Quant.FP8),
        _gpu("b200", "sm100", "NVIDIA B200 (Blackwell)", _BLACKWELL, Quant.NVFP4),
        _gpu("a100", "sm80", "NVIDIA A100 (Ampere, memory-bound decode: INT4 weights)", _AMPERE, Quant.AWQ),
        _gpu("rtx3090", "sm86", "NVIDIA RTX 3090 (Ampere consumer)", _AMPERE, Quant.AWQ),
        _gpu("l40s", "sm89", "NVIDIA L40S (Ada)", _ADA, Quant.FP8),
        _gpu("rtx4090", "sm89", "NVIDIA RTX 4090 (Ada)", _ADA, Quant.FP8),
        _gpu("rtx5090", "sm120", "NVIDIA RTX 5090 (Blackwell consumer)", _BLACKWELL, Quant.NVFP4),
        Target(
            "cpu",
            "cpu",
            "CPU through llama.cpp (GGUF) or ONNX Runtime (ONNX)",
            (Quant.BF16, Quant.F16, *_GGUF),
            Quant.Q4_K_M,
            (ExportFormat.GGUF,),
            {
                **{q: "no CPU kernels in llama.cpp for this format; use a GGUF mixture such as q4_k_m" for q in (Quant.FP8, Quant.NVFP4)},
                **{q: "CPU GGUF artifacts take q4_k_m (or q4_k_s) as 4-bit; INT4 runs on CPU as ONNX (the gptq_onnx preset)"
                   for q in _INT4_WEIGHT_ONLY},
            },
            ((ExportFormat.ONNX, _INT4_WEIGHT_ONLY),),  # MatMulNBits
        ),
    )
}


def get_target(name: str) -> Target:
    target = TARGETS.get(name.lower())
    if target is None:
        raise UnsupportedError(f"unknown target '{name}'; known targets: {', '.join(TARGETS)}")
    return target
