"""Tensor names: inferc's HF-style names <-> llama.cpp's GGUF names."""

from __future__ import annotations

import re

from inferc.core.ir.spec import ArchSpec
from inferc.formats.gguf.constants import GLOBAL_TENSORS, LAYER_TENSORS, PLAIN_TENSORS, SANDWICH_TENSORS

_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)\.(weight|bias)$")


def gguf_name(name: str, spec: ArchSpec) -> str | None:
    """llama.cpp's name of an HF tensor, or None when llama.cpp has no such tensor."""
    if name in GLOBAL_TENSORS:
        return GLOBAL_TENSORS[name]
    m = _LAYER.match(name)
    if not m:
        return None
    layer, module, kind = m.groups()
    table = {**LAYER_TENSORS, **(SANDWICH_TENSORS if spec.sandwich_norm else PLAIN_TENSORS)}
    if module not in table:
        return None
    return f"blk.{layer}.{table[module]}.{kind}"


def hf_name(gguf: str, spec: ArchSpec) -> str | None:
    """The HF name of a llama.cpp tensor name (inverse of gguf_name)."""
    inverse = {v: k for k, v in GLOBAL_TENSORS.items()}
    if gguf in inverse:
        return inverse[gguf]
    m = re.match(r"^blk\.(\d+)\.(.+)\.(weight|bias)$", gguf)
    if not m:
        return None
    layer, short, kind = m.groups()
    table = {**LAYER_TENSORS, **(SANDWICH_TENSORS if spec.sandwich_norm else PLAIN_TENSORS)}
    for module, g in table.items():
        if g == short:
            return f"model.layers.{layer}.{module}.{kind}"
    return None
