"""The CLI end to end on a tiny model: an artifact, and one clear line + exit code per error."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import textwrap
from pathlib import Path

import pytest

import inferc.compiler.cli as cli_module
from inferc.compiler.cli import main
from inferc.core.errors import ExitCode, Terminated

pytestmark = pytest.mark.e2e
sys.path.insert(0, str(Path(__file__).parents[1] / "formats" / "gguf"))  # gguf_helpers: a tokenizer llama.cpp loads

RECIPE = """\
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
gates: {GATES}
"""


def _recipe(tmp_path, gates="{kld_max: 1.0}"):
    p = tmp_path / "recipe.yaml"
    p.write_text(textwrap.dedent(RECIPE.replace("{GATES}", gates)))
    return p


def _run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_build_writes_a_complete_artifact(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "art"
    code, stdout, err = _run(["build", "--model", tiny_checkpoint("llama"), "--recipe", _recipe(tmp_path), "--out", out, "--quiet"], capsys)
    assert code == ExitCode.OK, err
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"]}
    assert {"hf/config.json", "hf/model.safetensors", "report.json", "report.md"} <= listed
    assert manifest["calibration"]["sha256"] and manifest["source"]["sha256"]
    assert manifest["recipe"]["pipeline"][0]["pass"] == "quantize_fp8"
    report = json.loads((out / "report.json").read_text())
    assert report["quality"]["kld_mean"] >= 0 and report["speed"]["decode_tok_s"] > 0
    assert any(p["name"] == "pass quantize_fp8" for p in report["passes"])
    assert "KL divergence" in stdout
    assert not list(tmp_path.glob(".art.inferc-tmp-*"))  # no temporary left behind
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "hf" / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask  # not safetensors' 0600

    code, _, err = _run(["build", "--model", tiny_checkpoint("llama"), "--recipe", _recipe(tmp_path), "--out", out], capsys)
    assert code == ExitCode.USAGE and "already exists; pass --force" in err

    code, stdout, err = _run(["inspect", out], capsys)
    assert code == ExitCode.OK and "fp8_e4m3" in stdout

    code, stdout, err = _run(["eval", out, "--chunks", "1", "--no-speed"], capsys)
    assert code == ExitCode.OK, err
    assert "KL divergence" in stdout
    assert [line for line in err.splitlines() if line.startswith("[inferc] ")] == [
        "[inferc] load", "[inferc] data", "[inferc] quality"]  # it says what it is doing
    assert "255 tokens (1 x 256, method full) of held-out text sampled from the model (no corpus), 1x256 tokens" in stdout


def test_failed_gate_exits_with_its_own_code_and_keeps_the_artifact(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "art"
    code, stdout, err = _run(
        ["build", "--model", tiny_checkpoint("llama"), "--recipe", _recipe(tmp_path, "{kld_max: 0.0, top1_min: 1.0}"), "--out", out, "--quiet"],
        capsys,
    )
    assert code == ExitCode.GATE_FAILED
    assert "gates failed: kld_max" in err and "Traceback" not in err
    assert (out / "report.json").is_file() and "FAIL" in stdout


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["build", "--model", "{missing}", "--target", "h100", "--quant", "fp8"], ExitCode.USAGE, "does not exist"),
        (["build", "--model", "{noconfig}", "--target", "h100", "--quant", "fp8"], ExitCode.USAGE, "has no config.json"),
        (["build", "--model", "{unsupported}", "--target", "h100", "--quant", "fp8"], ExitCode.UNSUPPORTED, "model_type 'bert' is not supported"),
        (["build", "--model", "{tiny}", "--target", "a100", "--quant", "fp8"], ExitCode.UNSUPPORTED, "cannot run natively on --target a100"),
        (["build", "--model", "{tiny}", "--target", "tpu"], ExitCode.UNSUPPORTED, "unknown target 'tpu'"),
        (["build", "--model", "{tiny}", "--recipe", "{badrecipe}"], ExitCode.USAGE, "unknown key 'pipline'"),
        (["recipe", "validate", "{badrecipe}"], ExitCode.USAGE, "unknown key 'pipline'"),
        (["recipe", "show", "int2"], ExitCode.USAGE, "no preset named 'int2'"),
        (["inspect", "{missing}"], ExitCode.USAGE, "is not a checkpoint directory"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_code(tiny_checkpoint, tmp_path, capsys, args, code, message):
    (tmp_path / "noconfig").mkdir()
    (tmp_path / "unsupported").mkdir()
    (tmp_path / "unsupported" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "bad.yaml").write_text("version: 1\nname: x\npipline: []\n")
    subst = {
        "{missing}": tmp_path / "missing", "{noconfig}": tmp_path / "noconfig", "{unsupported}": tmp_path / "unsupported",
        "{tiny}": tiny_checkpoint("llama"), "{badrecipe}": tmp_path / "bad.yaml",
    }
    capsys.readouterr()  # drop what making the fixtures printed
    got, _, err = _run([subst.get(a, a) for a in args] + (["--out", tmp_path / "o"] if args[0] == "build" else []), capsys)
    assert got == code, err
    assert message in err
    error_lines = [line for line in err.splitlines() if not line.startswith("[inferc] ")]  # step announcements
    assert len(error_lines) == 1 and "Traceback" not in err


def test_recipe_show_and_targets(capsys):
    code, stdout, _ = _run(["recipe", "show", "fp8"], capsys)
    assert code == 0 and "quantize_fp8" in stdout
    code, stdout, _ = _run(["targets"], capsys)
    assert code == 0 and "h100" in stdout and "q4_k_m" in stdout


def _signalled_then(after):
    """A command body that gets SIGTERM, then does `after` with the exception it raised."""

    def body(**_kwargs):
        try:
            signal.raise_signal(signal.SIGTERM)
        except Terminated as exc:
            after(exc)

    return body


def _converted(exc):
    raise ValueError("a library's own error") from exc  # what safetensors' Rust side did with it


def _swallowed(_exc):
    cli_module._step("export")  # the next step announcement raises it again


@pytest.mark.parametrize("after", [_converted, _swallowed], ids=["converted", "swallowed"])
def test_sigterm_is_reported_as_such_whatever_a_library_did_with_its_exception(monkeypatch, capsys, after):
    monkeypatch.setattr(cli_module.cli, "main", _signalled_then(after))
    previous = signal.getsignal(signal.SIGTERM)
    code, _, err = _run(["targets"], capsys)
    assert code == ExitCode.TERMINATED and err.strip().splitlines()[-1] == "inferc: interrupted (SIGTERM)"
    assert "[inferc] export" not in err and signal.getsignal(signal.SIGTERM) is previous
ONNX_RECIPE = """\
version: 1
name: tiny-int4-onnx
quant: rtn
target: cpu
pipeline:
  - pass: quantize_rtn
    options: {format: int4, group_size: 32}
  - pass: fuse_qkv
  - pass: fuse_gate_up
  - pass: fuse_residual_norm
export: [{format: onnx, flavour: ort}]
eval: {num_samples: 2, sample_len: 32, speed: {prompt_len: 8, gen_len: 4, repeats: 2}}
"""


def test_cpu_build_exports_onnx_and_evaluates_it_with_onnxruntime(tiny_checkpoint, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    recipe, out = tmp_path / "onnx.yaml", tmp_path / "art"
    recipe.write_text(ONNX_RECIPE)
    code, _, err = _run(["build", "--model", tiny_checkpoint("llama"), "--recipe", recipe, "--out", out, "--quiet"], capsys)
    assert code == ExitCode.OK, err
    assert (out / "onnx" / "model.onnx").is_file() and (out / "onnx" / "model.onnx.data").is_file()
    report = json.loads((out / "report.json").read_text())
    assert 0 <= report["quality"]["kld_mean"] < 0.05 and report["speed"]["decode_tok_s"] > 0
    code, stdout, err = _run(["inspect", out / "onnx" / "model.onnx"], capsys)
    assert code == ExitCode.OK, err
    assert "MatMulNBits" in stdout and "GroupQueryAttention" in stdout and "ort" in stdout


def test_int4_on_cpu_without_an_onnx_export_is_refused(tiny_checkpoint, tmp_path, capsys):
    recipe = tmp_path / "gguf.yaml"
    recipe.write_text(ONNX_RECIPE.replace("[{format: onnx, flavour: ort}]", "[{format: gguf}]"))
    code, _, err = _run(["build", "--model", tiny_checkpoint("llama"), "--recipe", recipe, "--out", tmp_path / "a"], capsys)
    assert code == ExitCode.UNSUPPORTED and "INT4 runs on CPU as ONNX" in err


IGNORE_TYPO = RECIPE.replace("options: {activations: static}", "options: {activations: static, ignore: [lm_head, '*.down_prj']}")


@pytest.mark.parametrize(
    "args, code, message, last_step",
    [
        (["--eval-chunks", "0"], ExitCode.USAGE, "0 is not in the range x>=1", None),
        (["--eval-chunks", "-1"], ExitCode.USAGE, "-1 is not in the range x>=1", None),
        (["--dataset", "{missing}.txt"], ExitCode.USAGE, "corpus '{missing}.txt' does not exist", "plan"),
        (["--dataset", "hf:wikitext:wikitext-2-raw-v1"], ExitCode.MISSING_DEPENDENCY, "needs the 'datasets' package", "plan"),
        (["--imatrix", "{missing}.gguf"], ExitCode.USAGE, "--imatrix is read by quantize_gguf", "plan"),
        (["--device", "nonsense"], ExitCode.USAGE, "--device 'nonsense' is not a torch device", "plan"),
        (["--device", "cuda"], ExitCode.USAGE, "--device cuda:", "plan"),
        (["--recipe", "{ignore_typo}"], ExitCode.USAGE, "pattern '*.down_prj' matches no linear of this model", "load"),
    ],
)
def test_bad_settings_are_refused_before_any_work(tiny_checkpoint, tmp_path, capsys, monkeypatch, args, code, message, last_step):
    """One line, and before the model is loaded (or, for what needs the model, before any
    data is sampled or calibration run): the last step announced is `last_step`."""
    import sys

    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    monkeypatch.setitem(sys.modules, "datasets", None)  # as on a machine without the package
    ignore_typo = tmp_path / "ignore.yaml"
    ignore_typo.write_text(IGNORE_TYPO.replace("{GATES}", "{}"))
    subst = {"{missing}": str(tmp_path / "missing"), "{ignore_typo}": str(ignore_typo)}
    args = [next((a.replace(k, v) for k, v in subst.items() if k in a), a) for a in args]
    message = message.replace("{missing}", str(tmp_path / "missing"))
    base = ["build", "--model", tiny_checkpoint("llama"), "--out", tmp_path / "o", "--quiet"]
    if "--recipe" not in args:
        base += ["--recipe", _recipe(tmp_path)]
    capsys.readouterr()
    got, _, err = _run(base + args, capsys)
    assert got == code, err
    assert message in err
    steps = [line.removeprefix("[inferc] ") for line in err.splitlines() if line.startswith("[inferc] ")]
    assert (steps[-1] if steps else None) == last_step, steps
    assert len([line for line in err.splitlines() if not line.startswith("[inferc] ")]) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_bad_imatrix_is_refused_before_the_model_is_loaded(tiny_checkpoint, tmp_path, capsys):
    bad = tmp_path / "imatrix.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 7)  # truncated
    not_gguf = tmp_path / "imatrix.dat"
    not_gguf.write_bytes(b"\x01\x00\x00\x00legacy")
    for path, message in ((bad, "truncated or corrupt imatrix"), (not_gguf, "no GGUF magic")):
        got, _, err = _run(["build", "--model", tiny_checkpoint("llama"), "--target", "cpu", "--quant", "q4_k_m", "--imatrix", path,
                            "--out", tmp_path / "o", "--quiet"], capsys)
        assert got == ExitCode.USAGE and message in err, err
        assert "[inferc] load" not in err


def test_eval_rejects_bad_settings_before_loading(tmp_path, capsys):
    code, _, err = _run(["eval", tmp_path, "--chunks", "0"], capsys)
    assert code == ExitCode.USAGE and "0 is not in the range x>=1" in err
    code, _, err = _run(["eval", tmp_path, "--reference", tmp_path, "--device", "nonsense"], capsys)
    assert code == ExitCode.USAGE and "is not a torch device" in err
    code, _, err = _run(["eval", tmp_path, "--reference", tmp_path, "--dataset", tmp_path / "nope.txt"], capsys)
    assert code == ExitCode.USAGE and "does not exist" in err


@pytest.mark.parametrize("quant, gguf_type", [("f16", "f16"), ("bf16", "bf16")])
def test_unquantized_quant_on_cpu_gives_a_gguf_of_that_dtype_and_o_is_out(tiny_checkpoint, tmp_path, capsys, quant, gguf_type):
    from gguf_helpers import add_byte_tokenizer

    from inferc.formats.gguf import read_gguf_summary

    model, out = tmp_path / "ckpt", tmp_path / "art"
    shutil.copytree(tiny_checkpoint("llama"), model)
    add_byte_tokenizer(model)
    code, _, err = _run(["build", "--model", model, "--target", "cpu", "--quant", quant, "-o", out,
                         "--no-eval", "--quiet"], capsys)
    assert code == ExitCode.OK, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["format"] for e in manifest["exports"]] == ["gguf"]
    types = {t.name: t.type for t in read_gguf_summary(out / "model.gguf").tensors}
    matrices = [n for n in types if n.endswith(("attn_q.weight", "ffn_down.weight", "token_embd.weight"))]
    assert matrices and {types[n] for n in matrices} == {gguf_type.upper()}
    assert {types[n] for n in types if n.endswith("norm.weight")} == {"F32"}


def test_bf16_on_a_gpu_target_is_still_a_checkpoint_and_f16_is_refused_there(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "art"
    code, _, err = _run(["build", "--model", tiny_checkpoint("llama"), "--target", "h100", "--quant", "bf16", "-o", out,
                         "--no-eval", "--quiet"], capsys)
    assert code == ExitCode.OK, err
    assert (out / "hf" / "model.safetensors").is_file() and not (out / "model.gguf").exists()
    code, _, err = _run(["build", "--model", tiny_checkpoint("llama"), "--target", "h100", "--quant", "f16", "-o",
                         tmp_path / "b", "--no-eval"], capsys)
    assert code == ExitCode.UNSUPPORTED and "f16 is the unquantized GGUF of --target cpu" in err
