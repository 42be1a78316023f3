import pytest
import torch

from inferc.core.errors import FormatError, UnsupportedError
from inferc.formats.onnx import Flavour, OnnxConfig, export_onnx, lower_graph
from inferc.formats.onnx import constants as C
from inferc.runtime.reference import ReferenceModel
from onnx_helpers import check_against_reference, prepared, run, session

pytest.importorskip("onnxruntime")

# family, fused: every family of the ort flavour that GroupQueryAttention covers
ORT_CASES = [("llama", False), ("llama", True), ("qwen2", True), ("qwen3", True), ("mistral", False), ("gemma2", True),
             ("gemma3_text", False)]
STANDARD_CASES = ORT_CASES + [("phi3", False), ("phi3", True)]
INT4 = {"symmetric": dict(format="int4", group_size=32, symmetric=True),
        "asymmetric": dict(format="int4", group_size=32, symmetric=False)}


def _check(ir, tmp_path, flavour: Flavour, tol: float = 1e-5) -> None:
    check_against_reference(ir, tmp_path, flavour, tol, seed=3)


@pytest.mark.parametrize("family,fused", ORT_CASES)
def test_ort_flavour_matches_the_reference(tiny_checkpoint, tmp_path, family, fused):
    _check(prepared(tiny_checkpoint(family), fuse=fused), tmp_path, Flavour.ORT)


@pytest.mark.parametrize("family,fused", STANDARD_CASES)
def test_standard_flavour_matches_the_reference(tiny_checkpoint, tmp_path, family, fused):
    _check(prepared(tiny_checkpoint(family), fuse=fused), tmp_path, Flavour.STANDARD)


@pytest.mark.parametrize("flavour", list(Flavour))
@pytest.mark.parametrize("kind", list(INT4))
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_int4_weights_match_their_dequantized_reference(tiny_checkpoint, tmp_path, family, kind, flavour):
    ir = prepared(tiny_checkpoint(family), dict(INT4[kind]), fuse=True)
    if flavour is Flavour.TENSORRT and kind == "asymmetric":
        with pytest.raises(UnsupportedError, match="TensorRT takes symmetric INT4 weights only"):
            lower_graph(ir, OnnxConfig(flavour=flavour))
        return
    _check(ir, tmp_path, flavour)
    ops = {n.op_type for n in lower_graph(ir, OnnxConfig(flavour=flavour)).graph.node}
    assert ("MatMulNBits" in ops) == (flavour is Flavour.ORT)
    assert ("DequantizeLinear" in ops) == (flavour is not Flavour.ORT)


def test_ort_flavour_uses_fused_operators(tiny_checkpoint):
    ir = prepared(tiny_checkpoint("llama"), dict(INT4["symmetric"]), fuse=True)
    ops = [n.op_type for n in lower_graph(ir).graph.node]
    assert ops.count("GroupQueryAttention") == ir.spec.num_layers
    assert ops.count("MatMulNBits") == 4 * ir.spec.num_layers  # q|k|v, o, gate|up, down
    assert "SkipSimplifiedLayerNormalization" in ops and "SimplifiedLayerNormalization" in ops


def test_gptq_act_order_with_static_groups_exports(tiny_checkpoint, tmp_path):
    ir = prepared(tiny_checkpoint("llama"), dict(**{"pass": "quantize_gptq"}, format="int4", group_size=32, act_order=True,
                                                  static_groups=True, sequential=False))
    _check(ir, tmp_path, Flavour.ORT)


def test_uncovered_partial_rotary_is_refused_naming_the_node(tiny_checkpoint, tmp_path):
    with pytest.raises(UnsupportedError, match="node 'l0.ctx'.*standard flavour"):
        export_onnx(prepared(tiny_checkpoint("phi3")), tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())


def test_nvfp4_has_no_mapping_in_ort(tiny_checkpoint, tmp_path):
    ir = prepared(tiny_checkpoint("llama"), dict(format="nvfp4"))
    with pytest.raises(UnsupportedError, match="layers.0.attn.q.weight: nvfp4 weights have no mapping in the ort flavour"):
        export_onnx(ir, tmp_path / "out")
    assert not list(tmp_path.iterdir())


def test_matmul_nbits_group_sizes(tiny_checkpoint, tmp_path):
    ir = prepared(tiny_checkpoint("llama"), dict(format="int4", group_size=8))
    with pytest.raises(UnsupportedError, match="powers of two and at least 16, found 8"):
        export_onnx(ir, tmp_path / "out")
    assert not list(tmp_path.iterdir())


def test_over_2gb_without_external_data_is_refused(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(C, "PROTOBUF_LIMIT", 1000)
    with pytest.raises(FormatError, match="over protobuf's 2 GB limit; export with external data"):
        export_onnx(prepared(tiny_checkpoint("llama")), tmp_path / "out", external_data=False)
    assert not list(tmp_path.iterdir())


def _rounded_head(w: torch.Tensor, bits: int, block: int = 32) -> torch.Tensor:
    """The head as MatMulNBits should compute it: symmetric RTN over blocks of `block` along K."""
    half = 2 ** (bits - 1)
    b = w.float().reshape(w.shape[0], -1, block)
    scale = b.abs().amax(-1, keepdim=True) / (half - 1)
    return (torch.round(b / scale).clamp(1 - half, half - 1) * scale).reshape(w.shape)


@pytest.mark.parametrize("bits", [8, 4])
def test_a_dense_head_rounded_into_matmul_nbits_computes_the_rounded_head(tiny_checkpoint, tmp_path, bits):
    ir = prepared(tiny_checkpoint("qwen2"), dict(INT4["symmetric"]), fuse=True)  # an untied, unquantized head
    cfg = OnnxConfig(lm_head=f"int{bits}", accuracy_level=1)
    path = export_onnx(ir, tmp_path / "onnx", cfg)
    ops = [(n.op_type, {a.name: a.i for a in n.attribute}.get("bits")) for n in lower_graph(ir, cfg).graph.node]
    assert ("MatMulNBits", bits) in ops and ("MatMul", None) not in ops
    ids = torch.randint(0, ir.spec.vocab_size, (2, 20), generator=torch.Generator().manual_seed(3))
    got, _ = run(session(path), ir, ids)
    model = ReferenceModel(ir)
    dense = model.forward(ids)
    with model.overriding({"lm_head.weight": _rounded_head(ir.dense("lm_head.weight"), bits)}):
        rounded = model.forward(ids)
    assert (got - rounded).abs().max() < 1e-4 * max(1.0, rounded.abs().max())
    assert (rounded - dense).abs().max() > 1e-3  # the head was rounded, not kept


def test_a_tied_head_rounded_into_matmul_nbits_keeps_the_embedding(tiny_checkpoint, tmp_path):
    ir = prepared(tiny_checkpoint("llama"), dict(INT4["symmetric"]), fuse=True)
    path = export_onnx(ir, tmp_path / "onnx", OnnxConfig(lm_head="int8", accuracy_level=1))
    ids = torch.randint(0, ir.spec.vocab_size, (2, 20), generator=torch.Generator().manual_seed(3))
    got, _ = run(session(path), ir, ids)
    ref = ReferenceModel(ir).forward(ids)
    assert 0 < (got - ref).abs().max() < 0.02 * ref.abs().max()
    with pytest.raises(UnsupportedError, match="lm_head: int4 needs the ort flavour"):
        OnnxConfig(flavour=Flavour.STANDARD, lm_head="int4")


def test_summary_counts_the_bytes_the_matrix_products_read(tiny_checkpoint, tmp_path):
    from inferc.formats.onnx.reader import read_onnx_summary

    ir = prepared(tiny_checkpoint("llama"))  # tied head: the embedding's tensor is the head
    matrices = [n for n in ir.tensors.names() if len(ir.tensors.shape(n)) == 2]
    numel = sum(torch.Size(ir.tensors.shape(n)).numel() for n in matrices)
    dense = read_onnx_summary(export_onnx(ir, tmp_path / "a", OnnxConfig()))
    assert dense.matmul_bytes == 4 * numel < dense.weight_bytes  # fp32; norms and rope tables are not read by products
    vocab, hidden = ir.tensors.shape("embed.weight")
    head8 = read_onnx_summary(export_onnx(ir, tmp_path / "b", OnnxConfig(lm_head="int8")))
    assert head8.matmul_bytes == 4 * (numel - vocab * hidden) + vocab * hidden + 4 * vocab * hidden // C.HEAD_BLOCK
