"""The lowering of the model graph to ONNX, node by node, in one of three flavours.

`ort`: ONNX Runtime's fused operators (com.microsoft GroupQueryAttention with rotary
inside, SimplifiedLayerNormalization and SkipSimplifiedLayerNormalization, MatMulNBits for
INT4 weights). `standard`: standard ONNX ops only (opset 21): attention, rotary and norms
as plain ops, INT4 as block-wise DequantizeLinear, FP8 as QuantizeLinear/DequantizeLinear.
`tensorrt`: the standard lowering at opset 23 for TensorRT's parser: attention as the
`Attention` operator (the builder's fused attention layer; grouped K/V heads are native, the
cache Concat stays outside it), NVFP4 weights as two DequantizeLinears (FP8 block scales x
the FP32 tensor scale, then FLOAT4E2M1 codes in blocks of 16 along K) and NVFP4 activations
through TensorRT's `trt.TRT_FP4DynamicQuantize` (its dynamic FP4 quantize layer) followed by
the same two DequantizeLinears.

Both read `input_ids` [batch, sequence], `attention_mask` [batch, total_sequence] and
`past_key_values.{i}.key/.value` [batch, kv_heads, past_sequence, head_dim], and write
`logits` [batch, sequence, vocab] (float32) and `present.{i}.key/.value`. Graph values keep
the model graph's names (`l0.attn_in`), so `print(model.graph)` reads against the ONNX.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch

from inferc.core.errors import UnsupportedError, require
from inferc.core.ir import (
    Add,
    Attention,
    Embed,
    GatedAct,
    Linear,
    ModelIR,
    Node,
    QuantFormat,
    RMSNorm,
    Role,
    RopeSpec,
    SkipRMSNorm,
    SoftCap,
)
from inferc.core.numerics.rope import rope_inv_freq
from inferc.formats.onnx import constants as C
from inferc.formats.onnx.weights import (
    NBitsWeight,
    check_block_size,
    check_int4,
    join_nbits,
    rtn_nbits,
    to_blocked_int4,
    to_matmul_nbits,
)


class Flavour(str, Enum):
    ORT = "ort"  # ONNX Runtime's fused contrib operators
    STANDARD = "standard"  # standard ONNX ops only, opset 21 (OpenVINO, any ONNX runtime)
    TENSORRT = "tensorrt"  # standard ops at opset 23 + TensorRT's dynamic FP4 quantizer (TensorRT, TensorRT-RTX)


@dataclass(frozen=True)
class OnnxConfig:
    flavour: Flavour = Flavour.ORT
    dtype: str = "fp32"  # activations and dense weights: fp32 | fp16
    accuracy_level: int = 0  # MatMulNBits: 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8
    max_positions: int | None = None  # rotary table length; the model's max positions by default
    # an unquantized LM head (tied or not) in the ort flavour: kept dense, or rounded to
    # nearest into an 8- or 4-bit MatMulNBits (blocks of C.HEAD_BLOCK along K); decode reads
    # the whole head every token, so at 135M parameters it is most of the bytes
    lm_head: str = "dense"  # dense | int8 | int4

    def __post_init__(self) -> None:
        if self.dtype not in ("fp32", "fp16"):
            raise UnsupportedError(f"ONNX activations are fp32 or fp16, found '{self.dtype}'")
        if self.accuracy_level not in C.ACCURACY_LEVELS:
            raise UnsupportedError(f"MatMulNBits accuracy_level is one of {C.ACCURACY_LEVELS}, found {self.accuracy_level}")
        if self.lm_head not in C.HEAD_BITS:
            raise UnsupportedError(f"the ONNX lm_head option is one of {', '.join(C.HEAD_BITS)}, found '{self.lm_head}'")
        if self.lm_head != "dense" and self.flavour is not Flavour.ORT:
            raise UnsupportedError(f"lm_head: {self.lm_head} needs the ort flavour (MatMulNBits); the standard flavour keeps the head dense")


_ACTS = ("silu", "gelu_pytorch_tanh", "gelu")


class _Lowering:
    def __init__(self, ir: ModelIR, cfg: OnnxConfig) -> None:
        self.onnx = require("onnx", "onnx", "exporting ONNX", "pip install 'inferc[onnx]'")
        self.ir, self.cfg = ir, cfg
        self.np_dtype = np.float32 if cfg.dtype == "fp32" else np.float16
        self.elem = self.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(self.np_dtype))
        self.nodes: list = []
        self.inits: list = []
        self._consts: dict[str, str] = {}
        self._count = 0
        self._rope_tables: dict[tuple[RopeSpec, int], tuple[str, str]] = {}
        self._masks: dict[int | None, str] = {}
        self._trt_ops = False  # a TensorRT-domain operator was emitted
        self._typed: dict[str, int] = {}  # outputs of TensorRT-domain operators: element type (no ONNX schema infers it)
        self._ops: dict[type, Callable[[Node], None]] = {
            Embed: self._embed, RMSNorm: self._rms_norm, SkipRMSNorm: self._skip_rms_norm, Linear: self._linear,
            Attention: self._attention, GatedAct: self._gated_act, Add: self._add, SoftCap: self._softcap,
        }

    @property
    def ort(self) -> bool:
        return self.cfg.flavour is Flavour.ORT

    @property
    def trt(self) -> bool:
        return self.cfg.flavour is Flavour.TENSORRT

    # ---- building blocks ---------------------------------------------------------------

    def op(self, op_type: str, inputs: list[str], outputs: list[str] | int = 1, domain: str = "", **attrs) -> list[str]:
        self._count += 1
        if isinstance(outputs, int):
            outputs = [f"/{op_type.lower()}_{self._count}/{k}" for k in range(outputs)]
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, outputs, name=f"{op_type}_{self._count}", domain=domain, **attrs))
        return outputs

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, values, dtype=np.int64) -> str:
        a = np.asarray(values, dtype=dtype)
        key = f"{a.dtype}:{a.shape}:{a.tobytes().hex()}"
        if key not in self._consts:
            self._consts[key] = self.init(f"const_{len(self._consts)}", a)
        return self._consts[key]

    def scalar(self, value: float) -> str:
        return self.const(value, self.np_dtype)

    def dense(self, name: str) -> np.ndarray:
        return self.ir.dense(name).float().numpy()

    # ---- nodes ---------------------------------------------------------------------------

    def _embed(self, node: Embed) -> None:
        w = self.init(node.weight, self.dense(node.weight).astype(self.np_dtype))
        if node.scale == 1.0:
            self.op("Gather", [w, node.ids], [node.out])
        else:
            h = self.op("Gather", [w, node.ids])
            self.op("Mul", h + [self.scalar(node.scale)], [node.out])

    def _norm_weight(self, name: str, offset: float) -> str:
        return self.init(name, (offset + self.dense(name)).astype(self.np_dtype))

    def _norm(self, x: str, weight: str, eps: float, offset: float, out: str) -> None:
        w = self._norm_weight(weight, offset)
        if self.ort:
            self.op("SimplifiedLayerNormalization", [x, w], [out], axis=-1, epsilon=eps, stash_type=1)
            return
        xf = self.op("Cast", [x], to=self.onnx.TensorProto.FLOAT) if self.cfg.dtype != "fp32" else [x]
        ms = self.op("ReduceMean", self.op("Mul", xf + xf) + [self.const([-1])], keepdims=1)
        inv = self.op("Reciprocal", self.op("Sqrt", self.op("Add", ms + [self.const(eps, np.float32)])))
        y = self.op("Mul", xf + inv)
        if self.cfg.dtype != "fp32":
            y = self.op("Cast", y, to=self.elem)
        self.op("Mul", y + [w], [out])

    def _rms_norm(self, node: RMSNorm) -> None:
        self._norm(node.x, node.weight, node.eps, node.offset, node.out)

    def _skip_rms_norm(self, node: SkipRMSNorm) -> None:
        if not self.ort:
            self.op("Add", [node.x, node.skip], [node.sum_out])
            self._norm(node.sum_out, node.weight, node.eps, node.offset, node.out)
            return
        w = self._norm_weight(node.weight, node.offset)
        self.op("SkipSimplifiedLayerNormalization", [node.x, node.skip, w], [node.out, "", "", node.sum_out],
                domain=C.MS_DOMAIN, epsilon=node.eps)

    def _add(self, node: Add) -> None:
        self.op("Add", [node.a, node.b], [node.out])

    def _softcap(self, node: SoftCap) -> None:
        t = self.op("Tanh", self.op("Div", [node.x, self.scalar(node.cap)]))
        self.op("Mul", t + [self.scalar(node.cap)], [node.out])

    def _gated_act(self, node: GatedAct) -> None:
        if node.act not in _ACTS:
            raise UnsupportedError(f"node '{node.out}': activation '{node.act}' has no ONNX lowering (known: {', '.join(_ACTS)})")
        gate, up = (self.op("Split", [node.gate], 2, axis=-1, num_outputs=2) if node.packed else [node.gate, node.up])
        if node.act == "silu":
            g = self.op("Mul", [gate] + self.op("Sigmoid", [gate]))
        else:
            g = self.op("Gelu", [gate], approximate="tanh" if node.act == "gelu_pytorch_tanh" else "none")
        self.op("Mul", g + [up], [node.out])

    # ---- linears ------------------------------------------------------------------------

    def _linear(self, node: Linear) -> None:
        qs = [self.ir.weights.get(p.weight) for p in node.parts]
        for p in node.parts:
            if self.ir.activations.get(p.weight) is not None and self.ort:
                raise UnsupportedError(f"{p.weight}: quantized activations have no mapping in the ort flavour; use the standard flavour")
        if all(q is None for q in qs):
            y = self._dense_matmul(node)
        elif any(q is None for q in qs):
            raise UnsupportedError(f"linear '{node.out}': some parts are quantized and some are not; one matrix product cannot mix them")
        elif self.ort:
            y = self._matmul_nbits(node, qs)
        else:
            y = self._dequantized_matmul(node, qs)
        if node.bias:
            b = np.concatenate([self.dense(p.bias_name) for p in node.parts]).astype(self.np_dtype)
            self.op("Add", y + [self.init(node.out + ".bias", b)], [node.out])
        else:
            self.op("Identity", y, [node.out])

    def _dense_matmul(self, node: Linear) -> list[str]:
        if node.roles == (Role.LM_HEAD,) and self.cfg.lm_head != "dense":
            w = np.concatenate([self.dense(n) for n in node.weights])
            return self._nbits_matmul(node, rtn_nbits(w, C.HEAD_BITS[self.cfg.lm_head], C.HEAD_BLOCK, self.np_dtype), C.HEAD_BITS[self.cfg.lm_head])
        if node.tied:  # the embedding's tensor read transposed, not stored twice
            wt = self.op("Transpose", [node.weights[0]], perm=[1, 0])
        else:
            w = np.concatenate([self.dense(n) for n in node.weights]).T.astype(self.np_dtype)
            wt = [self.init(node.out + ".weight_t", w)]
        return self.op("MatMul", [node.x] + wt)

    def _matmul_nbits(self, node: Linear, qs: list) -> list[str]:
        parts = []
        for p, q in zip(node.parts, qs):
            check_block_size(p.weight, check_int4(p.weight, q, "the ort flavour (MatMulNBits)"))
            parts.append(to_matmul_nbits(q, self.np_dtype))
        if len({(w.block_size, w.zero_points is None) for w in parts}) > 1:
            raise UnsupportedError(f"linear '{node.out}': its parts differ in group size or symmetry; MatMulNBits takes one of each")
        return self._nbits_matmul(node, join_nbits(parts), 4)

    def _nbits_matmul(self, node: Linear, w: NBitsWeight, bits: int) -> list[str]:
        ins = [node.x, self.init(node.out + ".qweight", w.blob), self.init(node.out + ".scales", w.scales)]
        if w.zero_points is not None:
            ins.append(self.init(node.out + ".qzeros", w.zero_points))
        return self.op("MatMulNBits", ins, domain=C.MS_DOMAIN, K=w.k, N=w.n, bits=bits, block_size=w.block_size,
                       accuracy_level=self.cfg.accuracy_level)

    def _dequantized_matmul(self, node: Linear, qs: list) -> list[str]:
        fmts = {q.format for q in qs}
        if fmts == {QuantFormat.INT4}:
            w = self._int4_weight(node, qs)
        elif fmts == {QuantFormat.FP8_E4M3}:
            w = self._fp8_weight(node, qs)
        elif fmts == {QuantFormat.NVFP4} and self.trt:
            w = self._nvfp4_weight(node, qs)
        else:
            names = ", ".join(f"{p.weight} ({q.format.value})" for p, q in zip(node.parts, qs))
            takes = "INT4, FP8 and NVFP4" if self.trt else "INT4 and FP8; NVFP4 goes through the tensorrt flavour"
            raise UnsupportedError(f"{names}: no mapping in the {self.cfg.flavour.value} flavour (it takes {takes} weights)")
        x = node.x
        act = self.ir.activations.get(node.weights[0])
        if act is not None and act.format is QuantFormat.NVFP4 and self.trt:
            x = self._nvfp4_activation(node, act)
        elif act is not None:
            x = self._fake_quant_activation(node, act)
        return self.op("MatMul", [x, w])

    def _int4_weight(self, node: Linear, qs: list) -> str:
        groups = {check_int4(p.weight, q, "the standard flavour") for p, q in zip(node.parts, qs)}
        if len(groups) > 1 or len({q.symmetric for q in qs}) > 1:
            raise UnsupportedError(f"linear '{node.out}': its parts differ in group size or symmetry")
        if self.trt and not qs[0].symmetric:
            raise UnsupportedError(f"linear '{node.out}': TensorRT takes symmetric INT4 weights only (no zero points); "
                                   "quantize with symmetric: true")
        blocks = [to_blocked_int4(q, self.np_dtype) for q in qs]
        codes = np.concatenate([b[0] for b in blocks], axis=1)
        scales = np.concatenate([b[1] for b in blocks], axis=1)
        ins = [self.init(node.out + ".qweight", codes), self.init(node.out + ".scales", scales)]
        if blocks[0][2] is not None:
            ins.append(self.init(node.out + ".qzeros", np.concatenate([b[2] for b in blocks], axis=1)))
        return self.op("DequantizeLinear", ins, axis=0, block_size=groups.pop())[0]

    def _fp8_weight(self, node: Linear, qs: list) -> str:
        import ml_dtypes

        codes = np.concatenate([q.data.view(torch.uint8).T.contiguous().numpy().view(ml_dtypes.float8_e4m3fn) for q in qs], axis=1)
        per_row = [q.scale.float().reshape(-1).expand(q.shape[0]) if q.scale.numel() == 1 else q.scale.float().reshape(-1) for q in qs]
        scale = torch.cat(per_row).numpy().astype(self.np_dtype)
        ins = [self.init(node.out + ".qweight", codes)]
        if np.all(scale == scale[0]):
            return self.op("DequantizeLinear", ins + [self.init(node.out + ".scale", scale[:1].reshape(()))])[0]
        return self.op("DequantizeLinear", ins + [self.init(node.out + ".scale", scale)], axis=1)[0]

    def _fp4_blocks(self, codes: str, block_scales: str, global_scale: str, axis: int) -> str:
        """NVFP4 dequantized as TensorRT reads it: the FP8 block scales times the FP32 tensor
        scale (one DequantizeLinear), then the FP4 codes times those (a blocked one)."""
        scale = self.op("DequantizeLinear", [block_scales, global_scale],
                        **({} if self.cfg.dtype == "fp32" else {"output_dtype": self.elem}))
        return self.op("DequantizeLinear", [codes] + scale, axis=axis, block_size=C.NVFP4_BLOCK)[0]

    def _nvfp4_weight(self, node: Linear, qs: list) -> str:
        """FLOAT4E2M1 codes [K, N] with FP8 block scales [K / 16, N] and one FP32 tensor scale."""
        import ml_dtypes

        globals_ = {float(q.global_scale) for q in qs}
        if len(globals_) > 1:
            raise UnsupportedError(f"linear '{node.out}': its NVFP4 parts have different tensor scales; fuse before quantizing "
                                   "so that they share one, or export them unfused")
        codes = np.concatenate([q.data.to(torch.uint8).T.contiguous().numpy() for q in qs], axis=1).view(ml_dtypes.float4_e2m1fn)
        scales = np.concatenate([q.scale.view(torch.uint8).T.contiguous().numpy() for q in qs], axis=1).view(ml_dtypes.float8_e4m3fn)
        return self._fp4_blocks(self.init(node.out + ".qweight", codes), self.init(node.out + ".block_scales", scales),
                                self.init(node.out + ".global_scale", np.asarray(globals_.pop(), np.float32)), axis=0)

    def _nvfp4_activation(self, node: Linear, act) -> str:
        """x [b, t, K] quantized at run time by TensorRT's dynamic FP4 quantizer (FP8 scales per
        16 inputs under the calibrated FP32 tensor scale) and dequantized for the product."""
        if act.global_scale is None:
            raise UnsupportedError(f"{node.weights[0]}: NVFP4 activations need a calibrated FP32 tensor scale (global_scale)")
        self._trt_ops = True
        g = self.init(node.out + ".input_global_scale", np.asarray(float(act.global_scale), np.float32))
        codes, scales = self.op(C.TRT_FP4_DYNAMIC_QUANTIZE, [node.x, g], [f"{node.out}.input_fp4", f"{node.out}.input_block_scales"],
                                domain=C.TRT_DOMAIN, axis=-1, block_size=C.NVFP4_BLOCK, scale_type=C.ONNX_FLOAT8E4M3FN)
        self._typed[codes] = self.onnx.TensorProto.FLOAT4E2M1
        self._typed[scales] = self.onnx.TensorProto.FLOAT8E4M3FN
        return self._fp4_blocks(codes, scales, g, axis=-1)

    def _fake_quant_activation(self, node: Linear, act) -> str:
        import ml_dtypes

        if act.format is not QuantFormat.FP8_E4M3 or act.dynamic or act.scale is None:
            raise UnsupportedError(
                f"{node.weights[0]}: {'dynamic ' if act.dynamic else ''}{act.format.value} activations have no mapping in ONNX; "
                "the standard flavour takes static per-tensor FP8 activation scales")
        s = self.init(node.out + ".input_scale", np.asarray(float(act.scale), self.np_dtype))
        zp = self.init(node.out + ".input_zero", np.zeros((), ml_dtypes.float8_e4m3fn))
        q = self.op("QuantizeLinear", [node.x, s, zp])
        return self.op("DequantizeLinear", q + [s, zp])[0]

    # ---- attention ----------------------------------------------------------------------

    def _rope_table(self, rope: RopeSpec, dim: int) -> tuple[str, str]:
        """cos and sin [max_positions, dim / 2] of one rope (float32 products, as the reference)."""
        key = (rope, dim)
        if key not in self._rope_tables:
            n = self.cfg.max_positions or self.ir.spec.max_position_embeddings
            freqs = torch.arange(n, dtype=torch.float32)[:, None] * rope_inv_freq(rope, dim)[None, :]
            k = len(self._rope_tables)
            self._rope_tables[key] = (self.init(f"rope{k}.cos", freqs.cos().numpy().astype(self.np_dtype)),
                                      self.init(f"rope{k}.sin", freqs.sin().numpy().astype(self.np_dtype)))
        return self._rope_tables[key]

    def _qkv(self, node: Attention) -> tuple[str, str, str]:
        if not node.packed:
            return node.q, node.k, node.v  # type: ignore[return-value]
        q_size, kv_size = node.num_heads * node.head_dim, node.num_kv_heads * node.head_dim
        q, k, v = self.op("Split", [node.q, self.const([q_size, kv_size, kv_size])], 3, axis=-1)
        return q, k, v

    def _heads_norm(self, x: str, heads: int, node: Attention, weight: str) -> str:
        """RMS norm over each head of x [b, t, heads * head_dim]."""
        h = self.op("Reshape", [x, self.const([0, 0, heads, node.head_dim])])[0]
        out = f"{x}.normed"
        self._norm(h, weight, node.norm_eps, node.norm_offset, out)
        return self.op("Reshape", [out, self.const([0, 0, heads * node.head_dim])])[0]

    def _attention(self, node: Attention) -> None:
        if node.head_dim % 2 or node.rotary_dim % 2:
            raise UnsupportedError(f"node '{node.out}': rotary dims must be even, found {node.rotary_dim} of {node.head_dim}")
        if self.ort and node.packed and not node.q_norm:
            q, k, v = node.q, "", ""
        else:
            q, k, v = self._qkv(node)
            if node.q_norm:
                q = self._heads_norm(q, node.num_heads, node, node.q_norm)
                k = self._heads_norm(k, node.num_kv_heads, node, node.k_norm)  # type: ignore[arg-type]
        if self.ort:
            self._group_query_attention(node, q, k, v)
        else:
            self._plain_attention(node, q, k, v)

    def _group_query_attention(self, node: Attention, q: str, k: str, v: str) -> None:
        half = node.rotary_dim // 2
        if half % 8 or (node.rotary_dim < node.head_dim and node.head_dim % 16):
            raise UnsupportedError(
                f"node '{node.out}': GroupQueryAttention rotates {node.rotary_dim} of {node.head_dim} dims, but its rotary "
                "tables need rotary_dim / 2 to be a multiple of 8; export the standard flavour instead")
        seqlens, total = self._gqa_lengths()
        cos, sin = self._rope_table(node.rope, node.rotary_dim)
        i = node.cache_slot
        self.op("GroupQueryAttention", [q, k, v, C.past_key(i), C.past_value(i), seqlens, total, cos, sin],
                [node.out, C.present_key(i), C.present_value(i)], domain=C.MS_DOMAIN,
                num_heads=node.num_heads, kv_num_heads=node.num_kv_heads, scale=node.scale, do_rotary=1,
                rotary_interleaved=0, local_window_size=node.window if node.window else -1,
                softcap=float(node.softcap or 0.0))

    def _gqa_lengths(self) -> tuple[str, str]:
        """GroupQueryAttention's seqlens_k (tokens seen per sequence, minus one) and
        total_sequence_length, from the attention mask."""
        if "seqlens_k" not in self._consts:
            total = self.op("ReduceSum", [C.ATTENTION_MASK, self.const([1])], keepdims=0)
            seqlens = self.op("Cast", self.op("Sub", total + [self.const(1)]), ["seqlens_k"], to=self.onnx.TensorProto.INT32)
            width = self.op("Shape", [C.ATTENTION_MASK], start=1, end=2)
            self.op("Cast", self.op("Squeeze", width + [self.const([0])]), ["total_sequence_length"], to=self.onnx.TensorProto.INT32)
            self._consts["seqlens_k"] = seqlens[0]
        return "seqlens_k", "total_sequence_length"

    # the standard flavour: rotary, cache, mask and softmax as plain ops

    def _positions(self) -> str:
        """Positions of this step's tokens, [t]: past length + 0 .. t-1."""
        if "positions" not in self._consts:
            past = self.op("Squeeze", self.op("Shape", [C.past_key(0)], start=2, end=3) + [self.const([0])])
            t = self.op("Squeeze", self.op("Shape", [C.INPUT_IDS], start=1, end=2) + [self.const([0])])
            end = self.op("Add", past + t)
            self.op("Range", past + end + [self.const(1)], ["positions"])
            self._consts["positions"] = "positions"
        return "positions"

    def _rotate(self, x: str, node: Attention, cos: str, sin: str) -> str:
        """x [b, heads, t, head_dim] with its leading rotary_dim dims rotated (rotate-half)."""
        d, rest = node.rotary_dim, node.head_dim - node.rotary_dim
        rot, tail = self.op("Split", [x, self.const([d, rest])], 2, axis=-1) if rest else (x, "")
        lo, hi = self.op("Split", [rot], 2, axis=-1, num_outputs=2)
        turned = self.op("Concat", self.op("Neg", [hi]) + [lo], axis=-1)
        y = self.op("Add", self.op("Mul", [rot, cos]) + self.op("Mul", turned + [sin]))
        return self.op("Concat", y + [tail], axis=-1)[0] if rest else y[0]

    def _mask(self, window: int | None) -> str:
        """Additive mask [b, 1, t, total]: causal, the sliding window, the padding."""
        if window not in self._masks:
            pos = self._positions()
            q_pos = self.op("Unsqueeze", [pos, self.const([1])])  # [t, 1]
            total = self.op("Squeeze", self.op("Shape", [C.ATTENTION_MASK], start=1, end=2) + [self.const([0])])
            k_pos = self.op("Range", [self.const(0)] + total + [self.const(1)])  # [total]
            allowed = self.op("LessOrEqual", k_pos + q_pos)
            if window:
                lo = self.op("Sub", q_pos + [self.const(window)])
                allowed = self.op("And", allowed + self.op("Greater", k_pos + lo))
            pad = self.op("Cast", self.op("Unsqueeze", [C.ATTENTION_MASK, self.const([1, 2])]), to=self.onnx.TensorProto.BOOL)
            allowed = self.op("And", allowed + pad)
            neg = self.scalar(float(np.finfo(self.np_dtype).min))
            self._masks[window] = self.op("Where", allowed + [self.scalar(0.0), neg])[0]
        return self._masks[window]

    def _plain_attention(self, node: Attention, q: str, k: str, v: str) -> None:
        nh, nkv, hd, i = node.num_heads, node.num_kv_heads, node.head_dim, node.cache_slot

        def heads(x: str, n: int) -> str:  # [b, t, n * hd] -> [b, n, t, hd]
            return self.op("Transpose", self.op("Reshape", [x, self.const([0, 0, n, hd])]), perm=[0, 2, 1, 3])[0]

        cos_t, sin_t = self._rope_table(node.rope, node.rotary_dim)
        pos = self._positions()
        cos = self.op("Concat", [self.op("Gather", [cos_t, pos])[0]] * 2, axis=-1)[0]  # [t, rotary_dim]
        sin = self.op("Concat", [self.op("Gather", [sin_t, pos])[0]] * 2, axis=-1)[0]
        q4, k4, v4 = self._rotate(heads(q, nh), node, cos, sin), self._rotate(heads(k, nkv), node, cos, sin), heads(v, nkv)
        k_all = self.op("Concat", [C.past_key(i), k4], [C.present_key(i)], axis=2)[0]
        v_all = self.op("Concat", [C.past_value(i), v4], [C.present_value(i)], axis=2)[0]
        if self.trt:
            self._fused_attention(node, q4, k_all, v_all)
            return
        if nh != nkv:
            k_all, v_all = self._repeat_kv(k_all, nh, nkv, hd), self._repeat_kv(v_all, nh, nkv, hd)
        scores = self.op("Mul", self.op("MatMul", [q4] + self.op("Transpose", [k_all], perm=[0, 1, 3, 2])) + [self.scalar(node.scale)])
        if node.softcap:
            scores = self.op("Mul", self.op("Tanh", self.op("Div", scores + [self.scalar(node.softcap)])) + [self.scalar(node.softcap)])
        scores = self.op("Add", scores + [self._mask(node.window)])
        if self.cfg.dtype != "fp32":
            probs = self.op("Cast", self.op("Softmax", self.op("Cast", scores, to=self.onnx.TensorProto.FLOAT), axis=-1), to=self.elem)
        else:
            probs = self.op("Softmax", scores, axis=-1)
        ctx = self.op("Transpose", self.op("MatMul", probs + [v_all]), perm=[0, 2, 1, 3])
        self.op("Reshape", ctx + [self.const([0, 0, nh * hd])], [node.out])

    def _fused_attention(self, node: Attention, q: str, k: str, v: str) -> None:
        """softmax(q k^T * scale [soft-capped] + mask) v as one opset-23 Attention: TensorRT
        imports it as its fused attention layer; q [b, heads, t, hd], k and v [b, kv, total, hd]
        (grouped heads native, no repeat), the additive mask [b, 1, t, total]."""
        ctx = self.op("Attention", [q, k, v, self._mask(node.window)], scale=node.scale,
                      **({"softcap": float(node.softcap)} if node.softcap else {}))
        ctx = self.op("Transpose", ctx, perm=[0, 2, 1, 3])
        self.op("Reshape", ctx + [self.const([0, 0, node.num_heads * node.head_dim])], [node.out])

    def _repeat_kv(self, x: str, nh: int, nkv: int, hd: int) -> str:
        """[b, kv, T, hd] -> [b, heads, T, hd], each kv head serving nh / nkv query heads."""
        shape = self.op("Shape", [x])[0]
        b, rest = self.op("Split", [shape, self.const([2, 2])], 2, axis=0)
        target = self.op("Concat", [b, self.const([nh // nkv]), rest], axis=0)
        wide = self.op("Expand", self.op("Unsqueeze", [x, self.const([2])]) + target)
        return self.op("Reshape", wide + [self.const([0, nh, -1, hd])])[0]

    # ---- the whole graph ----------------------------------------------------------------

    def lower(self):
        helper, T = self.onnx.helper, self.onnx.TensorProto
        graph = self.ir.graph
        for node in graph:
            fn = self._ops.get(type(node))
            if fn is None:
                raise UnsupportedError(f"the ONNX lowering does not cover graph node '{node}' ({type(node).__name__})")
            fn(node)
        logits = graph.output
        if self.cfg.dtype != "fp32":  # logits leave as float32
            for n in self.nodes:
                n.output[:] = [f"{logits}.half" if o == logits else o for o in n.output]
            self.op("Cast", [f"{logits}.half"], [C.LOGITS], to=T.FLOAT)
        elif logits != C.LOGITS:
            self.op("Identity", [logits], [C.LOGITS])
        attns = [n for n in graph if isinstance(n, Attention)]
        inputs = [helper.make_tensor_value_info(C.INPUT_IDS, T.INT64, [C.BATCH, C.SEQUENCE]),
                  helper.make_tensor_value_info(C.ATTENTION_MASK, T.INT64, [C.BATCH, C.TOTAL_SEQUENCE])]
        outputs = [helper.make_tensor_value_info(C.LOGITS, T.FLOAT, [C.BATCH, C.SEQUENCE, self.ir.spec.vocab_size])]
        for a in attns:
            shape = lambda seq, a=a: [C.BATCH, a.num_kv_heads, seq, a.head_dim]  # noqa: E731
            inputs += [helper.make_tensor_value_info(n(a.cache_slot), self.elem, shape(C.PAST_SEQUENCE)) for n in (C.past_key, C.past_value)]
            outputs += [helper.make_tensor_value_info(n(a.cache_slot), self.elem, shape(C.TOTAL_SEQUENCE)) for n in (C.present_key, C.present_value)]
        typed = [helper.make_tensor_value_info(name, elem, None) for name, elem in self._typed.items()]
        g = helper.make_graph(self.nodes, f"inferc_{self.ir.spec.model_type}", inputs, outputs, self.inits, value_info=typed)
        opset, ir_version = (C.TRT_OPSET, C.TRT_IR_VERSION) if self.trt else (C.OPSET, C.IR_VERSION)
        opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(C.MS_DOMAIN, C.MS_OPSET)] if self.ort else [])
        if self._trt_ops:
            opsets.append(helper.make_opsetid(C.TRT_DOMAIN, C.TRT_DOMAIN_OPSET))
        model = helper.make_model(g, opset_imports=opsets, ir_version=ir_version, producer_name="inferc")
        helper.set_model_props(model, {C.META_FLAVOUR: self.cfg.flavour.value, C.META_DTYPE: self.cfg.dtype,
                                       C.META_MAX_POSITIONS: str(self.cfg.max_positions or self.ir.spec.max_position_embeddings)})
        return model


def lower_graph(ir: ModelIR, cfg: OnnxConfig = OnnxConfig()):
    """The ModelIR's graph as an onnx.ModelProto (initializers inline; the writer moves
    them to external data). Raises UnsupportedError naming what it cannot lower."""
    return _Lowering(ir, cfg).lower()
