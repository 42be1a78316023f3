"""IR -> IR passes. Each module registers its pass explicitly on import; this list is
the whole registry (no discovery by scanning)."""

from inferc.passes import (  # noqa: F401
    fuse_gate_up,
    fuse_qkv,
    fuse_residual_norm,
    quantize_awq,
    quantize_fp8,  # noqa: F401
    quantize_gguf,  # noqa: F401
    quantize_gptq,
    quantize_rtn,
)
from inferc.passes.base import (
    LayerEvent,
    Pass,
    PassContext,
    Requirement,
    get_pass,
    make_config,
    register_pass,
    registered_passes,
    select_linears,
    select_targets,
)

__all__ = [
    "LayerEvent",
    "Pass",
    "PassContext",
    "Requirement",
    "get_pass",
    "make_config",
    "register_pass",
    "registered_passes",
    "select_linears",
    "select_targets",
]
