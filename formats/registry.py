"""Exporters by name: `build` asks for the formats a recipe lists and never branches on
them. Each exporter writes one artifact part under the artifact's root and returns its
path; the list below is the whole registry (no discovery by scanning)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from inferc.core.errors import RecipeError
from inferc.core.ir import ModelIR

# exporter(model, artifact root, options from the recipe's export entry) -> written path
Exporter = Callable[[ModelIR, Path, dict[str, Any]], Path]
_EXPORTERS: dict[str, Exporter] = {}


def register_exporter(name: str) -> Callable[[Exporter], Exporter]:
    def deco(fn: Exporter) -> Exporter:
        if name in _EXPORTERS:
            raise ValueError(f"exporter '{name}' is already registered")
        _EXPORTERS[name] = fn
        return fn

    return deco


def get_exporter(name: str) -> Exporter:
    _load()
    if name not in _EXPORTERS:
        raise RecipeError(f"unknown export format '{name}'; registered: {', '.join(sorted(_EXPORTERS))}")
    return _EXPORTERS[name]


def _load() -> None:
    from inferc.formats import onnx  # noqa: F401  (registers onnx)
    from inferc.formats.gguf import writer  # noqa: F401  (registers gguf)
    from inferc.formats.hf import writer as _hf  # noqa: F401  (registers hf)
    from inferc.formats.tensorrt import export as _trt  # noqa: F401  (registers tensorrt)
