"""TensorRT engines in `inferc build`: explicit exports refused at plan time (before any
weight is read) when no builder or no tensor cores fit; the engine a GPU target adds on its
own is built where TensorRT-RTX covers the target and otherwise listed as skipped, with the
reason, in the report, the manifest and on the terminal."""

from __future__ import annotations

import json
import textwrap

import pytest

from inferc.compiler.cli import main
from inferc.core.errors import ExitCode
from inferc.formats.tensorrt import builder as B
from inferc.formats.tensorrt import constants as C

pytestmark = pytest.mark.e2e

RECIPE = """\
version: 1
name: tiny-trt
quant: {QUANT}
pipeline: [{PASS}]
export: [{format: tensorrt, max_batch: 1, max_seq_len: 32, max_context: 64}]
eval: {enabled: false}
"""
PASSES = {"fp8": "{pass: quantize_fp8, options: {activations: static}}", "nvfp4": "{pass: quantize_rtn, options: {format: nvfp4}}",
          "rtn": "{pass: quantize_rtn, options: {format: int4, group_size: 32}}"}


def _recipe(tmp_path, quant):
    p = tmp_path / "recipe.yaml"
    p.write_text(textwrap.dedent(RECIPE.replace("{QUANT}", quant).replace("{PASS}", PASSES[quant])))
    return p


def _run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def no_full_tensorrt(monkeypatch):
    real = B._import
    monkeypatch.setattr(B, "_import", lambda m: None if m == C.TENSORRT_MODULE else real(m))


def test_explicit_engine_for_h100_fails_at_plan_naming_the_package(tmp_path, capsys, no_full_tensorrt):
    missing = tmp_path / "no-such-model"  # never read: the plan step refuses first
    code, _, err = _run(["build", "--model", missing, "--recipe", _recipe(tmp_path, "fp8"), "--target", "h100", "--out",
                         tmp_path / "art"], capsys)
    assert code == ExitCode.MISSING_DEPENDENCY
    line = err.strip().splitlines()[-1]
    assert line.startswith("inferc:") and "'tensorrt' package" in line and "TensorRT-RTX has no sm90" in line
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize("target,quant,reason", [("rtx3090", "fp8", "FP8 tensor cores need sm89 or newer"),
                                                 ("l40s", "nvfp4", "FP4 tensor cores need Blackwell")])
def test_precisions_the_target_lacks_are_refused_at_plan_even_when_emulated(tmp_path, capsys, target, quant, reason):
    recipe = _recipe(tmp_path, quant)
    for extra in ([], ["--emulate"]):  # emulation may stand in for an HF checkpoint, never for an engine
        code, _, err = _run(["build", "--model", tmp_path / "no-such-model", "--recipe", recipe, "--target", target, *extra], capsys)
        assert code == ExitCode.UNSUPPORTED, err
        assert reason in err.strip().splitlines()[-1]


def test_default_h100_build_lists_the_engine_as_skipped(tiny_checkpoint, tmp_path, capsys, no_full_tensorrt):
    out = tmp_path / "art"
    code, stdout, err = _run(["build", "--model", tiny_checkpoint("llama"), "--target", "h100", "--quant", "bf16", "--no-eval",
                              "--quiet", "--out", out], capsys)
    assert code == ExitCode.OK, err
    assert "export tensorrt: skipped (a TensorRT engine for sm90" in err
    assert "tensorrt export" in stdout and "skipped: a TensorRT engine for sm90" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    skipped = [e for e in manifest["exports"] if e["format"] == "tensorrt"]
    assert len(skipped) == 1 and "'tensorrt' package" in skipped[0]["skipped"]
    report = json.loads((out / "report.json").read_text())
    assert report["skipped_exports"] == [{"format": "tensorrt", "reason": skipped[0]["skipped"]}]
    assert "## Skipped exports" in (out / "report.md").read_text()
    code, _, err = _run(["eval", out, "--export", "tensorrt"], capsys)
    assert code == ExitCode.UNSUPPORTED and "its tensorrt export was skipped at build time" in err


def test_default_l40s_build_names_its_engine_in_the_manifest(tiny_checkpoint, tmp_path, capsys):
    pytest.importorskip(C.RTX_MODULE, reason="TensorRT-RTX is not installed (pip install 'inferc[tensorrt-rtx]'); CI installs it")
    out = tmp_path / "art"
    code, stdout, err = _run(["build", "--model", tiny_checkpoint("llama"), "--target", "l40s", "--quant", "rtn", "--no-eval",
                              "--quiet", "--out", out], capsys)
    assert code == ExitCode.OK, err
    manifest = json.loads((out / "manifest.json").read_text())
    engine = [e for e in manifest["exports"] if e["format"] == "tensorrt"]
    assert engine == [{"format": "tensorrt", "path": "tensorrt", "engine": "tensorrt/model.engine",
                       "build_info": "tensorrt/build_info.json"}]
    listed = {f["path"] for f in manifest["files"]}
    assert {"tensorrt/model.engine", "tensorrt/build_info.json", "tensorrt/model.onnx", "hf/model.safetensors"} <= listed
    info = json.loads((out / "tensorrt" / "build_info.json").read_text())
    assert info["compute_capability"] == "sm89" and info["precisions"]["linear"]["mlp.down"]["weights"] == "int4"
    assert "skipped" not in stdout
    assert "tensorrt/model.engine:" in stdout and "engine for sm89 by tensorrt-rtx" in stdout
    assert "## Exports" in (out / "report.md").read_text()
