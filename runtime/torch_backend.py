"""The torch backend: the reference forward of an IR (quantized weights fake-quantized)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from inferc.core.ir import ModelIR
from inferc.runtime.backends import register_backend
from inferc.runtime.reference import KVCache, ReferenceModel


class TorchBackend:
    name = "torch"

    def __init__(self, ir: ModelIR, device: str = "cpu", dtype: torch.dtype = torch.float32, quantized: bool = True) -> None:
        self.model = ReferenceModel(ir, device=device, dtype=dtype, quantized=quantized)

    @property
    def vocab_size(self) -> int:
        return self.model.spec.vocab_size

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.forward(ids)

    def start(self, ids: torch.Tensor) -> tuple[Any, torch.Tensor]:
        cache: KVCache = self.model.new_cache()
        return cache, self.model.forward(ids, cache)[:, -1]

    def step(self, state: Any, token: int) -> torch.Tensor:
        ids = torch.tensor([[token]], dtype=torch.int64)
        return self.model.forward(ids, state)[:, -1]

    def close(self) -> None:
        self.model.release()


@register_backend("torch", runs=lambda path: path.is_dir() and (path / "config.json").is_file())
def _open_checkpoint(path: Path, device: str) -> TorchBackend:
    """An HF checkpoint (dense or quantized) run by the reference interpreter."""
    from inferc.formats.hf.reader import load_checkpoint

    return cuda_or_torch_backend(load_checkpoint(path), device)
def cuda_or_torch_backend(ir: ModelIR, device: str):
    """The backend an artifact is evaluated with: on a CUDA device the GPU runtime's real
    kernels (`CudaBackend`), elsewhere this reference backend."""
    if str(device).startswith("cuda"):
        from inferc.runtime.gpu import CudaBackend

        return CudaBackend(ir, device=device)
    return TorchBackend(ir, device=device)
