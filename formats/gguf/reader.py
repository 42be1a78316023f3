"""A summary of any GGUF file for `inferc inspect`: metadata, and per tensor its type,
shape, bytes and bits per weight. Truncated or corrupt files raise FormatError."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inferc.core.errors import FormatError
from inferc.formats.gguf.constants import GGUF_MAGIC


@dataclass
class TensorSummary:
    name: str
    type: str  # ggml type name, e.g. "Q4_K"
    shape: tuple[int, ...]  # [rows, cols] order (numpy), i.e. GGUF ne reversed
    nbytes: int

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.nbytes / max(self.numel, 1)


@dataclass
class GGUFSummary:
    path: Path
    version: int
    architecture: str | None
    metadata: dict[str, Any] = field(default_factory=dict)  # scalars and short lists; token arrays as counts
    tensors: list[TensorSummary] = field(default_factory=list)

    @property
    def file_bytes(self) -> int:
        return self.path.stat().st_size

    @property
    def bits_per_weight(self) -> float:
        n = sum(t.numel for t in self.tensors)
        return 8.0 * sum(t.nbytes for t in self.tensors) / max(n, 1)

    @property
    def decode_weight_bytes(self) -> int:
        """Bytes a decoded token reads: every tensor but the token embedding, of which one
        row is looked up, unless the model has no output.weight and uses it as the head."""
        names = {t.name for t in self.tensors}
        skip = "token_embd.weight" if "output.weight" in names else None
        return sum(t.nbytes for t in self.tensors if t.name != skip)

    def type_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensors:
            out[t.type] = out.get(t.type, 0) + 1
        return out


def _field_value(f: Any) -> Any:
    import gguf

    if not f.types:
        return None
    kind = f.types[0]
    if kind == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8", errors="replace")
    if kind == gguf.GGUFValueType.ARRAY:
        if len(f.data) > 16:
            return f"[{len(f.data)} items]"
        if len(f.types) > 1 and f.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8", errors="replace") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    v = f.parts[f.data[0]].tolist()
    return v[0] if isinstance(v, list) and len(v) == 1 else v


def read_gguf_summary(path: Path) -> GGUFSummary:
    import gguf

    path = Path(path)
    if not path.is_file():
        raise FormatError(f"'{path}' does not exist; pass a .gguf file")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise FormatError(f"'{path}' is not a GGUF file: expected magic {GGUF_MAGIC!r}, found {magic!r}")
    try:
        r = gguf.GGUFReader(str(path))
    except (ValueError, IndexError, KeyError, OverflowError, MemoryError, UnicodeDecodeError) as exc:
        raise FormatError(f"'{path}' is a truncated or corrupt GGUF file ({type(exc).__name__}: {exc}); re-export or re-download it") from exc
    meta = {name: _field_value(f) for name, f in r.fields.items() if not name.startswith("GGUF.")}
    tensors = []
    end = 0
    for t in r.tensors:
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        tensors.append(TensorSummary(t.name, t.tensor_type.name, shape, int(t.n_bytes)))
        end = max(end, int(t.data_offset) + int(t.n_bytes))
    if end > path.stat().st_size:
        raise FormatError(f"'{path}' is truncated: tensor data needs {end} bytes, the file has {path.stat().st_size}")
    version = int(r.fields["GGUF.version"].parts[-1][0]) if "GGUF.version" in r.fields else 0
    return GGUFSummary(path=path, version=version, architecture=meta.get("general.architecture"), metadata=meta, tensors=tensors)
