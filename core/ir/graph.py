"""The model graph: what a decoder computes, as plain data.

A `Graph` is a list of typed nodes in execution order. Each node reads and writes named
values (strings) and names the tensors it uses by their IR names (`layers.3.attn.q.weight`,
never a checkpoint's names: those live in each format's name map). The reference forward
interprets it, passes rewrite it (`dataclasses.replace` on nodes, a new node tuple), and
every backend lowers it. `str(graph)` prints it one node per line.

Values: the embedding writes `h0`; decoder layer i reads the residual stream `h{i}` and
writes `h{i+1}` (after `fuse_residual_norm` a layer may hand on the two terms of the sum
instead, see `Graph.live_after`); the head writes `logits`.

Linears carry their parts: a fused linear (q/k/v, gate/up) is one matrix product whose
weight is the row-wise concatenation of its parts' tensors, each part stored (and
quantized) under its own name; `Segment`s say which output rows play which role, so an
attention reading a packed q|k|v knows where to split it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from inferc.core.ir.spec import ArchSpec, RopeSpec


class Role(str, Enum):
    """What the rows of a linear compute, independent of any checkpoint's naming."""

    Q = "q"
    K = "k"
    V = "v"
    O = "o"  # noqa: E741
    GATE = "gate"
    UP = "up"
    DOWN = "down"
    LM_HEAD = "lm_head"


@dataclass(frozen=True)
class Segment:
    role: Role
    rows: int


@dataclass(frozen=True)
class LinearPart:
    """One stored weight of a linear: `module.weight` [rows, in] (and `module.bias`)."""

    module: str
    segments: tuple[Segment, ...]

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.segments)

    @property
    def weight(self) -> str:
        return self.module + ".weight"

    @property
    def bias_name(self) -> str:
        return self.module + ".bias"


@dataclass(frozen=True, kw_only=True)
class Node:
    """A node names its value and tensor fields; `inputs`, `outputs` and `tensors` read them."""

    layer: int | None = None  # decoder layer, None for the embedding and the head
    IN: ClassVar[tuple[str, ...]] = ()  # fields holding the values read (None: absent)
    OUT: ClassVar[tuple[str, ...]] = ()  # fields holding the values written
    TENSORS: ClassVar[tuple[str, ...]] = ()  # fields holding tensor names (None: absent)

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(v for f in self.IN if (v := getattr(self, f)) is not None)

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(getattr(self, f) for f in self.OUT)

    def tensors(self) -> tuple[str, ...]:
        """IR names of the tensors this node reads."""
        return tuple(v for f in self.TENSORS if (v := getattr(self, f)) is not None)


@dataclass(frozen=True, kw_only=True)
class Embed(Node):
    ids: str
    out: str
    weight: str
    scale: float = 1.0
    IN, OUT, TENSORS = ("ids",), ("out",), ("weight",)

    def __str__(self) -> str:
        return f"{self.out} = embed({self.ids}, {self.weight}{_attr(scale=self.scale, default=1.0)})"


@dataclass(frozen=True, kw_only=True)
class RMSNorm(Node):
    """out = x / rms(x) * (offset + weight)."""

    x: str
    out: str
    weight: str
    eps: float
    offset: float = 0.0
    IN, OUT, TENSORS = ("x",), ("out",), ("weight",)

    def __str__(self) -> str:
        return f"{self.out} = rms_norm({self.x}, {self.weight}, eps={self.eps:g}{_attr(offset=self.offset, default=0.0)})"


@dataclass(frozen=True, kw_only=True)
class SkipRMSNorm(Node):
    """sum = x + skip; out = rms_norm(sum): a residual add and the norm that reads it
    (ONNX Runtime's SkipSimplifiedLayerNormalization)."""

    x: str
    skip: str
    out: str
    sum_out: str
    weight: str
    eps: float
    offset: float = 0.0
    IN, OUT, TENSORS = ("x", "skip"), ("out", "sum_out"), ("weight",)

    def __str__(self) -> str:
        off = _attr(offset=self.offset, default=0.0)
        return f"{self.out}, {self.sum_out} = skip_rms_norm({self.x}, {self.skip}, {self.weight}, eps={self.eps:g}{off})"


@dataclass(frozen=True, kw_only=True)
class Linear(Node):
    """out = x @ concat(parts' weights).T (+ biases); out's rows follow the parts' segments."""

    x: str
    out: str
    parts: tuple[LinearPart, ...]
    bias: bool = False
    tied: bool = False  # the LM head reading the embedding's tensor
    IN, OUT = ("x",), ("out",)

    def tensors(self) -> tuple[str, ...]:
        return tuple(p.weight for p in self.parts) + (tuple(p.bias_name for p in self.parts) if self.bias else ())

    @property
    def weights(self) -> tuple[str, ...]:
        return tuple(p.weight for p in self.parts)

    @property
    def segments(self) -> tuple[Segment, ...]:
        return tuple(s for p in self.parts for s in p.segments)

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    @property
    def roles(self) -> tuple[Role, ...]:
        return tuple(s.role for s in self.segments)

    @property
    def fused(self) -> bool:
        return len(self.segments) > 1

    def rows_of(self, role: Role) -> tuple[LinearPart, int, int]:
        """The part holding `role`'s rows and their [start, end) within that part."""
        for part in self.parts:
            start = 0
            for seg in part.segments:
                if seg.role is role:
                    return part, start, start + seg.rows
                start += seg.rows
        raise KeyError(f"{self.out} has no {role.value} rows")

    def __str__(self) -> str:
        segs = "|".join(f"{s.role.value}:{s.rows}" for s in self.segments)
        ws = ", ".join(p.weight for p in self.parts)
        return f"{self.out} = linear({self.x}, [{ws}] rows {segs}{', bias' if self.bias else ''}{', tied' if self.tied else ''})"


@dataclass(frozen=True, kw_only=True)
class Attention(Node):
    """Causal grouped-query attention with rotary embedding, reading q, k, v (or one packed
    q|k|v value when `k` and `v` are None) and writing the heads concatenated."""

    q: str
    k: str | None
    v: str | None
    out: str
    cache_slot: int  # which KV cache entry (the decoder layer)
    num_heads: int
    num_kv_heads: int
    head_dim: int
    scale: float
    rope: RopeSpec
    rotary_dim: int  # rotated leading dims of each head (partial rotary when < head_dim)
    window: int | None = None  # sliding window: a query sees the last `window` keys
    softcap: float | None = None  # scores = cap * tanh(scores / cap)
    q_norm: str | None = None  # RMSNorm over each head of q / k (Qwen3, Gemma3)
    k_norm: str | None = None
    norm_eps: float = 1e-6
    norm_offset: float = 0.0
    IN, OUT, TENSORS = ("q", "k", "v"), ("out",), ("q_norm", "k_norm")

    @property
    def packed(self) -> bool:
        return self.k is None

    def __str__(self) -> str:
        ins = ", ".join(self.inputs)
        attrs = [f"heads={self.num_heads}/{self.num_kv_heads}x{self.head_dim}", f"scale={self.scale:.4g}",
                 f"rope(theta={self.rope.theta:g}{'' if self.rope.kind == 'default' else ', ' + self.rope.kind}"
                 f"{'' if self.rotary_dim == self.head_dim else f', dims={self.rotary_dim}'})"]
        if self.window:
            attrs.append(f"window={self.window}")
        if self.softcap:
            attrs.append(f"softcap={self.softcap:g}")
        if self.q_norm:
            attrs.append(f"qk_norm=({self.q_norm}, {self.k_norm})")
        return f"{self.out} = attention({ins}, cache={self.cache_slot}, {', '.join(attrs)})"


@dataclass(frozen=True, kw_only=True)
class GatedAct(Node):
    """out = act(gate) * up; with `up` None, `gate` is one packed gate|up value."""

    gate: str
    up: str | None
    out: str
    act: str  # silu | gelu_pytorch_tanh | gelu
    IN, OUT = ("gate", "up"), ("out",)

    @property
    def packed(self) -> bool:
        return self.up is None

    def __str__(self) -> str:
        if self.packed:
            return f"{self.out} = {self.act}({self.gate}[gate rows]) * {self.gate}[up rows]"
        return f"{self.out} = {self.act}({self.gate}) * {self.up}"


@dataclass(frozen=True, kw_only=True)
class Add(Node):
    a: str
    b: str
    out: str
    IN, OUT = ("a", "b"), ("out",)

    def __str__(self) -> str:
        return f"{self.out} = {self.a} + {self.b}"


@dataclass(frozen=True, kw_only=True)
class SoftCap(Node):
    x: str
    out: str
    cap: float
    IN, OUT = ("x",), ("out",)

    def __str__(self) -> str:
        return f"{self.out} = {self.cap:g} * tanh({self.x} / {self.cap:g})"


def _attr(default: float, **kw: float) -> str:
    return "".join(f", {k}={v:g}" for k, v in kw.items() if v != default)


@dataclass(frozen=True)
class Graph:
    """The nodes in execution order, with the shape of every tensor they read."""

    nodes: tuple[Node, ...]
    params: tuple[tuple[str, tuple[int, ...]], ...]  # (IR tensor name, shape)
    num_layers: int
    input: str = "input_ids"
    output: str = "logits"

    def __str__(self) -> str:
        lines, current = [], object()
        for node in self.nodes:
            if node.layer != current:
                current = node.layer
                lines.append("embedding/head:" if current is None else f"layer {current}:")
            lines.append(f"  {node}")
        return "\n".join(lines)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self.params)

    def layer(self, i: int) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.layer == i)

    def prologue(self) -> tuple[Node, ...]:
        """The nodes before the first decoder layer (the embedding)."""
        out = []
        for n in self.nodes:
            if n.layer is not None:
                break
            out.append(n)
        return tuple(out)

    def epilogue(self) -> tuple[Node, ...]:
        """The nodes after the last decoder layer (final norm, LM head, soft-cap)."""
        return self.nodes[len(self.prologue()) + sum(1 for n in self.nodes if n.layer is not None):]

    def linears(self, layer: int | None | type[Ellipsis] = ...) -> list[Linear]:
        """Every linear, or those of one layer (None: outside the decoder layers)."""
        return [n for n in self.nodes if isinstance(n, Linear) and (layer is ... or n.layer == layer)]

    def linear_weights(self) -> list[str]:
        """Weight names of every quantizable linear part: the decoder layers', then an untied head's."""
        return [w for lin in self.linears() if not lin.tied for w in lin.weights]

    def linear_of(self, weight: str) -> tuple[Linear, LinearPart]:
        for lin in self.linears():
            for part in lin.parts:
                if part.weight == weight:
                    return lin, part
        raise KeyError(weight)

    def producer(self, value: str) -> Node | None:
        for n in self.nodes:
            if value in n.outputs:
                return n
        return None

    def consumers(self, value: str) -> list[Node]:
        return [n for n in self.nodes if value in n.inputs]

    def input_groups(self, layer: int) -> list[list[Linear]]:
        """The linears of a layer grouped by the value they read, in execution order."""
        groups: dict[str, list[Linear]] = {}
        for lin in self.linears(layer):
            groups.setdefault(lin.x, []).append(lin)
        return list(groups.values())

    def live_after(self, layer: int) -> tuple[str, ...]:
        """Values computed up to and including `layer` that later nodes read: what one
        layer hands to the next (`h{i+1}`, or the two terms of an unfused-away sum)."""
        end = max(k for k, n in enumerate(self.nodes) if n.layer is not None and n.layer <= layer)
        produced = {v for n in self.nodes[: end + 1] for v in n.outputs}
        read_later = {v for n in self.nodes[end + 1 :] for v in n.inputs}
        return tuple(sorted(produced & read_later))

    def replace_nodes(self, nodes: list[Node]) -> Graph:
        return dataclasses.replace(self, nodes=tuple(nodes))

    def with_params(self, params: dict[str, tuple[int, ...]]) -> Graph:
        return dataclasses.replace(self, params=tuple(params.items()))


def module_name(layer: int | None, local: str) -> str:
    """The IR module name of a layer-local module (`layers.3.attn.q`), or a global one."""
    return local if layer is None else f"layers.{layer}.{local}"


def build_graph(spec: ArchSpec) -> Graph:
    """The decoder computation of a spec: embedding, layers, final norm and head."""
    s = spec
    h = s.hidden_size
    nodes: list[Node] = [Embed(ids="input_ids", out="h0", weight="embed.weight", scale=s.embedding_scale)]
    params: dict[str, tuple[int, ...]] = {"embed.weight": (s.vocab_size, h)}
    norm = dict(eps=s.rms_norm_eps, offset=s.norm_offset)

    for i in range(s.num_layers):
        m = lambda local, i=i: module_name(i, local)  # noqa: E731
        v = lambda name, i=i: f"l{i}.{name}"  # noqa: E731
        hin, hout = f"h{i}", f"h{i + 1}"

        def add_linear(x: str, out: str, parts: list[tuple[str, list[tuple[Role, int]]]], cols: int, bias: bool, i=i) -> None:
            lparts = tuple(LinearPart(m(local), tuple(Segment(r, n) for r, n in segs)) for local, segs in parts)
            nodes.append(Linear(layer=i, x=x, out=out, parts=lparts, bias=bias))
            for p in lparts:
                params[p.weight] = (p.rows, cols)
                if bias:
                    params[p.bias_name] = (p.rows,)

        def add_norm(x: str, out: str, local: str, i=i) -> None:
            nodes.append(RMSNorm(layer=i, x=x, out=out, weight=m(local) + ".weight", **norm))
            params[m(local) + ".weight"] = (h,)

        add_norm(hin, v("attn_in"), "attn_norm")
        qkv = [(Role.Q, s.q_size), (Role.K, s.kv_size), (Role.V, s.kv_size)]
        if s.fused_qkv:
            add_linear(v("attn_in"), v("qkv"), [("attn.qkv", qkv)], h, s.attention_bias)
            q, k, vv = v("qkv"), None, None
        else:
            for role, rows in qkv:
                add_linear(v("attn_in"), v(role.value), [(f"attn.{role.value}", [(role, rows)])], h, s.attention_bias)
            q, k, vv = v("q"), v("k"), v("v")
        qn = kn = None
        if s.qk_norm:
            qn, kn = m("attn.q_norm.weight"), m("attn.k_norm.weight")
            params[qn] = params[kn] = (s.head_dim,)
        nodes.append(Attention(
            layer=i, q=q, k=k, v=vv, out=v("ctx"), cache_slot=i, num_heads=s.num_heads, num_kv_heads=s.num_kv_heads,
            head_dim=s.head_dim, scale=s.softmax_scale, rope=s.layer_rope(i), rotary_dim=s.rotary_dim,
            window=s.layer_window(i), softcap=s.attn_logit_softcap, q_norm=qn, k_norm=kn, **{f"norm_{k2}": v2 for k2, v2 in norm.items()},
        ))
        add_linear(v("ctx"), v("attn_out"), [("attn.o", [(Role.O, h)])], s.q_size, False)
        attn_out = v("attn_out")
        if s.sandwich_norm:
            add_norm(attn_out, v("attn_out_normed"), "post_attn_norm")
            attn_out = v("attn_out_normed")
        nodes.append(Add(layer=i, a=hin, b=attn_out, out=v("h_mid")))
        add_norm(v("h_mid"), v("mlp_in"), "mlp_norm")
        ff = s.intermediate_size
        if s.fused_gate_up:
            add_linear(v("mlp_in"), v("gate_up"), [("mlp.gate_up", [(Role.GATE, ff), (Role.UP, ff)])], h, s.mlp_bias)
            nodes.append(GatedAct(layer=i, gate=v("gate_up"), up=None, out=v("act"), act=s.hidden_act))
        else:
            add_linear(v("mlp_in"), v("gate"), [("mlp.gate", [(Role.GATE, ff)])], h, s.mlp_bias)
            add_linear(v("mlp_in"), v("up"), [("mlp.up", [(Role.UP, ff)])], h, s.mlp_bias)
            nodes.append(GatedAct(layer=i, gate=v("gate"), up=v("up"), out=v("act"), act=s.hidden_act))
        add_linear(v("act"), v("mlp_out"), [("mlp.down", [(Role.DOWN, h)])], ff, s.mlp_bias)
        mlp_out = v("mlp_out")
        if s.sandwich_norm:
            add_norm(mlp_out, v("mlp_out_normed"), "post_mlp_norm")
            mlp_out = v("mlp_out_normed")
        nodes.append(Add(layer=i, a=v("h_mid"), b=mlp_out, out=hout))

    last = f"h{s.num_layers}"
    nodes.append(RMSNorm(x=last, out="final", weight="final_norm.weight", **norm))
    params["final_norm.weight"] = (h,)
    head_module = "embed" if s.tie_word_embeddings else "lm_head"
    if not s.tie_word_embeddings:
        params["lm_head.weight"] = (s.vocab_size, h)
    logits = "logits_raw" if s.final_logit_softcap else "logits"
    nodes.append(Linear(x="final", out=logits, parts=(LinearPart(head_module, (Segment(Role.LM_HEAD, s.vocab_size),)),),
                        tied=s.tie_word_embeddings))
    if s.final_logit_softcap:
        nodes.append(SoftCap(x=logits, out="logits", cap=s.final_logit_softcap))
    return Graph(nodes=tuple(nodes), params=tuple(params.items()), num_layers=s.num_layers)
