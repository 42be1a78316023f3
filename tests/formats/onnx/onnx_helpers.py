"""Runs an exported ONNX model with ONNX Runtime, without the backend, for format tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from inferc.calibration.dataset import CalibrationSet
from inferc.calibration.stats import collect_activation_stats
from inferc.core.ir import Attention, ModelIR
from inferc.formats.hf.reader import load_checkpoint
from inferc.formats.onnx import OnnxConfig, export_onnx
from inferc.formats.onnx import constants as C
from inferc.passes import PassContext, get_pass, make_config
from inferc.runtime.reference import ReferenceModel


def session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    # ORT rewrites DequantizeLinear -> MatMul into MatMulNBits with int8 activations by
    # default; ask for fp32 so the graph's own arithmetic is what is compared
    so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "1")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run(sess, ir: ModelIR, ids: torch.Tensor, past: dict | None = None, past_len: int = 0) -> tuple[torch.Tensor, dict]:
    b, t = ids.shape
    feeds = {"input_ids": ids.numpy(), "attention_mask": np.ones((b, past_len + t), np.int64)}
    for a in (n for n in ir.graph if isinstance(n, Attention)):
        for kind in ("key", "value"):
            name = f"past_key_values.{a.cache_slot}.{kind}"
            feeds[name] = past[name] if past else np.zeros((b, a.num_kv_heads, 0, a.head_dim), np.float32)
    outs = sess.run(None, feeds)
    names = [o.name for o in sess.get_outputs()]
    present = {n.replace("present.", "past_key_values."): v for n, v in zip(names, outs) if n.startswith("present.")}
    return torch.from_numpy(outs[names.index("logits")]), present


def prepared(path: Path, quant: dict | None = None, fuse: bool = False) -> ModelIR:
    ir = load_checkpoint(path)
    g = torch.Generator().manual_seed(0)
    calib = CalibrationSet(tokens=torch.randint(0, ir.spec.vocab_size, (4, 64), generator=g), source="random seed 0")
    ctx = PassContext(calibration=calib, _stats_factory=lambda: collect_activation_stats(ir, calib))
    if quant:
        cls = get_pass(quant.pop("pass", "quantize_rtn"))
        ir = cls(make_config(cls, quant)).run(ir, ctx)
    if fuse:
        for name in ("fuse_qkv", "fuse_gate_up", "fuse_residual_norm"):
            cls = get_pass(name)
            ir = cls(make_config(cls, {})).run(ir, ctx)
    return ir


def check_against_reference(ir, tmp_path, flavour, tol: float = 1e-5, seed: int = 3) -> None:
    """Full-sequence logits and a prefill + one-token-at-a-time decode of an export of
    `flavour` in ONNX Runtime against the reference forward."""
    path = export_onnx(ir, tmp_path / "onnx", OnnxConfig(flavour=flavour))
    assert (path.parent / C.DATA_FILE).is_file()
    sess = session(path)
    ids = torch.randint(0, ir.spec.vocab_size, (2, 20), generator=torch.Generator().manual_seed(seed))
    ref = ReferenceModel(ir).forward(ids)
    got, _ = run(sess, ir, ids)
    assert (got - ref).abs().max() < tol * max(1.0, ref.abs().max())
    logits, past = run(sess, ir, ids[:, :12])
    steps = [logits[:, -1]]
    for t in range(12, 20):
        logits, past = run(sess, ir, ids[:, t : t + 1], past, past_len=t)
        steps.append(logits[:, -1])
    assert (torch.stack(steps, 1) - ref[:, 11:]).abs().max() < tol * max(1.0, ref.abs().max())
