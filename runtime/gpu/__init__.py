"""The GPU runtime: Triton kernels for FP8 / INT4 / NVFP4 linears, a static KV cache and
CUDA-graph decode (`CudaBackend`). Needs CUDA and Triton (`pip install triton`)."""

from __future__ import annotations


def __getattr__(name: str):
    if name in ("CudaBackend", "GpuModel", "StaticKVCache"):
        from inferc.runtime.gpu import backend

        return getattr(backend, name)
    raise AttributeError(name)
