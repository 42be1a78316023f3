"""Distributed calibration as real processes over gloo: 2 and 3 ranks build the same
artifact as 1 rank (GPTQ, AWQ, FP8 static), and a rank that dies or hangs mid-walk ends
the whole build within the process group's timeout, leaving no artifact."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from inferc.compiler.launch import launch
from inferc.core.errors import ExitCode

pytestmark = pytest.mark.e2e

_PASSES = {
    "gptq": "quantize_gptq\n    options: {format: int4, group_size: 32, observer: mse, batch_size: 2}",
    "awq": "quantize_awq\n    options: {format: int4, group_size: 32, batch_size: 2, search_tokens: 128}",
    "fp8": "quantize_fp8\n    options: {activations: static}",
}
_RECIPE = """\
version: 1
name: tiny-{quant}
quant: {quant}
target: h100
calibration: {{num_sequences: 9, seq_len: 32, seed: 0, shards: 3, batch_size: 2}}
pipeline:
  - pass: {pipeline}
export: [{{format: hf}}]
eval: {{enabled: false}}
"""
_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same per-batch arithmetic in every process
_WORKER = Path(__file__).with_name("dist_worker.py")


def _recipe(tmp_path: Path, quant: str) -> Path:
    path = tmp_path / f"{quant}.yaml"
    path.write_text(textwrap.dedent(_RECIPE.format(quant=quant, pipeline=_PASSES[quant])))
    return path


def _worker(ckpt: Path, out_root: Path, timeout_s: float, recipes: list[Path], *extra: str) -> list[str]:
    return [sys.executable, str(_WORKER), str(ckpt), str(out_root), str(timeout_s), *map(str, recipes), *extra]


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / "hf").rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tiny_checkpoint, tmp_path_factory):
    """built(ranks) -> {quant: the exported hf/ files}, the three recipes built one after
    the other by the same ranks (one process alone for ranks=1), each set made once."""
    cache: dict[int, dict[str, dict[str, bytes]]] = {}
    root = tmp_path_factory.mktemp("dist")
    recipes = [_recipe(root, q) for q in _PASSES]

    def make(ranks: int) -> dict[str, dict[str, bytes]]:
        if ranks not in cache:
            out = root / f"ranks-{ranks}"
            cmd = _worker(tiny_checkpoint("llama"), out, 60, recipes)
            if ranks == 1:
                run = subprocess.run(cmd, env=_ENV, capture_output=True, text=True, timeout=300)
                assert run.returncode == 0, run.stderr[-3000:]
            else:
                assert launch(ranks, cmd, grace_s=90) == (ExitCode.OK, None)
            cache[ranks] = {q: _files(out / q) for q in _PASSES}
        return cache[ranks]

    return make


@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("quant", list(_PASSES))
def test_ranks_build_the_same_bytes_as_one_process(built, monkeypatch, quant, ranks):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    one, many = built(1)[quant], built(ranks)[quant]
    assert any(name.endswith(".safetensors") for name in one)
    assert one.keys() == many.keys()
    for name in one:
        assert one[name] == many[name], f"{quant}: {name} differs between 1 and {ranks} ranks"


def test_inferc_build_distributed_writes_the_one_process_artifact(built, tiny_checkpoint, tmp_path):
    """The CLI's launcher (`--distributed 2`): rank 0 alone prints and writes; same bytes."""
    cmd = [sys.executable, "-m", "inferc.compiler.cli", "build", "--model", str(tiny_checkpoint("llama")),
           "--recipe", str(_recipe(tmp_path, "fp8")), "--out", str(tmp_path / "out"), "--quiet", "--distributed", "2"]
    run = subprocess.run(cmd, env=_ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("artifact:") == 1
    assert _files(tmp_path / "out") == built(1)["fp8"]


@pytest.mark.parametrize("signal_name, timeout_s", [("KILL", 30), ("STOP", 5)])
def test_a_rank_dying_or_hanging_mid_walk_fails_the_build_in_bounded_time(tiny_checkpoint, tmp_path, capfd, monkeypatch,
                                                                           signal_name, timeout_s):
    """Rank 1 is killed (or stopped) after its first layer: rank 0's next collective fails
    (a closed connection, or the timeout), it removes its temporary and reports one line."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "gptq"
    start = time.monotonic()
    cmd = _worker(tiny_checkpoint("llama"), tmp_path, timeout_s, [_recipe(tmp_path, "gptq")], "--signal", "1", "1", signal_name)
    code, failure = launch(2, cmd, grace_s=timeout_s + 30)
    elapsed = time.monotonic() - start
    assert code == ExitCode.DISTRIBUTED
    assert failure == ("rank 1 was killed by SIGKILL" if signal_name == "KILL" else "rank 0 exited with code 7")
    assert elapsed < timeout_s + 40  # start-up of two processes, then at most the timeout
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("inferc: error:")]
    assert len(errors) == 1 and errors[0].startswith("inferc: error: rank 0: ") and "no artifact was written" in errors[0]
    if signal_name == "STOP":
        assert f"past the {timeout_s} s timeout" in errors[0] and "Timed out" in errors[0]
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".gptq") and not p.name.endswith("lock")] == []


def test_more_ranks_than_shards_is_one_line_per_rank_and_a_summary(tiny_checkpoint, tmp_path):
    recipe = _recipe(tmp_path, "fp8")
    run = subprocess.run([sys.executable, "-m", "inferc.compiler.cli", "build", "--model", str(tiny_checkpoint("llama")),
                          "--recipe", str(recipe), "--out", str(tmp_path / "out"), "--quiet", "--distributed", "4"],
                         env=_ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode == ExitCode.USAGE, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert "Traceback" not in run.stderr
    assert any("4 ranks but the calibration set has only 3 shard(s)" in line for line in lines)
    assert lines[-1].startswith("inferc: error: distributed build failed: rank ")
    assert not (tmp_path / "out").exists()
