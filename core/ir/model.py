"""The model IR: an architecture spec, the graph of its computation, named tensors and
their quantization annotations. Tensors are named by the graph (`layers.0.attn.q.weight`);
`source_names` keeps what the checkpoint called them, for messages and ignore patterns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from inferc.core.ir.graph import Graph, Linear, build_graph
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
    graph: Graph = None  # type: ignore[assignment]  # built from the spec when not given
    source_names: dict[str, str] = field(default_factory=dict)  # IR tensor name -> checkpoint name

    def __post_init__(self) -> None:
        if self.graph is None:
            self.graph = build_graph(self.spec)

    @property
    def head(self) -> Linear:
        return self.graph.linears(None)[-1]

    @property
    def lm_head_name(self) -> str:
        return self.head.weights[0]

    def linear_names(self) -> list[str]:
        """Weight names of the decoder layers' linear parts, in execution order."""
        return [w for lin in self.graph.linears() if lin.layer is not None for w in lin.weights]

    def quantizable(self) -> list[str]:
        """Every linear weight a weight pass may quantize: the decoder's, then an untied head."""
        return self.graph.linear_weights()

    def source_name(self, name: str) -> str:
        return self.source_names.get(name, name)

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
