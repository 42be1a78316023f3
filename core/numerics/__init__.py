"""Number formats: the math of each quantized format, kept apart from the algorithms.

Importing this package registers every format's dequantizer, so the runtime can run
any annotated IR.
"""

from inferc.core.numerics import (  # noqa: F401  (register INT4, NVFP4)
    fp8,  # noqa: F401  (registers FP8)
    ggml,  # noqa: F401  (registers the GGUF block codecs)
    int4,
    nvfp4,
)
from inferc.core.numerics.base import (
    QParams,
    WeightFormat,
    concat_rows,
    dequantize,
    fake_quantize_activation,
    register_activation_quantizer,
    quantize_joint,
    register_dequantizer,
    split_rows,
    why_not_joinable,
)

__all__ = [
    "QParams",
    "WeightFormat",
    "concat_rows",
    "dequantize",
    "fake_quantize_activation",
    "register_activation_quantizer",
    "quantize_joint",
    "register_dequantizer",
    "split_rows",
    "why_not_joinable",
]
