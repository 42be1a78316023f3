"""Runs an exported ONNX model with ONNX Runtime, without the backend, for format tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from inferc.calibration.dataset import CalibrationSet
from inferc.calibration.stats import collect_activation_stats
from inferc.core.ir import Attention, ModelIR
from inferc.formats.hf.reader import load_checkpoint
from inferc.passes import PassContext, get_pass, make_config


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
