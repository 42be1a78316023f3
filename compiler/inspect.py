"""`inferc inspect`: what a checkpoint, artifact or GGUF holds, and at how many bits."""

from __future__ import annotations

import json
from pathlib import Path

from inferc.core.errors import CheckpointError
from inferc.compiler.manifest import MANIFEST_FILE
from inferc.formats.hf.reader import load_checkpoint
from inferc.runtime.speed import bits_per_weight, tensor_data_bytes

Rows = list[tuple[str, str]]


def inspect_path(path: Path) -> tuple[Rows, list[tuple]]:
    """(summary rows, per-tensor rows) for a .gguf file, an artifact or a checkpoint."""
    path = Path(path)
    if path.is_file() and path.suffix == ".gguf":
        return _inspect_gguf(path)
    if path.is_file() and path.suffix == ".onnx":
        return _inspect_onnx(path)
    if path.is_dir() and (path / MANIFEST_FILE).is_file():
        return _inspect_artifact(path)
    if path.is_dir():
        return _inspect_checkpoint(path)
    raise CheckpointError(f"'{path}' is not a checkpoint directory, an inferc artifact or a .gguf file")


BPW_NOTE = "tensor data bytes x 8 / weights; file headers and metadata not counted"


def graph_text(path: Path, fuse: bool = False) -> str:
    """The model graph of a checkpoint (or of an artifact's HF export), printed one node a
    line; with `fuse`, after fuse_qkv, fuse_gate_up and fuse_residual_norm."""
    from inferc.passes import PassContext, get_pass

    path = Path(path)
    if path.is_dir() and (path / MANIFEST_FILE).is_file():
        manifest = json.loads((path / MANIFEST_FILE).read_text())
        hf = [e["path"] for e in manifest.get("exports", []) if e.get("format") == "hf"]
        if not hf:
            raise CheckpointError(f"artifact '{path}' has no HF export to read a graph from; inspect its source checkpoint")
        path = path / hf[0]
    if not path.is_dir():
        raise CheckpointError(f"--graph needs a checkpoint directory or an artifact; '{path}' is neither")
    ir = load_checkpoint(path, validate=False)
    if fuse:
        for name in ("fuse_qkv", "fuse_gate_up", "fuse_residual_norm"):
            ir = get_pass(name)().run(ir, PassContext())
    return str(ir.graph)


def _inspect_checkpoint(path: Path) -> tuple[Rows, list[tuple]]:
    ir = load_checkpoint(path, validate=False)
    weight_bytes = tensor_data_bytes(list(ir.tensors.files()))
    params = ir.num_parameters() + sum(
        w.shape[0] * w.shape[1] for n, w in ir.weights.items() if n not in ir.tensors
    )
    formats = sorted({w.format.value for w in ir.weights.values()})
    summary = [
        ("path", str(path)),
        ("architecture", f"{ir.spec.model_type} ({ir.spec.num_layers} layers, hidden {ir.spec.hidden_size})"),
        ("parameters", f"{params:,}"),
        ("tensor data bytes", f"{weight_bytes:,} ({weight_bytes / 2**20:.1f} MiB)"),
        ("bits per weight", f"{bits_per_weight(weight_bytes, max(params, 1)):.3f} ({BPW_NOTE})"),
        ("quantized linears", f"{len(ir.weights)} ({', '.join(formats) or 'none'})"),
    ]
    rows: list[tuple] = [("tensor", "shape", "stored", "quantization", "bits/weight")]
    for name in sorted(set(ir.tensors.names()) | set(ir.weights)):
        q = ir.weights.get(name)
        if q is not None:
            layout = f"{q.format.value} {q.granularity.value}" + (f" g{q.group_size}" if q.group_size else "")
            layout += "" if q.symmetric else " asym"
            layout += " g_idx" if q.g_idx is not None else ""
            rows.append((name, "x".join(map(str, q.shape)), str(q.data.dtype).removeprefix("torch."), layout, f"{q.bits_per_weight:.3f}"))
        else:
            rows.append((name, "x".join(map(str, ir.tensors.shape(name))), ir.tensors.dtype(name), "-", "-"))
    return summary, rows


def _inspect_gguf(path: Path) -> tuple[Rows, list[tuple]]:
    from inferc.formats.gguf import read_gguf_summary

    s = read_gguf_summary(path)
    counts = ", ".join(f"{n} {t}" for t, n in sorted(s.type_counts().items()))
    summary = [
        ("path", str(path)),
        ("format", f"GGUF v{s.version}"),
        ("architecture", str(s.architecture)),
        ("file bytes", f"{s.file_bytes:,} ({s.file_bytes / 2**20:.1f} MiB)"),
        ("tensor data bytes", f"{sum(t.nbytes for t in s.tensors):,}"),
        ("bits per weight", f"{s.bits_per_weight:.3f} ({BPW_NOTE})"),
        ("tensor types", counts),
    ]
    rows: list[tuple] = [("tensor", "shape", "stored", "quantization", "bits/weight")]
    rows += [(t.name, "x".join(map(str, t.shape)), t.type, "ggml block" if t.type not in ("F32", "F16", "BF16") else "-",
              f"{t.bits_per_weight:.3f}") for t in s.tensors]
    return summary, rows


def _inspect_onnx(path: Path) -> tuple[Rows, list[tuple]]:
    from inferc.formats.onnx.reader import read_onnx_summary

    s = read_onnx_summary(path)
    summary = [
        ("path", str(path)),
        ("format", "ONNX, opsets " + ", ".join(f"{d} {v}" for d, v in s.opsets.items())),
        ("flavour", s.metadata.get("inferc.flavour", "?")),
        ("weight bytes", f"{s.weight_bytes:,} ({s.weight_bytes / 2**20:.1f} MiB)"),
        ("bits per weight", f"{s.bits_per_weight:.3f}"),
        ("weight types", ", ".join(f"{n} {t}" for t, n in sorted(s.initializer_types.items()))),
        ("operators", ", ".join(f"{n} {op}" for op, n in s.op_counts.items())),
    ]
    rows: list[tuple] = [("operator", "count")] + [(op, str(n)) for op, n in s.op_counts.items()]
    return summary, rows


def _inspect_artifact(path: Path) -> tuple[Rows, list[tuple]]:
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    summary: Rows = [
        ("artifact", str(path)),
        ("target", manifest.get("target", "?")),
        ("recipe", str((manifest.get("recipe") or {}).get("name"))),
        ("source", f"{manifest['source'].get('name')} (sha256 {manifest['source'].get('sha256', '')[:12]})"),
        ("inferc", str(manifest["versions"].get("inferc"))),
        ("files", str(len(manifest.get("files", [])))),
    ]
    rows: list[tuple] = []
    for sub in sorted(path.iterdir()):
        if sub.is_dir() and (sub / "model.onnx").is_file():
            sub = sub / "model.onnx"
        if sub.suffix in (".gguf", ".onnx") or (sub.is_dir() and (sub / "config.json").is_file()):
            inner, inner_rows = inspect_path(sub)
            summary += [(f"{sub.name}: {k}", v) for k, v in inner if k != "path"]
            rows += inner_rows if not rows else inner_rows[1:]
    return summary, rows
