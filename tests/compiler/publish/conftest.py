"""Fixtures: one real `inferc build` of a tiny model per session, private copies of it to
tamper with, real OCI registries (with and without basic auth), and no ambient
credentials from the machine running the tests."""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from registry_server import BINARY, MISSING, RegistryServer, bcrypt_htpasswd  # noqa: E402

from inferc.compiler.publish.retry import RetryPolicy  # noqa: E402

USER = "alice"
PASSWORD = "pw-Zq8-never-printed"
FAST = RetryPolicy(attempts=2, initial_delay_s=0.01, request_timeout_s=10)

_RECIPE = """\
version: 1
name: tiny-fp8
quant: fp8
target: h100
calibration: {num_sequences: 2, seq_len: 32, seed: 0}
pipeline:
  - pass: quantize_fp8
    options: {activations: static}
export: [{format: hf}]
eval: {num_samples: 2, sample_len: 32, speed: {prompt_len: 8, gen_len: 4, repeats: 2}}
"""


@pytest.fixture(scope="session")
def built_artifact(tiny_checkpoint, tmp_path_factory) -> Path:
    """What `inferc build` writes for a tiny llama: FP8, HF export, evaluated."""
    from inferc.compiler.cli import main

    root = tmp_path_factory.mktemp("built")
    recipe = root / "recipe.yaml"
    recipe.write_text(textwrap.dedent(_RECIPE))
    out = root / "tiny-fp8-h100"
    code = main(["build", "--model", str(tiny_checkpoint("llama")), "--recipe", str(recipe), "--out", str(out), "--quiet"])
    assert code == 0
    return out


@pytest.fixture
def artifact(built_artifact, tmp_path) -> Path:
    """A private copy of the built artifact, free to tamper with."""
    return Path(shutil.copytree(built_artifact, tmp_path / "artifact"))


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch, tmp_path):
    for var in ("INFERC_REGISTRY_USERNAME", "INFERC_REGISTRY_PASSWORD", "ORAS_USER", "ORAS_PASS", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    empty = tmp_path / "no-docker-config"
    empty.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(empty))


def _require_registry() -> None:
    if not Path(BINARY).exists():
        pytest.skip(MISSING)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A registry without auth, shared by a test module."""
    _require_registry()
    server = RegistryServer(tmp_path_factory.mktemp("registry")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    """A registry with htpasswd basic auth: USER / PASSWORD (bcrypt)."""
    _require_registry()
    root = tmp_path_factory.mktemp("auth-registry")
    server = RegistryServer(root, htpasswd=bcrypt_htpasswd(root / "htpasswd", USER, PASSWORD)).start()
    yield server
    server.stop()


@pytest.fixture
def own_registry(tmp_path):
    """A registry of the test's own, to kill and restart."""
    _require_registry()
    (tmp_path / "own-registry").mkdir()
    server = RegistryServer(tmp_path / "own-registry").start()
    yield server
    server.stop()
