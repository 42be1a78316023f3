"""inferc's model IR."""

from inferc.compiler.ir.model import ModelIR, SourceInfo
from inferc.compiler.ir.quant import (
    ActivationQuant,
    Granularity,
    QuantFormat,
    QuantizedWeight,
)
from inferc.compiler.ir.spec import (
    SUPPORTED_MODEL_TYPES,
    ArchSpec,
    Family,
    LayerKind,
    RopeSpec,
    spec_from_config,
)
from inferc.compiler.ir.tensors import TensorStore

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "ActivationQuant",
    "ArchSpec",
    "Family",
    "Granularity",
    "LayerKind",
    "ModelIR",
    "QuantFormat",
    "QuantizedWeight",
    "RopeSpec",
    "SourceInfo",
    "TensorStore",
    "spec_from_config",
]
