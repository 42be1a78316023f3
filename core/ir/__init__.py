"""inferc's model IR."""

from inferc.core.ir.graph import (
    Add,
    Attention,
    Embed,
    GatedAct,
    Graph,
    Linear,
    LinearPart,
    Node,
    RMSNorm,
    Role,
    Segment,
    SkipRMSNorm,
    SoftCap,
    build_graph,
)
from inferc.core.ir.model import ModelIR, SourceInfo
from inferc.core.ir.quant import (
    ActivationQuant,
    Granularity,
    QuantFormat,
    QuantizedWeight,
)
from inferc.core.ir.spec import (
    SUPPORTED_MODEL_TYPES,
    ArchSpec,
    Family,
    LayerKind,
    RopeSpec,
    spec_from_config,
)
from inferc.core.ir.tensors import TensorStore

__all__ = [
    "Add",
    "Attention",
    "Embed",
    "GatedAct",
    "Graph",
    "Linear",
    "LinearPart",
    "Node",
    "RMSNorm",
    "Role",
    "Segment",
    "SkipRMSNorm",
    "SoftCap",
    "build_graph",
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
