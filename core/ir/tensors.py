"""Named tensors, memory-mapped from safetensors until a pass asks for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from inferc.core.errors import CheckpointError
from safetensors import SafetensorError, safe_open


class TensorStore:
    """A name -> tensor map backed by safetensors files, with in-memory overrides.

    `get` reads a tensor from its (memory-mapped) file on each call unless it was
    `set` in memory; nothing is loaded when the store is opened.
    """

    def __init__(self) -> None:
        self._where: dict[str, Path] = {}
        self._stored: dict[str, str] = {}  # name here -> name in its file, where they differ
        self._handles: dict[Path, object] = {}
        self._memory: dict[str, torch.Tensor] = {}
        self._meta: dict[str, tuple[tuple[int, ...], str]] = {}

    @classmethod
    def from_files(cls, files: list[Path]) -> TensorStore:
        store = cls()
        for path in files:
            try:
                handle = safe_open(str(path), framework="pt")
                for name in handle.keys():
                    sl = handle.get_slice(name)
                    store._meta[name] = (tuple(sl.get_shape()), str(sl.get_dtype()))
                    store._where[name] = path
            except (OSError, SafetensorError) as exc:
                raise CheckpointError(f"cannot read safetensors file {path}: {exc}; the file is truncated or corrupt") from exc
            store._handles[path] = handle
        return store

    def names(self) -> list[str]:
        return list(dict.fromkeys([*self._where, *self._memory]))

    def __contains__(self, name: str) -> bool:
        return name in self._memory or name in self._where

    def in_memory(self) -> list[str]:
        """Names of the tensors `set` in memory (computed, not read from a file)."""
        return list(self._memory)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self._memory:
            return tuple(self._memory[name].shape)
        return self._meta[name][0]

    def dtype(self, name: str) -> str:
        """Stored dtype name ("BF16", "F8_E4M3", ...; torch's name for in-memory tensors)."""
        if name in self._memory:
            return str(self._memory[name].dtype).removeprefix("torch.")
        return self._meta[name][1]

    def get(self, name: str) -> torch.Tensor:
        if name in self._memory:
            return self._memory[name]
        if name not in self._where:
            raise KeyError(name)
        handle = self._handles[self._where[name]]
        try:
            return handle.get_tensor(self._stored.get(name, name))  # type: ignore[attr-defined]
        except (OSError, SafetensorError) as exc:
            raise CheckpointError(f"cannot read tensor '{name}' from {self._where[name]}: {exc}") from exc

    def set(self, name: str, tensor: torch.Tensor) -> None:
        self._memory[name] = tensor

    def drop(self, name: str) -> None:
        """Forget a tensor (a quantized weight replaces it)."""
        self._memory.pop(name, None)
        self._where.pop(name, None)
        self._meta.pop(name, None)
        self._stored.pop(name, None)

    def renamed(self, mapping: dict[str, str]) -> TensorStore:
        """A store over the same files and in-memory tensors with names mapped through
        `mapping` (names it lacks keep theirs); reads go to the stored names."""
        out = TensorStore()
        out._handles = self._handles
        key = lambda n: mapping.get(n, n)  # noqa: E731
        out._where = {key(n): p for n, p in self._where.items()}
        out._stored = {key(n): self._stored.get(n, n) for n in self._where if key(n) != self._stored.get(n, n)}
        out._meta = {key(n): m for n, m in self._meta.items()}
        out._memory = {key(n): t for n, t in self._memory.items()}
        if len(out._where) != len(self._where) or len(out._memory) != len(self._memory):
            raise ValueError("renaming maps two tensors to one name")
        return out

    def files(self) -> list[Path]:
        return sorted(set(self._where.values()))
