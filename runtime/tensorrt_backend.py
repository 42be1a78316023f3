"""The TensorRT backend: runs a built engine (`tensorrt/model.engine`) on an NVIDIA GPU,
through TensorRT's documented runtime API (full TensorRT or TensorRT-RTX, whichever built
it, as build_info.json says).

Device buffers are torch CUDA tensors whose addresses are bound with `set_tensor_address`;
each call picks the engine's optimization profile that covers its shapes (`prefill`: a
prompt on an empty cache; `decode`: one token after a cache) and runs `execute_async_v3`
on one CUDA stream. The KV cache goes in as `past_key_values.*` and comes back as
`present.*`, which the next step binds as its past: it never leaves the GPU.

It runs only where a GPU of the engine's compute capability and the builder's package meet;
elsewhere opening it raises UnsupportedError or MissingDependencyError with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from inferc.core.errors import FormatError, UnsupportedError, require
from inferc.formats.onnx import constants as OC
from inferc.formats.tensorrt import constants as C
from inferc.runtime.backends import register_backend

Shape = tuple[int, ...]

_MODULES = {"tensorrt": (C.TENSORRT_MODULE, C.TENSORRT_PACKAGE, C.TENSORRT_INSTALL),
            "tensorrt-rtx": (C.RTX_MODULE, C.RTX_PACKAGE, C.RTX_INSTALL)}


def _parse_shape(text: str) -> Shape:
    return tuple(int(d) for d in text.split("x")) if text else ()


def profile_for(profiles: list[dict[str, Any]], shapes: dict[str, Shape]) -> int:
    """The index of the first optimization profile (as build_info.json lists them) whose
    min..max range holds every given input shape; UnsupportedError naming the limits if none."""
    for i, p in enumerate(profiles):
        ok = True
        for name, shape in shapes.items():
            lo, _, hi = (_parse_shape(s.strip()) for s in p["shapes"][name].split("/"))
            ok &= len(shape) == len(lo) and all(a <= d <= b for a, d, b in zip(lo, shape, hi))
        if ok:
            return i
    ranges = "; ".join(f"{p['name']}: {OC.INPUT_IDS} {p['shapes'][OC.INPUT_IDS]}, {OC.ATTENTION_MASK} {p['shapes'][OC.ATTENTION_MASK]}"
                       for p in profiles)
    got = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in shapes.items() if k in (OC.INPUT_IDS, OC.ATTENTION_MASK))
    raise UnsupportedError(f"no optimization profile of the engine covers {got} ({ranges}); rebuild it with larger "
                           "max_batch / max_seq_len / max_context")


@dataclass
class _Decode:
    length: int  # tokens in the cache
    cache: dict[str, torch.Tensor]  # past input name -> device tensor [1, kv, length, hd]


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, path: Path, device: str = "cuda") -> None:
        path = Path(path)
        part = path if path.is_dir() else path.parent
        info_path, engine_path = part / C.BUILD_INFO_FILE, part / C.ENGINE_FILE
        if not engine_path.is_file() or not info_path.is_file():
            raise FormatError(f"no TensorRT engine with its {C.BUILD_INFO_FILE} at '{part}'")
        self.info = json.loads(info_path.read_text())
        flavour, arch = self.info["builder"]["flavour"], self.info["compute_capability"]
        module, package, install = _MODULES[flavour]
        trt = require(module, package, f"running a {flavour} engine", install)
        if not torch.cuda.is_available():
            raise UnsupportedError(f"the TensorRT backend runs engines on an NVIDIA GPU ({arch}, as built); this machine has "
                                   "no CUDA GPU (torch.cuda.is_available() is False)")
        major, minor = torch.cuda.get_device_capability()
        if f"sm{10 * major + minor}" != arch:
            raise UnsupportedError(f"the engine was built for {arch}; this GPU is sm{10 * major + minor}: rebuild for it")
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise FormatError(f"{flavour} cannot deserialize '{engine_path}' (built by {self.info['builder']['version']})")
        self.context = self.engine.create_execution_context()
        self.device = torch.device("cuda")
        self.stream = torch.cuda.Stream(self.device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self._past = [n for n in names if n.startswith("past_key_values.")]
        self._kv_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self._past[0])) if self._past else torch.float16
        self._kv_dims = {n: (int(self.engine.get_tensor_shape(n)[1]), int(self.engine.get_tensor_shape(n)[3])) for n in self._past}
        self._vocab = int(self.engine.get_tensor_shape(OC.LOGITS)[2])
        self._profile = -1
        self._empty = torch.zeros(1, dtype=torch.uint8, device=self.device)  # an address for zero-volume tensors

    @property
    def vocab_size(self) -> int:
        return self._vocab

    def _bind(self, name: str, t: torch.Tensor) -> None:
        self.context.set_tensor_address(name, t.data_ptr() if t.numel() else self._empty.data_ptr())

    def _execute(self, ids: torch.Tensor, past: dict[str, torch.Tensor], past_len: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """ids [b, t] after past_len cached tokens -> logits [b, t, vocab] and the presents."""
        b, t = ids.shape
        ids = ids.to(self.device, torch.int64).contiguous()
        mask = torch.ones((b, past_len + t), dtype=torch.int64, device=self.device)
        shapes: dict[str, Shape] = {OC.INPUT_IDS: (b, t), OC.ATTENTION_MASK: (b, past_len + t)}
        shapes.update({n: tuple(past[n].shape) for n in self._past})
        profile = profile_for(self.info["optimization_profiles"], shapes)
        ctx, stream = self.context, self.stream.cuda_stream
        if profile != self._profile:
            ctx.set_optimization_profile_async(profile, stream)
            self._profile = profile
        for name, shape in shapes.items():
            ctx.set_input_shape(name, shape)
        self._bind(OC.INPUT_IDS, ids)
        self._bind(OC.ATTENTION_MASK, mask)
        for n in self._past:
            self._bind(n, past[n])
        logits = torch.empty((b, t, self._vocab), dtype=torch.float32, device=self.device)
        self._bind(OC.LOGITS, logits)
        present = {}
        for n in self._past:
            kv, hd = self._kv_dims[n]
            present[n] = torch.empty((b, kv, past_len + t, hd), dtype=self._kv_dtype, device=self.device)
            self._bind("present." + n[len("past_key_values."):], present[n])
        torch.cuda.current_stream(self.device).synchronize()  # inputs written on torch's stream
        if not ctx.execute_async_v3(stream):
            raise FormatError("TensorRT's execute_async_v3 failed (see its log)")
        self.stream.synchronize()
        return logits, present

    def _empty_cache(self, b: int) -> dict[str, torch.Tensor]:
        return {n: torch.zeros((b, *self._kv_dims[n][:1], 0, self._kv_dims[n][1]), dtype=self._kv_dtype, device=self.device)
                for n in self._past}

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        logits, _ = self._execute(ids, self._empty_cache(ids.shape[0]), 0)
        return logits.cpu()

    def start(self, ids: torch.Tensor) -> tuple[Any, torch.Tensor]:
        logits, present = self._execute(ids, self._empty_cache(1), 0)
        return _Decode(ids.shape[1], present), logits[:, -1].cpu()

    def step(self, state: Any, token: int) -> torch.Tensor:
        ids = torch.tensor([[int(token)]], dtype=torch.int64)
        logits, state.cache = self._execute(ids, state.cache, state.length)
        state.length += 1
        return logits[:, -1].cpu()

    def close(self) -> None:
        self.context = None
        self.engine = None


def _torch_dtype(trt: Any, dt: Any) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16}
    if dt not in table:
        raise FormatError(f"the engine's KV cache is {dt}; the TensorRT backend takes float32, float16 or bfloat16")
    return table[dt]


def _is_engine(path: Path) -> bool:
    part = path if path.is_dir() else path.parent
    return (part / C.ENGINE_FILE).is_file() and (path.is_dir() or path.name == C.ENGINE_FILE)


@register_backend("tensorrt", runs=_is_engine, priority=1)  # before onnxruntime: the folder holds model.onnx too
def _open_engine(path: Path, device: str) -> TensorRTBackend:
    return TensorRTBackend(path)
