"""The model IR: an architecture spec, named tensors and their quantization annotations."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from inferc.core.ir.quant import ActivationQuant, QuantizedWeight
from inferc.core.ir.spec import ArchSpec
from inferc.core.ir.tensors import TensorStore


@dataclass
class SourceInfo:
    """Where the model came from: enough to reproduce and to copy the tokenizer."""

    path: Path
    config: dict[str, Any]
    sha256: str = ""
    tokenizer_files: tuple[Path, ...] = ()
    generation_config: dict[str, Any] | None = None


@dataclass
class ModelIR:
    spec: ArchSpec
    tensors: TensorStore
    source: SourceInfo
    weights: dict[str, QuantizedWeight] = field(default_factory=dict)
    activations: dict[str, ActivationQuant] = field(default_factory=dict)
    unquantized: dict[str, str] = field(default_factory=dict)  # linear name -> why it was left dense

    @property
    def lm_head_name(self) -> str:
        return "model.embed_tokens.weight" if self.spec.tie_word_embeddings else "lm_head.weight"

    def linear_names(self) -> list[str]:
        return self.spec.linear_names()

    def dense(self, name: str) -> torch.Tensor:
        """The unquantized tensor (memory-mapped dtype, usually bf16)."""
        return self.tensors.get(name)

    def is_quantized(self, name: str) -> bool:
        return name in self.weights

    def quantize(self, name: str, qweight: QuantizedWeight) -> None:
        """Replace a dense weight by its quantized form (the dense copy stays readable
        in the store so later passes and evaluation can compare against it)."""
        self.weights[name] = qweight

    def num_parameters(self) -> int:
        return sum(_numel(self.tensors.shape(n)) for n in self.tensors.names())


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
