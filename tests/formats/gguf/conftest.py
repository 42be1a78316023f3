"""Fixtures: tiny checkpoints with a byte-level BPE tokenizer (llama.cpp loads their GGUF)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from gguf_helpers import add_byte_tokenizer, make_wide_llama  # noqa: E402


@pytest.fixture(scope="session")
def wide_llama(tmp_path_factory) -> Path:
    return make_wide_llama(tmp_path_factory.mktemp("wide") / "ckpt")


@pytest.fixture(scope="session")
def tiny_with_tokenizer(tiny_checkpoint):
    def make(model_type: str) -> Path:
        path = tiny_checkpoint(model_type)
        if not (path / "tokenizer.json").is_file():
            add_byte_tokenizer(path)
        return path

    return make
