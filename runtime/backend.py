"""The one small interface every runtime backend implements, so evaluation code
(perplexity, KL divergence, speed) runs any artifact the same way."""

from __future__ import annotations

from typing import Any, Protocol

import torch


class Backend(Protocol):
    """Runs one model artifact.

    name: short id used in reports ("torch", "llama.cpp", "onnxruntime", ...).
    """

    name: str

    @property
    def vocab_size(self) -> int: ...

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [batch, tokens] int64 -> logits [batch, tokens, vocab] float32, no cache."""
        ...

    def start(self, ids: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """Prefill: ids [1, tokens] -> (state, logits of the last position [1, vocab])."""
        ...

    def step(self, state: Any, token: int) -> torch.Tensor:
        """Decode one token with the state's cache -> logits [1, vocab]."""
        ...

    def close(self) -> None: ...
