"""The ONNX Runtime backend: runs an exported model.onnx on the CPU.

The decode loop keeps the KV cache inside ONNX Runtime (IO binding): an `ort`-flavour
model gets one buffer per layer of the model's rotary length, bound as both past and
present, so GroupQueryAttention appends in place and nothing is copied per step; a
`standard`-flavour model (Concat in the graph) hands each step's present OrtValues to
the next step as its past, still without leaving ORT's memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inferc.core.errors import FormatError, require
from inferc.formats.onnx import constants as C
from inferc.runtime.backends import register_backend


@dataclass
class _Decode:
    length: int  # tokens in the cache
    cache: dict[str, Any]  # past input name -> OrtValue


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, path: Path, threads: int = 2, max_length: int | None = None, qdq_accuracy_level: int = 1) -> None:
        """qdq_accuracy_level: ONNX Runtime rewrites a standard-flavour DequantizeLinear ->
        MatMul into MatMulNBits at this accuracy level (1: fp32 activations, as the graph
        says; ORT's own default is 4, int8 activations)."""
        ort = require("onnxruntime", "onnxruntime", "running ONNX artifacts", "pip install 'inferc[onnx]'")
        self._ort = ort
        path = Path(path)
        model = path / C.MODEL_FILE if path.is_dir() else path
        if not model.is_file():
            raise FormatError(f"no ONNX model at '{model}'")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", str(qdq_accuracy_level))
        try:
            self.session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001  ORT raises its own exception types for bad files
            raise FormatError(f"ONNX Runtime cannot load '{model}': {str(exc).splitlines()[0]}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        genai = _genai_config(model.parent)
        self.shared_buffer = meta.get(C.META_FLAVOUR) == "ort" or bool(genai.get("search", {}).get("past_present_share_buffer"))
        self.max_length = max_length or int(meta.get(C.META_MAX_POSITIONS) or genai.get("search", {}).get("max_length", 2048))
        decoder = genai.get("model", {}).get("decoder", {})
        self._past = [(i.name, _dim(i.shape[1], decoder.get("num_key_value_heads")), _dim(i.shape[3], decoder.get("head_size")))
                      for i in self.session.get_inputs() if i.name.startswith("past_key_values.")]
        past_types = {i.type for i in self.session.get_inputs() if i.name.startswith("past_key_values.")}
        self._np_dtype = np.float16 if "tensor(float16)" in past_types else np.float32
        self._vocab = int(self.session.get_outputs()[0].shape[2])
        self._binding = self.session.io_binding()

    @property
    def vocab_size(self) -> int:
        return self._vocab

    @staticmethod
    def _present(past_name: str) -> str:
        return "present." + past_name[len("past_key_values."):]

    def _empty_cache(self, batch: int, length: int) -> dict[str, Any]:
        return {name: self._ort.OrtValue.ortvalue_from_numpy(np.zeros((batch, kv, length, hd), self._np_dtype))
                for name, kv, hd in self._past}

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        b, t = ids.shape
        feeds = {C.INPUT_IDS: ids.numpy().astype(np.int64), C.ATTENTION_MASK: np.ones((b, t), np.int64)}
        feeds.update({name: np.zeros((b, kv, 0, hd), self._np_dtype) for name, kv, hd in self._past})
        return torch.from_numpy(self.session.run([C.LOGITS], feeds)[0])

    def _run(self, state: _Decode, ids: np.ndarray) -> torch.Tensor:
        """ids [1, t] after state.length cached tokens -> logits of the last position [1, vocab]."""
        io = self._binding
        io.clear_binding_inputs()
        io.clear_binding_outputs()
        total = state.length + ids.shape[1]
        if self.shared_buffer and total > self.max_length:
            raise ValueError(f"{total} tokens exceed the model's {self.max_length} positions")
        io.bind_cpu_input(C.INPUT_IDS, ids)
        io.bind_cpu_input(C.ATTENTION_MASK, np.ones((1, total), np.int64))
        io.bind_output(C.LOGITS, "cpu")
        bound = [C.LOGITS]
        for name, value in state.cache.items():
            io.bind_ortvalue_input(name, value)
            if self.shared_buffer:
                io.bind_ortvalue_output(self._present(name), value)
            else:
                io.bind_output(self._present(name), "cpu")
            bound.append(self._present(name))
        self.session.run_with_iobinding(io)
        outs = dict(zip(bound, io.get_outputs()))
        if not self.shared_buffer:
            state.cache = {name: outs[self._present(name)] for name in state.cache}
        state.length = total
        return torch.from_numpy(outs[C.LOGITS].numpy()[:, -1].copy())

    def start(self, ids: torch.Tensor) -> tuple[Any, torch.Tensor]:
        state = _Decode(0, self._empty_cache(1, self.max_length if self.shared_buffer else 0))
        return state, self._run(state, ids.numpy().astype(np.int64))

    def step(self, state: Any, token: int) -> torch.Tensor:
        return self._run(state, np.array([[int(token)]], np.int64))

    def close(self) -> None:
        self._binding = None
        self.session = None


def _genai_config(folder: Path) -> dict:
    """onnxruntime-genai's genai_config.json beside the model ({} when there is none): a
    model written by another tool says there what its symbolic cache axes are."""
    path = folder / C.GENAI_CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FormatError(f"cannot read '{path}': {exc}") from exc


def _dim(value: int | str, fallback: int | None) -> int:
    if isinstance(value, int):
        return value
    if fallback is None:
        raise FormatError(f"the cache axis '{value}' is symbolic and no genai_config.json beside the model gives it")
    return int(fallback)


def _is_onnx(path: Path) -> bool:
    return (path.is_file() and path.suffix == ".onnx") or (path.is_dir() and (path / "model.onnx").is_file())


@register_backend("onnxruntime", runs=_is_onnx)
def _open_onnx(path: Path, device: str) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(path)
