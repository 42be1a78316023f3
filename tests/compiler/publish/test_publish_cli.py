"""`inferc publish` and `inferc pull` end to end: a summary on success, one line and a
documented exit code for each bad input."""

from __future__ import annotations

import shutil
import sys

import pytest
from test_publish_oci import _same_tree

from inferc.compiler.cli import main
from inferc.core.errors import ExitCode

pytestmark = pytest.mark.e2e


def _run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_publish_and_pull_on_the_command_line(artifact, tmp_path, capsys):
    reg = tmp_path / "registry"
    code, stdout, err = _run(["publish", artifact, "--to", f"file://{reg}#v1", "--quiet"], capsys)
    assert code == ExitCode.OK, err
    assert f"published  file://{reg}#v1" in stdout and "sha256:" in stdout and "verify" in stdout
    assert "[inferc] verify" in err
    code, stdout, err = _run(["pull", f"file://{reg}#v1", "--out", tmp_path / "out", "--quiet"], capsys)
    assert code == ExitCode.OK, err
    assert f"artifact: {tmp_path / 'out'}" in stdout
    _same_tree(artifact, tmp_path / "out")


def _flip(path):
    data = bytearray(path.read_bytes())
    data[7] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["publish", "{art}", "--to", "ftp://x/y"], ExitCode.USAGE, "unknown scheme 'ftp'"),
        (["publish", "{missing}", "--to", "file://{tmp}/r"], ExitCode.USAGE, "is not an artifact directory"),
        (["publish", "{tampered}", "--to", "file://{tmp}/r"], ExitCode.USAGE, "refusing to publish: {tampered}: hf/model.safetensors has sha256"),
        (["publish", "{art}", "--to", "oci://127.0.0.1:1/t@sha256:" + "0" * 64], ExitCode.USAGE, "publish to a tag"),
        (["publish", "{art}", "--to", "file://{tmp}/r", "--create"], ExitCode.USAGE, "apply to hf:// destinations only"),
        (["publish", "{art}"], ExitCode.USAGE, "Missing option '--to'"),
        (["publish", "{art}", "--to", "oci://u:secretpw@127.0.0.1:1/t:v"], ExitCode.USAGE, "must not carry credentials"),
        (["pull", "file://{tmp}/nothing", "--out", "{tmp}/o"], ExitCode.USAGE, "is not a registry folder"),
        (["pull", "file://{tmp}/r", "--out", "{art}"], ExitCode.USAGE, "already exists; pass --force"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_code(artifact, tmp_path, capsys, args, code, message):
    tampered = tmp_path / "tampered"
    shutil.copytree(artifact, tampered)
    _flip(tampered / "hf" / "model.safetensors")
    main(["publish", str(artifact), "--to", f"file://{tmp_path}/r", "--quiet"])
    capsys.readouterr()
    subst = {"{art}": str(artifact), "{missing}": str(tmp_path / "missing"), "{tampered}": str(tampered), "{tmp}": str(tmp_path)}

    def fill(s: str) -> str:
        for k, v in subst.items():
            s = s.replace(k, v)
        return s

    got, _, err = _run([fill(a) for a in args] + ["--quiet"], capsys)
    assert got == code, err
    assert fill(message) in err
    lines = [line for line in err.splitlines() if not line.startswith("[inferc] ")]
    assert len(lines) == 1 and "Traceback" not in err
    assert "secretpw" not in err


@pytest.mark.parametrize("module, uri", [("oras.provider", "oci://127.0.0.1:1/t:v"), ("huggingface_hub", "hf://a/b")])
def test_a_missing_client_library_names_its_install_command(artifact, capsys, monkeypatch, module, uri):
    monkeypatch.setitem(sys.modules, module, None)  # import of it raises ImportError
    code, _, err = _run(["publish", artifact, "--to", uri, "--quiet"], capsys)
    assert code == ExitCode.MISSING_DEPENDENCY
    assert 'pip install "inferc[publish]"' in err
