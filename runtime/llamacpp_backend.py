"""The llama.cpp backend: runs a GGUF artifact through llama-cpp-python."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from inferc.core.errors import FormatError, require
from inferc.runtime.backends import register_backend


class LlamaCppBackend:
    name = "llama.cpp"

    def __init__(self, gguf_path: Path, n_ctx: int = 512, n_threads: int = 2, n_batch: int = 512) -> None:
        from inferc.formats.gguf import read_gguf_summary

        read_gguf_summary(Path(gguf_path))  # FormatError for truncated/corrupt files, before llama.cpp sees them
        llama_cpp = require("llama_cpp", "llama-cpp-python", "running GGUF artifacts with llama.cpp")
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(gguf_path), n_ctx=n_ctx, n_threads=n_threads, n_batch=n_batch,
                logits_all=True, verbose=False,
            )
        except ValueError as exc:
            raise FormatError(f"llama.cpp cannot load '{gguf_path}': {exc}") from exc
        self.n_ctx = n_ctx

    @property
    def vocab_size(self) -> int:
        return int(self._llm.n_vocab())

    def _run(self, ids: list[int]) -> np.ndarray:
        """Fresh KV cache, evaluate ids, logits [len(ids), vocab]."""
        self._llm.reset()
        self._llm._ctx.kv_cache_clear()
        self._llm.eval(ids)
        return np.array(self._llm.scores[: len(ids)], dtype=np.float32)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.n_ctx:
            raise ValueError(f"{ids.shape[1]} tokens exceed the llama.cpp context of {self.n_ctx}")
        return torch.from_numpy(np.stack([self._run(row.tolist()) for row in ids]))

    def start(self, ids: torch.Tensor) -> tuple[Any, torch.Tensor]:
        out = self._run(ids[0].tolist())
        return None, torch.from_numpy(out[-1:].copy())

    def step(self, state: Any, token: int) -> torch.Tensor:
        self._llm.eval([int(token)])
        return torch.from_numpy(np.array(self._llm.scores[self._llm.n_tokens - 1 : self._llm.n_tokens], dtype=np.float32))

    def close(self) -> None:
        self._llm.close()


@register_backend("llamacpp", runs=lambda path: path.is_file() and path.suffix == ".gguf")
def _open_gguf(path: Path, device: str) -> LlamaCppBackend:
    return LlamaCppBackend(path)
