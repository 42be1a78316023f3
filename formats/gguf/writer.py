"""IR -> GGUF file.

`GGUFFileWriter` is a state machine around gguf.GGUFWriter's container code:
NEW (metadata) -> DECLARED (tensor infos) -> WRITING (tensor data, in declaration order)
-> DONE. Every call checks the state; bytes go to a temporary file in the target
directory that is renamed over the target only when every declared tensor is written.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inferc.core.errors import UnsupportedError
from inferc.core.ir import Attention, ModelIR, QuantFormat, RMSNorm, Role, SkipRMSNorm
from inferc.core.ir.spec import ArchSpec
from inferc.formats.gguf import constants as C
from inferc.formats.gguf.names import gguf_name
from inferc.formats.registry import register_exporter
from inferc.formats.gguf.tokenizer import TokenizerMeta, add_tokenizer, read_tokenizer


class _State(enum.Enum):
    NEW = "new"
    DECLARED = "declared"
    WRITING = "writing"
    DONE = "done"
    FAILED = "failed"


@dataclass
class _Declared:
    name: str
    nbytes: int


class GGUFFileWriter:
    def __init__(self, path: Path, arch: str) -> None:
        import gguf

        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        self._w = gguf.GGUFWriter(self._tmp, arch)
        self._state = _State.NEW
        self._declared: list[_Declared] = []
        self._next = 0

    @property
    def kv(self) -> Any:
        """The gguf.GGUFWriter, to add metadata (only before tensors are declared)."""
        self._expect(_State.NEW)
        return self._w

    def declare(self, name: str, shape: tuple[int, ...], fmt: QuantFormat, nbytes: int) -> None:
        import gguf

        self._expect(_State.NEW, _State.DECLARED)
        qtype = gguf.GGMLQuantizationType(C.GGML_TYPE_IDS[fmt])
        if fmt in (QuantFormat.GGUF_F32, QuantFormat.GGUF_F16):
            self._w.add_tensor_info(name, shape, np.dtype(np.float32 if fmt is QuantFormat.GGUF_F32 else np.float16), nbytes)
        elif fmt is QuantFormat.GGUF_BF16:
            self._w.add_tensor_info(name, shape, np.dtype(np.uint16), nbytes, raw_dtype=qtype)
        else:
            rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            self._w.add_tensor_info(name, (rows, nbytes // rows), np.dtype(np.uint8), nbytes, raw_dtype=qtype)
        self._declared.append(_Declared(name, nbytes))
        self._state = _State.DECLARED

    def write(self, name: str, data: np.ndarray) -> None:
        if self._state is _State.DECLARED:
            self._w.write_header_to_file()
            self._w.write_kv_data_to_file()
            self._w.write_ti_data_to_file()
            self._state = _State.WRITING
        self._expect(_State.WRITING)
        assert self._next < len(self._declared), "more tensors written than declared"
        want = self._declared[self._next]
        assert want.name == name, f"tensor '{name}' written out of order; expected '{want.name}'"
        assert data.nbytes == want.nbytes, f"tensor '{name}': {data.nbytes} bytes, declared {want.nbytes}"
        self._w.write_tensor_data(np.ascontiguousarray(data))
        self._next += 1

    def finish(self) -> None:
        self._expect(_State.WRITING)
        assert self._next == len(self._declared), f"{len(self._declared) - self._next} declared tensors not written"
        self._w.close()
        os.replace(self._tmp, self.path)
        self._state = _State.DONE

    def abort(self) -> None:
        if self._state is not _State.DONE:
            self._state = _State.FAILED
            try:
                self._w.close()
            finally:
                self._tmp.unlink(missing_ok=True)

    def _expect(self, *states: _State) -> None:
        assert self._state in states, f"GGUF writer is {self._state.value}; this call needs {' or '.join(s.value for s in states)}"


def arch_name(spec: ArchSpec) -> str:
    if spec.family not in C.ARCH_NAMES:
        raise UnsupportedError(f"architecture '{spec.model_type}' cannot be exported to GGUF; supported: {', '.join(f.value for f in C.ARCH_NAMES)}")
    return C.ARCH_NAMES[spec.family]


def add_arch_metadata(w: Any, spec: ArchSpec, name: str, file_type: int) -> None:
    import gguf

    arch = arch_name(spec)
    if spec.rope.kind == "llama3":
        raise UnsupportedError("llama3 rope scaling is not exported to GGUF yet (llama.cpp needs a rope_freqs tensor); use a model with default or linear rope")
    w.add_name(name)
    w.add_file_type(file_type)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(spec.max_position_embeddings)
    w.add_embedding_length(spec.hidden_size)
    w.add_block_count(spec.num_layers)
    w.add_feed_forward_length(spec.intermediate_size)
    w.add_head_count(spec.num_heads)
    w.add_head_count_kv(spec.num_kv_heads)
    w.add_layer_norm_rms_eps(spec.rms_norm_eps)
    w.add_rope_freq_base(spec.rope.theta)
    w.add_key_length(spec.head_dim)
    w.add_value_length(spec.head_dim)
    w.add_vocab_size(spec.vocab_size)
    if arch in ("llama", "phi3"):
        w.add_rope_dimension_count(spec.rotary_dim)
    if spec.rope.kind == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(spec.rope.factor)
    if arch == "gemma2":
        w.add_attn_logit_softcapping(spec.attn_logit_softcap or 0.0)
        w.add_final_logit_softcapping(spec.final_logit_softcap or 0.0)
    if arch in ("gemma2", "gemma3", "phi3") and spec.sliding_window:
        w.add_sliding_window(spec.sliding_window)


def _permute_qk(rows: torch.Tensor | np.ndarray, n_head: int) -> Any:
    """HF (rotate-half) row order -> llama.cpp's interleaved pairs, per head."""
    r = rows.shape[0]
    idx = np.arange(r).reshape(n_head, 2, r // n_head // 2).swapaxes(1, 2).reshape(r)
    return rows[idx]


DenseType = QuantFormat  # GGUF_F32 | GGUF_F16 | GGUF_BF16


def _plan(model: ModelIR, dense: QuantFormat) -> list[tuple[str, str, tuple[int, ...], QuantFormat, int, Callable[[], np.ndarray]]]:
    """(IR name, gguf name, shape, format, nbytes, data thunk) of every exported tensor."""
    spec = model.spec
    arch = arch_name(spec)
    permuted = {}  # weight -> heads, for the rows llama.cpp rotates pairwise
    if arch in C.PERMUTE_QK_ARCHS:
        for lin in model.graph.linears():
            for part in lin.parts:
                if part.segments[0].role in (Role.Q, Role.K) and len(part.segments) == 1:
                    permuted[part.weight] = spec.num_heads if part.segments[0].role is Role.Q else spec.num_kv_heads
    norms = {w for node in model.graph for w in node.tensors() if isinstance(node, (RMSNorm, SkipRMSNorm, Attention))}
    plan = []
    for name in model.tensors.names():
        gname = gguf_name(name)
        if gname is None:
            raise UnsupportedError(f"tensor '{model.source_name(name)}' has no GGUF counterpart for architecture '{arch}'")
        shape = tuple(model.tensors.shape(name))
        perm_heads = permuted.get(name)
        norm_offset = spec.norm_offset if name in norms else 0.0
        if name in model.weights:
            q = model.weights[name]
            if q.format not in C.GGML_TYPE_IDS:
                raise UnsupportedError(f"'{name}' is quantized as {q.format.value}, which GGUF cannot store; use a GGUF mixture (quantize_gguf)")
            fmt = q.format
            nbytes = q.data.numel() * q.data.element_size()

            def thunk(q=q, perm_heads=perm_heads):
                data = q.data.contiguous().view(torch.uint8).reshape(q.shape[0], -1).numpy()
                return _permute_qk(data, perm_heads) if perm_heads else data
        else:
            fmt = dense if len(shape) == 2 else QuantFormat.GGUF_F32
            nbytes = int(np.prod(shape)) * {QuantFormat.GGUF_F32: 4}.get(fmt, 2)

            def thunk(name=name, fmt=fmt, perm_heads=perm_heads, norm_offset=norm_offset):
                t = model.dense(name).to(torch.float32)
                if norm_offset:
                    t = t + norm_offset
                if perm_heads:
                    t = _permute_qk(t, perm_heads)
                if fmt is QuantFormat.GGUF_F32:
                    return t.contiguous().numpy()
                if fmt is QuantFormat.GGUF_F16:
                    return t.to(torch.float16).contiguous().numpy()
                return t.to(torch.bfloat16).contiguous().view(torch.uint16).numpy()
        plan.append((name, gname, shape, fmt, nbytes, thunk))
    return plan


def _file_type(model: ModelIR, dense: QuantFormat) -> int:
    mixtures = {q.meta.get("mixture") for q in model.weights.values()} - {None}
    if len(mixtures) == 1:
        return C.FILE_TYPES.get(mixtures.pop(), 0)
    return C.FILE_TYPES[dense.value]


def export_gguf(model: ModelIR, out_file: Path, dense: QuantFormat = QuantFormat.GGUF_F16, tokenizer: TokenizerMeta | None = None) -> None:
    """Write the IR as a GGUF file llama.cpp loads: architecture metadata, tokenizer, and
    every tensor (GGUF-quantized weights as their packed blocks, the rest as `dense`
    for matrices and F32 for vectors)."""
    if dense not in (QuantFormat.GGUF_F32, QuantFormat.GGUF_F16, QuantFormat.GGUF_BF16):
        raise UnsupportedError(f"dense GGUF tensors can be f32, f16 or bf16, not {dense.value}")
    spec = model.spec
    arch = arch_name(spec)
    tok = tokenizer or read_tokenizer(model.source.path, model.source.config)
    plan = _plan(model, dense)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fw = GGUFFileWriter(out_file, arch)
    try:
        add_arch_metadata(fw.kv, spec, model.source.path.name, _file_type(model, dense))
        add_tokenizer(fw.kv, tok)
        for _, gname, shape, fmt, nbytes, _ in plan:
            fw.declare(gname, shape, fmt, nbytes)
        for _, gname, _, _, _, thunk in plan:
            fw.write(gname, thunk())
        fw.finish()
    finally:
        fw.abort()


GGUF_FILE = "model.gguf"
# the recipe's export dtype -> the GGUF type of the tensors left unquantized
_DENSE = {"fp32": QuantFormat.GGUF_F32, "fp16": QuantFormat.GGUF_F16, "bf16": QuantFormat.GGUF_BF16}


@register_exporter("gguf")
def _export_artifact(model: ModelIR, root: Path, options: dict[str, Any]) -> Path:
    path = root / GGUF_FILE
    export_gguf(model, path, dense=_DENSE[options.get("dtype", "fp16")])
    return path
