"""`inferc build` as real processes: --force replaces only inferc's own artifacts, a second
build into a locked --out is refused, and SIGTERM / SIGINT / SIGKILL leave no temporary behind
(the next build removes one a killed build left)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from inferc.core.errors import ExitCode

pytestmark = pytest.mark.e2e

_RECIPE = """\
version: 1
name: {name}
quant: fp8
target: h100
calibration: {{num_sequences: 2, seq_len: 32, seed: 0}}
pipeline:
  - pass: quantize_fp8
    options: {{activations: static}}
export: [{{format: hf}}]
eval: {{num_samples: 2, sample_len: 32, speed: {{prompt_len: 8, gen_len: {gen_len}, repeats: {repeats}}}}}
"""
_TIMEOUT = 120


@pytest.fixture
def recipe(tmp_path):
    """recipe(name, gen_len, repeats): the evaluation's speed loop sets how long a build runs after export."""

    def make(name: str = "tiny-fp8", gen_len: int = 4, repeats: int = 1) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(textwrap.dedent(_RECIPE.format(name=name, gen_len=gen_len, repeats=repeats)))
        return path

    return make


def _command(ckpt: Path, recipe: Path, out: str | Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "inferc.compiler.cli", "build", "--model", str(ckpt), "--recipe", str(recipe),
            "--out", str(out), "--quiet", *extra]


_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny models: threads only contend for the machine's cores


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a shell's background job would start with it ignored


class _Build:
    """A build process; its stderr goes to a file, read while it runs."""

    def __init__(self, command: list[str], cwd: Path, log: Path) -> None:
        self.log = log
        with open(log, "w") as fh:
            self.proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=fh, env=_ENV,
                                         preexec_fn=_default_sigint)
        self.pid = self.proc.pid

    def wait_for(self, marker: str) -> None:
        """Return once the build has announced the step `marker`."""
        deadline = time.monotonic() + _TIMEOUT
        while marker not in self.log.read_text().splitlines():
            if self.proc.poll() is not None:
                pytest.fail(f"the build ended (code {self.proc.returncode}) before '{marker}':\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no '{marker}' after {_TIMEOUT} s")
            time.sleep(0.005)

    def end(self) -> tuple[int, str]:
        return self.proc.wait(timeout=_TIMEOUT), self.log.read_text()


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=_TIMEOUT, env=_ENV,
                          preexec_fn=_default_sigint)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("[inferc] ")]


def _tree(root: Path) -> dict[str, bytes | None]:
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".inferc-" in p.name)


def test_force_never_replaces_what_is_not_an_inferc_artifact(tiny_checkpoint, recipe, tmp_path):
    ckpt, rec = tiny_checkpoint("llama"), recipe()
    home = tmp_path / "home"
    cwd = home / "project"
    (cwd / "notart").mkdir(parents=True)
    (cwd / "notart" / "thesis.tex").write_text("years of work")
    (cwd / "afile").write_text("mine too")
    (cwd / "src.py").write_text("print('hello')")
    cases = {
        ".": "is the current directory", "..": "is a parent of the current directory", "/": "is the root directory",
        "notart": "is not an inferc artifact", "afile": "is a file, not an artifact folder",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    before = _tree(home)
    builds = {out: _Build(_command(ckpt, rec, out, "--no-eval", "--force"), cwd, logs / f"{i}.txt")  # all at once: quicker
              for i, out in enumerate(cases)}
    for out, message in cases.items():
        code, stderr = builds[out].end()
        lines = _error_lines(stderr)
        assert code == ExitCode.USAGE and len(lines) == 1 and message in lines[0], (out, stderr)
    assert _tree(home) == before  # every file as it was; no lock, no temporary anywhere
    assert not [p for p in Path("/").iterdir() if ".inferc-" in p.name]


def test_force_replaces_an_empty_folder_then_an_artifact_even_an_older_one(tiny_checkpoint, recipe, tmp_path):
    ckpt = tiny_checkpoint("llama")
    outs = tmp_path / "outs"
    (outs / "art").mkdir(parents=True)
    first = _run(_command(ckpt, recipe("first"), outs / "art", "--no-eval", "--force"), tmp_path)
    assert first.returncode == ExitCode.OK, first.stderr
    manifest_path = outs / "art" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["generator"] == "inferc" and manifest["recipe"]["name"] == "first"
    del manifest["generator"]  # as an artifact written before the field was added
    manifest_path.write_text(json.dumps(manifest))

    second = _run(_command(ckpt, recipe("second"), outs / "art", "--no-eval", "--force"), tmp_path)
    assert second.returncode == ExitCode.OK, second.stderr
    assert json.loads(manifest_path.read_text())["recipe"]["name"] == "second"
    assert [p.name for p in outs.iterdir()] == ["art"]


def test_a_second_build_into_a_locked_output_is_refused_at_once(tiny_checkpoint, recipe, tmp_path):
    ckpt = tiny_checkpoint("llama")
    out = tmp_path / "outs" / "art"
    first = _Build(_command(ckpt, recipe("first", gen_len=128, repeats=16), out), tmp_path, tmp_path / "first.txt")
    first.wait_for("[inferc] load")  # announced once the lock is held
    os.kill(first.pid, signal.SIGSTOP)  # the first build keeps its lock and makes no progress
    try:
        assert (out.parent / ".art.inferc-lock").read_text().strip() == str(first.pid)
        second = _run(_command(ckpt, recipe("second"), out, "--no-eval"), tmp_path)  # a wait would hit the timeout
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode == ExitCode.USAGE, second.stderr
    assert _error_lines(second.stderr) == [
        f"inferc: error: output directory '{out}' is being built by another inferc build (process {first.pid}); "
        "wait for it to end, or choose another --out"
    ]
    code, stderr = first.end()
    assert code == ExitCode.OK, stderr
    assert json.loads((out / "manifest.json").read_text())["recipe"]["name"] == "first"
    assert [p.name for p in out.parent.iterdir()] == ["art"]


@pytest.mark.parametrize("sig, code, message", [(signal.SIGTERM, ExitCode.TERMINATED, "inferc: interrupted (SIGTERM)"),
                                                (signal.SIGINT, ExitCode.INTERRUPTED, "inferc: interrupted")])
def test_a_signalled_build_removes_its_temporary_and_says_so(tiny_checkpoint, recipe, tmp_path, sig, code, message):
    out = tmp_path / "outs" / "art"
    build = _Build(_command(tiny_checkpoint("llama"), recipe(gen_len=200, repeats=200), out), tmp_path, tmp_path / "log.txt")
    build.wait_for("[inferc] evaluate")  # exported into the temporary; the speed loop runs for seconds
    assert (out.parent / f".art.inferc-tmp-{build.pid}" / "hf" / "model.safetensors").is_file()
    os.kill(build.pid, sig)
    got, stderr = build.end()
    assert got == code, stderr
    assert _error_lines(stderr) == [message] and "Traceback" not in stderr
    assert not out.parent.exists()  # no temporary, no lock, not even the folder the build made for them


def test_the_next_build_removes_what_a_killed_one_left(tiny_checkpoint, recipe, tmp_path):
    ckpt = tiny_checkpoint("llama")
    out = tmp_path / "outs" / "art"
    killed = _Build(_command(ckpt, recipe(gen_len=200, repeats=200), out), tmp_path, tmp_path / "killed.txt")
    killed.wait_for("[inferc] evaluate")
    os.kill(killed.pid, signal.SIGKILL)
    assert killed.end()[0] == -signal.SIGKILL
    assert _leftovers(out.parent) == [".art.inferc-lock", f".art.inferc-tmp-{killed.pid}"]

    nxt = _Build(_command(ckpt, recipe(gen_len=128, repeats=16), out), tmp_path, tmp_path / "next.txt")
    nxt.wait_for("[inferc] load")  # stale temporaries are removed at plan time, under the lock
    os.kill(nxt.pid, signal.SIGSTOP)
    try:
        assert _leftovers(out.parent) == [".art.inferc-lock", f".art.inferc-tmp-{nxt.pid}"]  # only its own
    finally:
        os.kill(nxt.pid, signal.SIGCONT)
    code, stderr = nxt.end()
    assert code == ExitCode.OK, stderr
    assert [p.name for p in out.parent.iterdir()] == ["art"]
