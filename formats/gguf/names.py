"""Tensor names: inferc's IR names <-> llama.cpp's GGUF names (the table is in constants)."""

from __future__ import annotations

import re

from inferc.formats.gguf.constants import GLOBAL_TENSORS, LAYER_TENSORS

_LAYER = re.compile(r"^layers\.(\d+)\.(.+)\.(weight|bias)$")
_BLK = re.compile(r"^blk\.(\d+)\.(.+)\.(weight|bias)$")


def gguf_name(name: str) -> str | None:
    """llama.cpp's name of an IR tensor, or None when llama.cpp has no such tensor."""
    if name in GLOBAL_TENSORS:
        return GLOBAL_TENSORS[name]
    m = _LAYER.match(name)
    if not m or m.group(2) not in LAYER_TENSORS:
        return None
    layer, module, kind = m.groups()
    return f"blk.{layer}.{LAYER_TENSORS[module]}.{kind}"


def ir_name(gguf: str, candidates: list[str]) -> str | None:
    """The IR name among `candidates` (the graph's tensors) that a llama.cpp name stands for."""
    for name in candidates:
        if gguf_name(name) == gguf:
            return name
    return None
