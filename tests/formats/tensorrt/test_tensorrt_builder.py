"""The builder interface: which builder fits a target, the optimization profiles, the
precision refusals, and (where TensorRT-RTX is installed, as in CI) real engine builds of
tiny models with a complete build_info.json."""

import json

import pytest

from inferc.core.errors import MissingDependencyError, UnsupportedError
from inferc.formats.onnx import constants as OC
from inferc.formats.tensorrt import EngineLimits, check_precisions, export_tensorrt, find_builder, make_profiles
from inferc.formats.tensorrt import builder as B
from inferc.formats.tensorrt import constants as C
from onnx_helpers import prepared

BUILD_INFO_KEYS = {"build_info_version", "builder", "compute_capability", "activation_dtype", "precisions", "network_layers",
                   "optimization_profiles", "build_seconds", "engine_bytes", "engine_weight_bytes", "files"}


def _rtx():
    return pytest.importorskip(C.RTX_MODULE, reason="TensorRT-RTX is not installed (pip install 'inferc[tensorrt-rtx]'); CI installs it")


def _without(monkeypatch, *modules):
    real = B._import
    monkeypatch.setattr(B, "_import", lambda m: None if m in modules else real(m))


def test_no_builder_for_sm90_names_full_tensorrt_and_why(monkeypatch):
    _without(monkeypatch, C.TENSORRT_MODULE)
    with pytest.raises(MissingDependencyError) as exc:
        find_builder("sm90")
    msg = str(exc.value)
    assert "\n" not in msg and "'tensorrt' package" in msg and "TensorRT-RTX has no sm90" in msg and "pip install tensorrt" in msg


def test_rtx_architectures_ask_for_the_rtx_extra_when_it_is_missing(monkeypatch):
    _without(monkeypatch, C.TENSORRT_MODULE, C.RTX_MODULE)
    with pytest.raises(MissingDependencyError, match=r"'tensorrt-rtx-cu13-bindings' package.*inferc\[tensorrt-rtx\]"):
        find_builder("sm89")


def test_rtx_builds_its_architectures():
    _rtx()
    for arch in ("sm75", "sm80", "sm86", "sm89", "sm120", "sm121"):
        assert find_builder(arch).flavour == "tensorrt-rtx"


def test_a_cpu_target_has_no_engine():
    with pytest.raises(UnsupportedError, match="NVIDIA GPUs"):
        find_builder("cpu")


@pytest.mark.parametrize("arch,precision,why", [("sm86", "fp8", "FP8 tensor cores need sm89"), ("sm89", "nvfp4", "FP4 tensor cores"),
                                                ("sm90", "nvfp4", "FP4 tensor cores")])
def test_precisions_the_architecture_lacks_are_refused(arch, precision, why):
    with pytest.raises(UnsupportedError, match=why):
        check_precisions(arch, {precision})


def test_precisions_the_architecture_has_pass():
    check_precisions("sm89", {"fp8", "int4"})
    check_precisions("sm120", {"nvfp4"})
    check_precisions("sm86", {"int4"})


def test_profiles_are_self_consistent():
    limits = EngineLimits(max_batch=4, max_seq_len=256, max_context=1024)
    prefill, decode = make_profiles([("past_key_values.0.key", 2, 16)], limits)
    for p in (prefill, decode):
        for k in range(3):  # min, opt, max: total = past + new tokens, one batch for all
            ids, mask, past = (p.shapes[n][k] for n in (OC.INPUT_IDS, OC.ATTENTION_MASK, "past_key_values.0.key"))
            assert mask[1] == past[2] + ids[1] and ids[0] == mask[0] == past[0]
    assert prefill.shapes[OC.INPUT_IDS][2] == (4, 256) and prefill.shapes["past_key_values.0.key"][2] == (4, 2, 0, 16)
    assert decode.shapes[OC.INPUT_IDS][2] == (4, 1) and decode.shapes[OC.ATTENTION_MASK][2] == (4, 1024)
    with pytest.raises(UnsupportedError, match="cannot exceed max_context"):
        EngineLimits(max_seq_len=2048, max_context=1024)


@pytest.mark.parametrize("quant,arch,weights", [
    ({"pass": "quantize_fp8", "per_channel": True, "activations": "static"}, "sm89", "fp8"),
    (dict(format="int4", group_size=32), "sm86", "int4"),
    (dict(format="nvfp4", activations="nvfp4"), "sm120", "nvfp4"),
], ids=["fp8-sm89", "int4-sm86", "nvfp4-sm120"])
def test_rtx_builds_an_engine_with_a_complete_build_info(tiny_checkpoint, tmp_path, quant, arch, weights):
    trt = _rtx()
    ir = prepared(tiny_checkpoint("llama"), dict(quant), fuse=weights != "nvfp4")
    out = export_tensorrt(ir, tmp_path / "trt", arch, limits=EngineLimits(max_batch=2, max_seq_len=64, max_context=128))
    assert (out / C.ENGINE_FILE).stat().st_size > 0 and (out / "model.onnx").is_file()
    info = json.loads((out / C.BUILD_INFO_FILE).read_text())
    assert set(info) == BUILD_INFO_KEYS
    assert info["builder"] == {"flavour": "tensorrt-rtx", "version": trt.__version__} and info["compute_capability"] == arch
    assert info["engine_bytes"] == (out / C.ENGINE_FILE).stat().st_size and info["build_seconds"] > 0
    assert 0 < info["engine_weight_bytes"] < info["engine_bytes"]
    assert [p["name"] for p in info["optimization_profiles"]] == ["prefill", "decode"]
    assert info["optimization_profiles"][1]["shapes"][OC.ATTENTION_MASK] == "1x1 / 1x128 / 2x128"
    linear = info["precisions"]["linear"]
    assert linear["mlp.down"] == {"weights": weights, "activations": {"fp8": "fp8", "int4": "fp16", "nvfp4": "nvfp4"}[weights],
                                  "count": ir.spec.num_layers}
    assert info["precisions"]["attention"] == {"dtype": "fp16", "layers": ir.spec.num_layers}  # the fused attention layer
    quantized_side = info["precisions"]["network_quantize_layers"]
    expected = {"fp8": {"QUANTIZE": {"FP8": 8}, "DEQUANTIZE": {"FP8": 16}},
                "int4": {"DEQUANTIZE": {"INT4": 8}},
                "nvfp4": {"DYNAMIC_QUANTIZE": {"FP4": 14}, "DEQUANTIZE": {"FP8": 28, "FP4": 28}}}[weights]
    assert quantized_side == expected


def test_a_failed_build_leaves_nothing(tiny_checkpoint, tmp_path):
    ir = prepared(tiny_checkpoint("llama"), dict(format="int4", group_size=32))
    with pytest.raises(UnsupportedError, match="no fp32 form"):
        export_tensorrt(ir, tmp_path / "trt", "sm89", dtype="fp32")
    with pytest.raises(UnsupportedError, match="FP8 tensor cores need sm89"):
        export_tensorrt(prepared(tiny_checkpoint("llama"), {"pass": "quantize_fp8", "activations": "static"}), tmp_path / "trt", "sm86")
    assert not list(tmp_path.iterdir())
