"""Fusion passes: the graph before and after, logits unchanged, passes in any order,
exports byte-identical to the unfused build, and the refusals."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
import torch

from inferc.calibration.dataset import CalibrationSet
from inferc.core.errors import UnsupportedError
from inferc.core.ir import Attention, GatedAct, Linear, SkipRMSNorm
from inferc.formats.hf.reader import load_checkpoint
from inferc.formats.hf.writer import export_hf
from inferc.passes import PassContext, get_pass, make_config
from inferc.runtime.reference import ReferenceModel
from tiny import FAMILY_CONFIGS

FUSIONS = ("fuse_qkv", "fuse_gate_up", "fuse_residual_norm")


def run(model, name, ctx=None, **options):
    cls = get_pass(name)
    return cls(make_config(cls, options)).run(model, ctx or PassContext())


def _ids(seed=1):
    return torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(seed))


def _calib():
    return CalibrationSet(torch.randint(0, 256, (4, 64), generator=torch.Generator().manual_seed(0)), "random")


def _files_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_fused_graph_is_rewritten_and_printable(tiny_checkpoint):
    model = load_checkpoint(tiny_checkpoint("llama"))
    before = model.graph
    for name in FUSIONS:
        model = run(model, name)
    after = model.graph
    assert after != before and build_again(tiny_checkpoint) == before  # plain data, compared by value
    attn = [n for n in after if isinstance(n, Attention)]
    assert all(a.packed for a in attn) and all(g.packed for g in after if isinstance(g, GatedAct))
    qkv = [lin for lin in after.linears(0) if lin.x == "l0.attn_in"]
    assert len(qkv) == 1 and [s.role.value for s in qkv[0].segments] == ["q", "k", "v"]
    skips = [n for n in after if isinstance(n, SkipRMSNorm)]
    assert len(skips) == 2 * model.spec.num_layers  # mid-layer, next layer's first norm, and the final norm
    text = str(after)
    assert "skip_rms_norm" in text and "l0.qkv = linear(l0.attn_in, [layers.0.attn.q.weight, layers.0.attn.k.weight" in text
    assert len(after.nodes) < len(before.nodes)


def build_again(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint("llama")).graph


@pytest.mark.parametrize("family", list(FAMILY_CONFIGS))
def test_fused_logits_equal_unfused(tiny_checkpoint, family):
    path = tiny_checkpoint(family)
    ids = _ids()
    ref = ReferenceModel(load_checkpoint(path)).forward(ids)
    fused = load_checkpoint(path)
    for name in FUSIONS:
        fused = run(fused, name)
    out = ReferenceModel(fused).forward(ids)
    assert (out - ref).abs().max() < 1e-5, family
    cache_model = ReferenceModel(fused)  # and decoding with a cache through the fused graph
    cache = cache_model.new_cache()
    cache_model.forward(ids[:, :12], cache)
    step = cache_model.forward(ids[:, 12:], cache)
    assert (step - ref[:, 12:]).abs().max() < 1e-4, family


@pytest.mark.parametrize("order", ["fuse_first", "quantize_first"])
def test_int4_rtn_exports_byte_identical_whatever_the_order(tiny_checkpoint, tmp_path, order):
    path = tiny_checkpoint("qwen2")  # biases on q/k/v
    plain = run(load_checkpoint(path), "quantize_rtn", format="int4", group_size=32)
    export_hf(plain, tmp_path / "plain")
    fused = load_checkpoint(path)
    steps = [*FUSIONS, "quantize_rtn"] if order == "fuse_first" else ["quantize_rtn", *FUSIONS]
    for step in steps:
        fused = run(fused, step, **({"format": "int4", "group_size": 32} if step == "quantize_rtn" else {}))
    export_hf(fused, tmp_path / "fused")
    assert _files_digest(tmp_path / "plain") == _files_digest(tmp_path / "fused")


def test_gptq_on_fused_qkv_gives_the_stacked_codes(tiny_checkpoint):
    path = tiny_checkpoint("llama")
    opts = dict(format="int4", group_size=32, act_order=True, static_groups=True)
    plain = run(load_checkpoint(path), "quantize_gptq", PassContext(calibration=_calib()), **opts)
    fused = run(run(load_checkpoint(path), "fuse_qkv"), "fuse_gate_up")
    fused = run(fused, "quantize_gptq", PassContext(calibration=_calib()), **opts)
    assert sorted(plain.weights) == sorted(fused.weights)
    for name, q in plain.weights.items():
        assert torch.equal(q.data, fused.weights[name].data) and torch.equal(q.scale, fused.weights[name].scale), name


def test_awq_scales_the_fused_linear_from_its_norm(tiny_checkpoint):
    path = tiny_checkpoint("llama")
    plain = run(load_checkpoint(path), "quantize_awq", PassContext(calibration=_calib()), format="int4", group_size=32)
    fused = load_checkpoint(path)
    for name in FUSIONS:
        fused = run(fused, name)
    fused = run(fused, "quantize_awq", PassContext(calibration=_calib()), format="int4", group_size=32)
    for name, q in plain.weights.items():
        assert torch.equal(q.data, fused.weights[name].data), name
    for name in plain.graph.shapes:  # the folded norms too
        assert torch.equal(plain.tensors.get(name), fused.tensors.get(name)), name


def test_per_tensor_fp8_fused_after_quantizing_is_refused_and_before_shares_a_scale(tiny_checkpoint):
    path = tiny_checkpoint("llama")
    quantized = run(load_checkpoint(path), "quantize_fp8", per_channel=False, activations="none")
    with pytest.raises(UnsupportedError, match=r"fuse_qkv: layer 0: cannot fuse .*per-tensor scales differ"):
        run(quantized, "fuse_qkv")
    fused = run(run(load_checkpoint(path), "fuse_qkv"), "quantize_fp8", per_channel=False, activations="none")
    q, k, v = (fused.weights[f"layers.0.attn.{r}.weight"] for r in "qkv")
    assert torch.equal(q.scale, k.scale) and torch.equal(q.scale, v.scale)
    unfused_k = run(load_checkpoint(path), "quantize_fp8", per_channel=False, activations="none").weights["layers.0.attn.k.weight"]
    assert not torch.equal(unfused_k.scale, k.scale)  # the shared scale is the whole matrix's


def test_gguf_parts_of_mixed_codecs_cannot_be_fused(tiny_checkpoint):
    model = load_checkpoint(tiny_checkpoint("llama"))
    model = run(model, "quantize_gguf", mixture="q4_k_s")  # first layers' v gets more bits than q and k
    formats = {model.weights[f"layers.0.attn.{r}.weight"].format for r in "qkv"}
    assert len(formats) > 1
    with pytest.raises(UnsupportedError, match="format differs"):
        run(model, "fuse_qkv")


def test_fusing_linears_of_different_inputs_is_refused(tiny_checkpoint):
    model = load_checkpoint(tiny_checkpoint("llama"))
    nodes = list(model.graph.nodes)
    k = next(i for i, n in enumerate(nodes) if isinstance(n, Linear) and n.out == "l1.k")
    nodes[k] = dataclasses.replace(nodes[k], x="l1.h_mid")  # k reads another value than q and v
    model.graph = model.graph.replace_nodes(nodes)
    with pytest.raises(UnsupportedError, match=r"fuse_qkv: layer 1: cannot fuse l1.q, l1.k, l1.v: they read different inputs"):
        run(model, "fuse_qkv")


def test_phi3_reads_as_a_fused_graph_and_fusing_again_is_a_no_op(tiny_checkpoint):
    model = load_checkpoint(tiny_checkpoint("phi3"))
    qkv = model.graph.linears(0)[0]
    assert qkv.weights == ("layers.0.attn.qkv.weight",) and qkv.fused
    assert model.source_name("layers.0.mlp.gate_up.weight") == "model.layers.0.mlp.gate_up_proj.weight"
    ctx = PassContext()
    again = run(run(model, "fuse_qkv", ctx), "fuse_gate_up", ctx)
    assert again.graph == load_checkpoint(tiny_checkpoint("phi3")).graph
    assert {e.kind for e in ctx.events} == {"skipped"}


def test_fused_checkpoint_with_wrong_split_sizes_is_refused(tiny_checkpoint, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from inferc.core.errors import CheckpointError

    ckpt = tmp_path / "phi3"
    shutil.copytree(tiny_checkpoint("phi3"), ckpt)
    tensors = load_file(ckpt / "model.safetensors")
    name = "model.layers.1.self_attn.qkv_proj.weight"
    tensors[name] = tensors[name][:-16].clone()  # k|v rows missing
    save_file(tensors, ckpt / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"qkv_proj.weight' has shape \[112, 64\] but config.json implies \[128, 64\]"):
        load_checkpoint(ckpt)
