"""llama.cpp importance matrices (`imatrix.gguf`): read and write, with tensor names
mapped between llama.cpp (`blk.N.attn_q.weight`) and the IR (`layers.N.attn.q.weight`).

The file holds, per weight, `<name>.in_sum2` (sum of squared inputs per column, F32
[n_mat, n_per_row]) and `<name>.counts` (tokens seen, F32 [n_mat, 1]); the importance a
quantizer uses is in_sum2 / counts, i.e. our ChannelStats.mean_sq.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from inferc.core.errors import FormatError, require
from inferc.formats.gguf.names import gguf_name, ir_name

_SUM2, _COUNTS = ".in_sum2", ".counts"


def write_imatrix(path: Path, sums: dict[str, tuple[torch.Tensor, int]], num_tokens: int, dataset: str = "",
                  chunk_size: int = 512) -> None:
    """Write per-weight (sum of squared inputs per column [in], tokens seen) as a llama.cpp
    imatrix.gguf (atomic rename)."""
    import gguf

    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    w = gguf.GGUFWriter(tmp, arch="imatrix")
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", [dataset] if dataset else [])
    w.add_uint32("imatrix.chunk_count", max(1, num_tokens // chunk_size))
    w.add_uint32("imatrix.chunk_size", chunk_size)
    for name in sorted(sums):
        g = gguf_name(name)
        if g is None:
            continue
        sum_sq, count = sums[name]
        w.add_tensor(g + _SUM2, sum_sq.to(torch.float32).reshape(1, -1).numpy())
        w.add_tensor(g + _COUNTS, np.array([[float(count)]], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)


def read_imatrix_file(path: Path) -> dict[str, np.ndarray]:
    """Importance (mean squared input per column) by llama.cpp tensor name, checked as a
    file: no model needed, so a bad --imatrix is refused before anything is loaded."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"imatrix file '{path}' does not exist")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise FormatError(f"'{path}' is not an imatrix.gguf (no GGUF magic); the legacy .dat format is not supported, convert it with llama-imatrix --in-file old.dat -o new.gguf")
    gguf = require("gguf", "gguf", "reading an imatrix.gguf", 'pip install "inferc[gguf]"')
    try:
        r = gguf.GGUFReader(str(path))
    except (ValueError, IndexError, KeyError, OverflowError) as exc:
        raise FormatError(f"'{path}' is a truncated or corrupt imatrix file ({exc})") from exc
    tensors = {t.name: np.asarray(t.data, dtype=np.float32) for t in r.tensors}
    out: dict[str, np.ndarray] = {}
    for tname, sums in tensors.items():
        if not tname.endswith(_SUM2):
            continue
        base = tname[: -len(_SUM2)]
        counts = tensors.get(base + _COUNTS)
        if counts is None:
            raise FormatError(f"'{path}': '{tname}' has no matching '{base}{_COUNTS}'")
        sums2 = sums.reshape(counts.size, -1)
        per = sums2 / np.maximum(counts.reshape(-1, 1), 1.0)
        out[base] = per.mean(axis=0).astype(np.float32)
    if not out:
        raise FormatError(f"'{path}' holds no importance entries ('<tensor>{_SUM2}' with '<tensor>{_COUNTS}')")
    return out


def importance_for(entries: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], path: Path) -> dict[str, torch.Tensor]:
    """The entries of `read_imatrix_file` by IR weight name for a model whose tensors have
    `shapes`; an entry as wide as no input of its tensor is refused (another model's file)."""
    out = {}
    for base, per in entries.items():
        name = ir_name(base, list(shapes))
        if name is None:
            continue
        cols = shapes[name][-1]
        if per.size != cols:
            raise FormatError(f"'{path}': '{base}' has {per.size} columns but this model's tensor has {cols}; "
                              "the importance matrix was made for another model")
        out[name] = torch.from_numpy(per)
    if not out:
        raise FormatError(f"'{path}' holds no importance entries for this model's tensors")
    return out


def read_imatrix(path: Path, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Importance (mean squared input per column) by IR weight name from an imatrix.gguf."""
    return importance_for(read_imatrix_file(path), shapes, Path(path))
