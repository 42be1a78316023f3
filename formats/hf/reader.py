"""Read a Hugging Face checkpoint directory into the model IR.

Tensors stay memory-mapped; validation reads each one once (shapes against the config,
NaN/Inf) and releases it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from inferc.core.errors import CheckpointError
from inferc.core.ir import ModelIR, SourceInfo, TensorStore, spec_from_config
from inferc.formats.hf.constants import (
    CONFIG_FILE,
    INDEX_FILE,
    SAFETENSORS_HEADER_SIZE_BYTES,
    SAFETENSORS_METADATA_KEY,
    SINGLE_FILE,
    TOKENIZER_FILES,
)
from inferc.formats.hf.names import MULTIMODAL_PREFIX, hf_name, ir_names
from inferc.formats.hf.quantized_reader import attach_quantization, quant_method


def read_config(model_dir: Path) -> dict:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CheckpointError(f"model directory '{model_dir}' does not exist; pass a Hugging Face checkpoint directory")
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"'{model_dir}' has no {CONFIG_FILE}; a Hugging Face checkpoint directory needs one")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from exc


def safetensors_data_bytes(path: Path) -> int:
    """Bytes of the tensors' data in a .safetensors file (its header not counted)."""
    with Path(path).open("rb") as f:
        size = int.from_bytes(f.read(SAFETENSORS_HEADER_SIZE_BYTES), "little")
        try:
            header = json.loads(f.read(size))
            return sum(end - start for key, v in header.items() if key != SAFETENSORS_METADATA_KEY for start, end in [v["data_offsets"]])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"'{path}' is not a valid safetensors file (unreadable header)") from exc


def weight_files(model_dir: Path) -> list[Path]:
    """The safetensors files of a checkpoint: one file, or the shards its index names."""
    index = model_dir / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise CheckpointError(f"{index} is not a valid safetensors index (needs a 'weight_map')") from exc
        files = [model_dir / f for f in sorted(set(weight_map.values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"{index.name} names shards that are missing: {', '.join(missing)}")
        return files
    single = model_dir / SINGLE_FILE
    if single.is_file():
        return [single]
    found = sorted(model_dir.glob("*.safetensors"))
    if found:
        return found
    raise CheckpointError(f"'{model_dir}' has no safetensors weights ({SINGLE_FILE} or {INDEX_FILE}); convert .bin checkpoints to safetensors first")


def _to_ir_names(ir: ModelIR) -> None:
    """Re-key the store and the quantization annotations from checkpoint names to the
    graph's names; `source_names` keeps the checkpoint's."""
    params = [n for n, _ in ir.graph.params]
    mapping = ir_names(ir.spec, [*ir.tensors.names(), *ir.weights], params)
    ir.tensors = ir.tensors.renamed(mapping)
    for table in (ir.weights, ir.activations, ir.unquantized):
        renamed = {mapping.get(k, k): v for k, v in table.items()}
        table.clear()
        table.update(renamed)
    ir.source_names = {v: k for k, v in mapping.items()}


def _validate(ir: ModelIR) -> None:
    expected = ir.graph.shapes
    missing = [hf_name(n, ir.spec) for n in expected if n not in ir.tensors and n not in ir.weights]
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise CheckpointError(f"checkpoint is missing tensors the config implies: {', '.join(missing[:3])}{more}")
    for name, shape in expected.items():
        if name in ir.weights:  # quantized: shapes were checked against the config when read
            continue
        found = ir.tensors.shape(name)
        if tuple(found) != tuple(shape):
            raise CheckpointError(
                f"tensor '{ir.source_name(name)}' has shape {list(found)} but config.json implies {list(shape)}; "
                "the weights do not belong to this config"
            )
        t = ir.tensors.get(name)
        if not torch.isfinite(t).all():
            bad = "NaN" if torch.isnan(t).any() else "Inf"
            raise CheckpointError(f"tensor '{ir.source_name(name)}' contains {bad} values; the checkpoint is corrupt")


def _hash_files(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def load_checkpoint(model_dir: str | Path, validate: bool = True) -> ModelIR:
    """Open a checkpoint as IR: config parsed, tensors memory-mapped, optionally validated."""
    model_dir = Path(model_dir)
    cfg = read_config(model_dir)
    spec = spec_from_config(cfg)
    files = weight_files(model_dir)
    store = TensorStore.from_files(files)
    store = store.renamed({n: "model." + n[len(MULTIMODAL_PREFIX):] for n in store.names() if n.startswith(MULTIMODAL_PREFIX)})
    gen_path = model_dir / "generation_config.json"
    source = SourceInfo(
        path=model_dir.resolve(),
        config=cfg,
        sha256=_hash_files([model_dir / CONFIG_FILE, *files]),
        tokenizer_files=tuple(model_dir / f for f in TOKENIZER_FILES if (model_dir / f).is_file()),
        generation_config=json.loads(gen_path.read_text()) if gen_path.is_file() else None,
    )
    ir = ModelIR(spec=spec, tensors=store, source=source)
    if quant_method(cfg) is not None:
        attach_quantization(ir, model_dir, validate=validate)
    _to_ir_names(ir)
    if validate:
        _validate(ir)
    return ir


def ir_from_tensors(config: dict, tensors: dict[str, torch.Tensor]) -> ModelIR:
    """An IR over in-memory tensors under their checkpoint names (a model built in
    memory, e.g. random weights on a GPU); the tensors are not copied."""
    store = TensorStore()
    for name, t in tensors.items():
        store.set(name, t)
    ir = ModelIR(spec=spec_from_config(config), tensors=store, source=SourceInfo(path=Path("."), config=config))
    _to_ir_names(ir)
    return ir
