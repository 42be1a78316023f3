"""Runtime backends by name, and which one runs a given artifact part: `build` and
`eval` open the backend an exported file asks for and never branch on formats."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from inferc.core.errors import UnsupportedError
from inferc.runtime.backend import Backend

# factory(artifact part path, torch device) -> Backend
Factory = Callable[[Path, str], Backend]
_BACKENDS: dict[str, tuple[Factory, Callable[[Path], bool], int]] = {}


def register_backend(name: str, runs: Callable[[Path], bool], priority: int = 0) -> Callable[[Factory], Factory]:
    """Register `factory` under `name`; `runs(path)` says whether it runs that file/dir.
    Backends with a higher priority are asked first (an engine's folder also holds ONNX)."""

    def deco(fn: Factory) -> Factory:
        if name in _BACKENDS:
            raise ValueError(f"backend '{name}' is already registered")
        _BACKENDS[name] = (fn, runs, priority)
        return fn

    return deco


def backend_names() -> list[str]:
    _load()
    return sorted(_BACKENDS)


def open_backend(path: Path, device: str = "cpu", name: str | None = None) -> Backend:
    """The backend `name`, or the first that runs `path`, opened on it."""
    _load()
    path = Path(path)
    if name is not None:
        if name not in _BACKENDS:
            raise UnsupportedError(f"unknown backend '{name}'; registered: {', '.join(sorted(_BACKENDS))}")
        return _BACKENDS[name][0](path, device)
    for factory, runs, _ in sorted(_BACKENDS.values(), key=lambda b: -b[2]):
        if runs(path):
            return factory(path, device)
    raise UnsupportedError(f"no runtime backend runs '{path}'; registered: {', '.join(sorted(_BACKENDS))}")


def _load() -> None:
    from inferc.runtime import llamacpp_backend, onnxruntime_backend, tensorrt_backend, torch_backend  # noqa: F401  (register them)
