"""Write a ModelIR as a Hugging Face checkpoint: plain bf16, or quantized in the
compressed-tensors layout (vLLM, SGLang, transformers) or ModelOpt's (TensorRT-LLM).

`CheckpointWriter` is a state machine: every tensor is declared (name, shape, dtype and a
function that produces it) before any byte is written, shards are planned from the
declarations, each `write_*` checks the state, and the directory appears only by an atomic
rename of a temporary sibling at `finalize`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file

from inferc.core.errors import FormatError, UnsupportedError
from inferc.core.ir import ModelIR
from inferc.core.ir.quant import ActivationQuant
from inferc.formats.hf import compressed_tensors as ct
from inferc.formats.hf import constants as C
from inferc.formats.hf import modelopt as mo
from inferc.formats.hf.names import hf_module, names_for
from inferc.formats.registry import register_exporter

log = logging.getLogger(__name__)

Layout = Literal["compressed-tensors", "modelopt"]
LAYOUTS: tuple[str, ...] = ("compressed-tensors", "modelopt")


class _State(str, Enum):
    DECLARING = "declaring"
    WRITING = "writing"
    FINALIZED = "finalized"
    ABORTED = "aborted"


@dataclass(frozen=True)
class _Declared:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    produce: Callable[[], torch.Tensor]

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n * torch.empty((), dtype=self.dtype).element_size()


def _default_mode(path: Path) -> None:
    """safetensors creates files readable by their owner only (0600); give them the mode
    any other file gets under the process umask, so a published checkpoint is readable."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


class CheckpointWriter:
    """declare_tensor* -> write_tensors -> write_json* / copy_file* -> finalize (or abort)."""

    def __init__(self, out_dir: Path, shard_bytes: int = C.DEFAULT_SHARD_BYTES) -> None:
        self.out_dir = Path(out_dir)
        if self.out_dir.exists():
            raise FormatError(f"export directory '{self.out_dir}' already exists; give a new path (nothing is overwritten)")
        if not self.out_dir.parent.is_dir():
            raise FormatError(f"parent directory '{self.out_dir.parent}' of the export does not exist; create it first")
        self.shard_bytes = shard_bytes
        self._tmp = self.out_dir.parent / f".{self.out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
        self._tmp.mkdir()
        self._state = _State.DECLARING
        self._declared: dict[str, _Declared] = {}
        self._files: list[str] = []

    def _expect(self, *states: _State) -> None:
        if self._state not in states:
            raise RuntimeError(f"CheckpointWriter is {self._state.value}; this call needs {' or '.join(s.value for s in states)}")

    def declare_tensor(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, produce: Callable[[], torch.Tensor]) -> None:
        self._expect(_State.DECLARING)
        if name in self._declared:
            raise RuntimeError(f"tensor '{name}' declared twice")
        self._declared[name] = _Declared(name, tuple(shape), dtype, produce)

    def _plan_shards(self) -> list[list[_Declared]]:
        shards: list[list[_Declared]] = [[]]
        size = 0
        for d in self._declared.values():
            if shards[-1] and size + d.nbytes > self.shard_bytes:
                shards.append([])
                size = 0
            shards[-1].append(d)
            size += d.nbytes
        return shards

    def write_tensors(self) -> None:
        """Produce and write every declared tensor, one shard in memory at a time."""
        self._expect(_State.DECLARING)
        self._state = _State.WRITING
        shards = self._plan_shards()
        names = [C.SINGLE_FILE] if len(shards) == 1 else [C.SHARD_NAME.format(index=i + 1, total=len(shards)) for i in range(len(shards))]
        weight_map: dict[str, str] = {}
        for fname, shard in zip(names, shards):
            tensors: dict[str, torch.Tensor] = {}
            for d in shard:
                t = d.produce()
                assert tuple(t.shape) == d.shape and t.dtype == d.dtype, f"{d.name}: produced {t.dtype}{list(t.shape)}, declared {d.dtype}{list(d.shape)}"
                tensors[d.name] = t.contiguous()
                weight_map[d.name] = fname
            save_file(tensors, str(self._tmp / fname), metadata=dict(C.SAFETENSORS_METADATA))
            _default_mode(self._tmp / fname)
            self._files.append(fname)
        if len(shards) > 1:
            total = sum(d.nbytes for d in self._declared.values())
            self.write_json(C.INDEX_FILE, {"metadata": {"total_size": total}, "weight_map": weight_map})

    def write_json(self, filename: str, obj: Any) -> None:
        self._expect(_State.WRITING)
        (self._tmp / filename).write_text(json.dumps(obj, indent=2) + "\n")
        self._files.append(filename)

    def copy_file(self, src: Path, filename: str | None = None) -> None:
        self._expect(_State.WRITING)
        name = filename or Path(src).name
        shutil.copyfile(src, self._tmp / name)
        self._files.append(name)

    def finalize(self) -> list[Path]:
        """Move the finished checkpoint into place; returns its files."""
        self._expect(_State.WRITING)
        os.rename(self._tmp, self.out_dir)
        self._state = _State.FINALIZED
        return [self.out_dir / f for f in self._files]

    def abort(self) -> None:
        if self._state in (_State.DECLARING, _State.WRITING):
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._state = _State.ABORTED


# ---- what each layout writes ----------------------------------------------------------------


class _LinearEncoder:
    """Encodes one quantized linear into its checkpoint tensors; keeps the last module's
    result so the tensors of a module (declared together) are packed once at write time."""

    def __init__(self, encode: Callable[[str], dict[str, torch.Tensor]]) -> None:
        self._encode = encode
        self._last: tuple[str, dict[str, torch.Tensor]] | None = None

    def get(self, module: str) -> dict[str, torch.Tensor]:
        if self._last is None or self._last[0] != module:
            self._last = (module, self._encode(module))
        return self._last[1]


def _linear_modules(model: ModelIR) -> list[str]:
    return [hf_module(w.removesuffix(".weight"), model.spec) for w in model.quantizable()]


def _hf_view(model: ModelIR) -> tuple[ModelIR, list[str]]:
    """The model with every tensor and annotation under its checkpoint name, and the
    graph's tensors in graph order (by those names)."""
    names = names_for(model)
    view = dataclasses.replace(
        model,
        tensors=model.tensors.renamed(names),
        weights={names.get(k, k): v for k, v in model.weights.items()},
        activations={names.get(k, k): v for k, v in model.activations.items()},
        unquantized={names.get(k, k): v for k, v in model.unquantized.items()},
    )
    return view, [names[n] for n, _ in model.graph.params]


def _module(weight_name: str) -> str:
    return weight_name.removesuffix(".weight")


def _plan_layout(model: ModelIR, layout: str) -> tuple[Callable[[str], dict[str, torch.Tensor]], list[tuple[str, Any]], dict[str, Any] | None]:
    """(encode(module) -> tensors, extra json files, config.json quantization_config)."""
    modules = _linear_modules(model)
    quantized = {_module(n): q for n, q in model.weights.items()}
    unknown = [m for m in quantized if m not in modules]
    if unknown:
        raise UnsupportedError(f"quantized weights outside the linear layers cannot be exported to HF: {', '.join(unknown[:3])}")
    ignore = [m for m in modules if m not in quantized]
    if "lm_head" not in quantized and "lm_head" not in ignore:
        ignore.append("lm_head")  # tied: transformers still builds an lm_head Linear
    acts: dict[str, ActivationQuant | None] = {m: model.activations.get(m + ".weight") for m in quantized}
    if not quantized:
        return (lambda m: {}), [], None
    if layout == "compressed-tensors":
        schemes = {m: ct.scheme_for(m, q, acts[m]) for m, q in quantized.items()}
        return (lambda m: ct.encode_linear(quantized[m], acts[m])), [], ct.build_quantization_config(schemes, ignore)
    configs = {m: mo.layer_config_for(m, q, acts[m]) for m, q in quantized.items()}
    hf_cfg = mo.hf_quant_config(configs, ignore)
    return (lambda m: mo.encode_linear(quantized[m], acts[m], configs[m])), [(C.HF_QUANT_CONFIG_FILE, hf_cfg)], mo.config_json_quantization(hf_cfg)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _config_json(model: ModelIR, qcfg: dict[str, Any] | None, dense_dtype: torch.dtype) -> dict[str, Any]:
    cfg = dict(model.source.config)
    cfg.pop(C.QUANTIZATION_CONFIG, None)
    dtype_keys = [k for k in ("torch_dtype", "dtype") if k in cfg] or ["torch_dtype"]
    for k in dtype_keys:
        cfg[k] = _dtype_name(dense_dtype)
    if qcfg is not None:
        cfg[C.QUANTIZATION_CONFIG] = qcfg
    return cfg


def _declare_all(writer: CheckpointWriter, model: ModelIR, expected: list[str], encoder: _LinearEncoder, dense_dtype: torch.dtype,
                 encode: Callable[[str], dict[str, torch.Tensor]]) -> None:
    order = expected + [n for n in model.tensors.names() if n not in set(expected)]
    for name in order:
        if name in model.weights:
            module = _module(name)
            for key, t in encode(module).items():  # shapes and dtypes; bytes come at write time
                writer.declare_tensor(f"{module}.{key}", tuple(t.shape), t.dtype,
                                      lambda module=module, key=key: encoder.get(module)[key])
        elif name in model.tensors:
            shape = tuple(model.tensors.shape(name))
            src_dtype = model.tensors.get(name).dtype
            dtype = dense_dtype if src_dtype.is_floating_point else src_dtype
            writer.declare_tensor(name, shape, dtype, lambda name=name, dtype=dtype: model.tensors.get(name).to(dtype))


def export_hf(
    model: ModelIR,
    out_dir: Path,
    layout: Layout = "compressed-tensors",
    *,
    shard_bytes: int = C.DEFAULT_SHARD_BYTES,
    dense_dtype: torch.dtype = torch.bfloat16,
) -> list[Path]:
    """Write `model` as a Hugging Face checkpoint directory `out_dir` (which must not exist).

    Unquantized tensors are written in `dense_dtype`; quantized linears in `layout`. Files:
    config.json (with quantization_config when anything is quantized), model.safetensors or
    model-0000i-of-0000n.safetensors + model.safetensors.index.json past `shard_bytes`, the
    tokenizer / chat template / generation_config files of the source, and for
    layout="modelopt" hf_quant_config.json. Returns the written files.
    """
    if layout not in LAYOUTS:
        raise UnsupportedError(f"HF export layout '{layout}' is not supported; supported: {', '.join(LAYOUTS)}")
    model, expected = _hf_view(model)
    encode, extra_json, qcfg = _plan_layout(model, layout)
    writer = CheckpointWriter(Path(out_dir), shard_bytes=shard_bytes)
    try:
        encoder = _LinearEncoder(encode)
        _declare_all(writer, model, expected, encoder, dense_dtype, encode)
        writer.write_tensors()
        writer.write_json(C.CONFIG_FILE, _config_json(model, qcfg, dense_dtype))
        for fname, obj in extra_json:
            writer.write_json(fname, obj)
        copied = set()
        for src in model.source.tokenizer_files:
            if Path(src).name not in copied and Path(src).name != C.CONFIG_FILE:
                writer.copy_file(Path(src))
                copied.add(Path(src).name)
        if C.GENERATION_CONFIG_FILE not in copied and model.source.generation_config is not None:
            writer.write_json(C.GENERATION_CONFIG_FILE, model.source.generation_config)
        return writer.finalize()
    except BaseException:
        writer.abort()
        raise


HF_DIR = "hf"


@register_exporter("hf")
def _export_artifact(model: ModelIR, root: Path, options: dict[str, Any]) -> Path:
    """The artifact's HF part: `hf/` (compressed-tensors) or `hf-<layout>/`."""
    layout = options.get("layout", "compressed-tensors")
    path = root / (HF_DIR if layout == "compressed-tensors" else f"{HF_DIR}-{layout}")
    export_hf(model, path, layout=layout)
    return path
