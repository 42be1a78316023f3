"""A torch interpreter of the model graph, with a KV cache.

It is the numerical reference: calibration runs it to observe activations, evaluation
runs it for perplexity and KL, and tests hold its logits against `transformers`.
Quantized weights run as their dequantized values and annotated activations are
quantize-dequantized before their linear, so a quantized IR runs as its hardware would
compute it up to accumulation order.

`print(model.graph)` shows what runs; each node type has one small method below
(`_embed`, `_rms_norm`, `_linear`, `_attention`, ...). A layer reads a `State` (the named
values one layer hands the next, `h{i}` in an unfused graph) and returns the next one,
so layer-by-layer calibration can run one decoder layer at a time; `layer_batches` runs
one layer on the whole calibration set a group of linears at a time (GPTQ's sequential
mode), and `run_between` runs the part of a layer between two values (AWQ's block loss).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from inferc.core.ir import (
    Add,
    ArchSpec,
    Attention,
    Embed,
    GatedAct,
    Linear,
    ModelIR,
    Node,
    RMSNorm,
    RopeSpec,
    SkipRMSNorm,
    SoftCap,
)
from inferc.core.numerics import dequantize, fake_quantize_activation
from inferc.core.numerics.rope import rope_inv_freq

# observer(linear_weight_name, input [..., in_features])
Observer = Callable[[str, torch.Tensor], None]
# before(weight names of linears reading one input, that input per batch)
BeforeLinears = Callable[[list[str], list[torch.Tensor]], None]
# the named values live between two layers
State = dict[str, torch.Tensor]


@dataclass
class KVCache:
    """Per-layer keys and values, [batch, kv_heads, tokens, head_dim]."""

    keys: list[torch.Tensor | None] = field(default_factory=list)
    values: list[torch.Tensor | None] = field(default_factory=list)

    @classmethod
    def empty(cls, num_layers: int) -> KVCache:
        return cls([None] * num_layers, [None] * num_layers)

    @property
    def length(self) -> int:
        k = self.keys[0] if self.keys else None
        return 0 if k is None else k.shape[2]

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the leading cos.shape[-1] dims of each head (all of them unless partial)."""
    d = cos.shape[-1]
    if d == x.shape[-1]:
        return x * cos + _rotate_half(x) * sin
    rot, rest = x[..., :d], x[..., d:]
    return torch.cat([rot * cos + _rotate_half(rot) * sin, rest], dim=-1)


class ReferenceModel:
    """Runs a ModelIR's graph in torch. Weights are materialized on first use."""

    def __init__(
        self,
        ir: ModelIR,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        quantized: bool = True,
    ) -> None:
        self.ir = ir
        self.spec: ArchSpec = ir.spec
        self.graph = ir.graph
        self.device = torch.device(device)
        self.dtype = dtype
        self.quantized = quantized
        self.observers: list[Observer] = []
        self._params: dict[str, torch.Tensor] = {}
        self._stacked: dict[tuple[str, ...], torch.Tensor] = {}  # fused linears' concatenated weights
        self._inv_freq: dict[tuple[RopeSpec, int], torch.Tensor] = {}
        self._ops: dict[type, Callable[..., None]] = {
            Embed: self._embed, RMSNorm: self._rms_norm, SkipRMSNorm: self._skip_rms_norm, Linear: self._linear,
            Attention: self._attention, GatedAct: self._gated_act, Add: self._add, SoftCap: self._softcap,
        }
        self._layer_plans: dict[int, tuple[tuple[Node, ...], tuple[str, ...], dict[int, list[str]]]] = {}

    # ---- weights -------------------------------------------------------------------

    def param(self, name: str) -> torch.Tensor:
        """A tensor as this model computes with it (dequantized if annotated)."""
        p = self._params.get(name)
        if p is None:
            if self.quantized and name in self.ir.weights:
                p = dequantize(self.ir.weights[name])
            else:
                p = self.ir.tensors.get(name)
            p = p.to(device=self.device, dtype=self.dtype)
            self._params[name] = p
        return p

    def _stack(self, names: tuple[str, ...]) -> torch.Tensor:
        """The row-wise concatenation of several parts' tensors (one fused linear)."""
        if len(names) == 1:
            return self.param(names[0])
        s = self._stacked.get(names)
        if s is None:
            s = self._stacked[names] = torch.cat([self.param(n) for n in names])
        return s

    def _forget_stacks(self, names) -> None:
        for key in [k for k in self._stacked if any(n in names for n in k)]:
            del self._stacked[key]

    @contextmanager
    def overriding(self, weights: dict[str, torch.Tensor]):
        """Compute with these tensors in place of the named weights until the block exits
        (what a calibration search uses to try candidate weights in a whole block)."""
        saved = {name: self._params.get(name) for name in weights}
        for name, w in weights.items():
            self._params[name] = w.to(device=self.device, dtype=self.dtype)
        self._forget_stacks(weights)
        try:
            yield self
        finally:
            for name, w in saved.items():
                if w is None:
                    self._params.pop(name, None)
                else:
                    self._params[name] = w
            self._forget_stacks(weights)

    def release(self, prefix: str = "") -> None:
        """Drop materialized weights whose names start with prefix (all by default)."""
        names = [n for n in self._params if n.startswith(prefix)]
        for name in names:
            del self._params[name]
        self._forget_stacks(set(names))

    # ---- one method per node type ------------------------------------------------------

    def _embed(self, node: Embed, env: State, positions: torch.Tensor, cache: KVCache | None) -> None:
        h = F.embedding(env[node.ids].to(self.device), self.param(node.weight))
        if node.scale != 1.0:
            h = h * torch.tensor(node.scale, dtype=h.dtype)
        env[node.out] = h

    def _rms(self, x: torch.Tensor, weight: str, eps: float, offset: float) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        return (xf * (offset + self.param(weight).float())).to(x.dtype)

    def _rms_norm(self, node: RMSNorm, env: State, positions: torch.Tensor, cache: KVCache | None) -> None:
        env[node.out] = self._rms(env[node.x], node.weight, node.eps, node.offset)

    def _skip_rms_norm(self, node: SkipRMSNorm, env: State, positions: torch.Tensor, cache: KVCache | None) -> None:
        s = env[node.skip] + env[node.x]
        env[node.sum_out] = s
        env[node.out] = self._rms(s, node.weight, node.eps, node.offset)

    def _linear(self, node: Linear, env: State, positions: torch.Tensor, cache: KVCache | None) -> None:
        x = env[node.x]
        for observe in self.observers:
            for w in node.weights:
                observe(w, x)
        act = self.ir.activations.get(node.weights[0]) if self.quantized else None
        if act is not None:
            x = fake_quantize_activation(act, x)
        bias = self._stack(tuple(p.bias_name for p in node.parts)) if node.bias else None
        env[node.out] = F.linear(x, self._stack(node.weights), bias)

    def _rope(self, rope: RopeSpec, dim: int, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (rope, dim)
        if key not in self._inv_freq:
            self._inv_freq[key] = rope_inv_freq(rope, dim).to(self.device)
        freqs = positions.float()[:, None] * self._inv_freq[key][None, :]  # [T, dim/2]
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos().to(self.dtype), emb.sin().to(self.dtype)

    def _qkv(self, node: Attention, env: State, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q [b, heads, t, d], k and v [b, kv_heads, t, d], q/k normed and rotated."""
        nh, nkv, hd = node.num_heads, node.num_kv_heads, node.head_dim
        if node.packed:  # one q|k|v value from a fused linear
            q, k, v = env[node.q].split([nh * hd, nkv * hd, nkv * hd], dim=-1)
        else:
            q, k, v = env[node.q], env[node.k], env[node.v]  # type: ignore[index]
        b, t, _ = q.shape
        q, k, v = q.reshape(b, t, nh, hd), k.reshape(b, t, nkv, hd), v.reshape(b, t, nkv, hd)
        if node.q_norm:
            q = self._rms(q, node.q_norm, node.norm_eps, node.norm_offset)
            k = self._rms(k, node.k_norm, node.norm_eps, node.norm_offset)  # type: ignore[arg-type]
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))
        cos, sin = self._rope(node.rope, node.rotary_dim, positions)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def _attention(self, node: Attention, env: State, positions: torch.Tensor, cache: KVCache | None) -> None:
        nh, nkv, hd = node.num_heads, node.num_kv_heads, node.head_dim
        q, k, v = self._qkv(node, env, positions)
        b, t = q.shape[0], q.shape[2]
        k_pos = positions
        if cache is not None:
            k, v = cache.append(node.cache_slot, k, v)
            k_pos = torch.arange(k.shape[2], device=self.device)
        rep = nh // nkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        allowed = k_pos[None, :] <= positions[:, None]  # [t, T]
        if node.window:
            allowed &= k_pos[None, :] > positions[:, None] - node.window
        if node.softcap:
            scores = (q @ k.transpose(-1, -2)) * node.scale  # [b, h, t, T]
            scores = torch.tanh(scores / node.softcap) * node.softcap
            scores = scores.masked_fill(~allowed, float("-inf"))
            out = torch.softmax(scores.float(), dim=-1).to(v.dtype) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=node.scale)
        env[node.out] = out.transpose(1, 2).reshape(b, t, nh * hd)

    def _gated_act(self, node: GatedAct, env: State, positions: torch.Tensor, cache: KVCache | None) -> None:
        gate, up = env[node.gate].chunk(2, dim=-1) if node.packed else (env[node.gate], env[node.up])  # type: ignore[index]
        if node.act == "silu":
            g = F.silu(gate)
        else:
            g = F.gelu(gate, approximate="tanh" if node.act == "gelu_pytorch_tanh" else "none")
        env[node.out] = g * up

    def _add(self, node: Add, env: State, positions: torch.Tensor, cache: KVCache | None) -> None:
        env[node.out] = env[node.a] + env[node.b]

    def _softcap(self, node: SoftCap, env: State, positions: torch.Tensor, cache: KVCache | None) -> None:
        x = env[node.x].float()
        env[node.out] = torch.tanh(x / node.cap) * node.cap

    def run_node(self, node: Node, env: State, positions: torch.Tensor, cache: KVCache | None = None) -> None:
        self._ops[type(node)](node, env, positions, cache)

    # ---- the forward, decomposed --------------------------------------------------

    def _layer_plan(self, i: int) -> tuple[tuple[Node, ...], tuple[str, ...], dict[int, list[str]]]:
        """Layer i's nodes, the values it hands on, and which values die after each node."""
        if i not in self._layer_plans:
            nodes, keep = self.graph.layer(i), set(self.graph.live_after(i))
            last: dict[str, int] = {}
            for k, node in enumerate(nodes):
                for v in node.inputs:
                    last[v] = k
            dies: dict[int, list[str]] = {}
            for v, k in last.items():
                if v not in keep:
                    dies.setdefault(k, []).append(v)
            self._layer_plans[i] = (nodes, tuple(keep), dies)
        return self._layer_plans[i]

    def start(self, ids: torch.Tensor, positions: torch.Tensor | None = None) -> State:
        """ids [b, t] -> the state entering layer 0 (the embedding)."""
        env: State = {self.graph.input: ids}
        pos = positions if positions is not None else torch.arange(ids.shape[1], device=self.device)
        for node in self.graph.prologue():
            self.run_node(node, env, pos)
        env.pop(self.graph.input)
        return env

    def layer(self, i: int, state: State, positions: torch.Tensor, cache: KVCache | None = None) -> State:
        return self.layer_batches(i, [state], positions, cache=cache)[0]

    def layer_batches(
        self,
        i: int,
        states: list[State],
        positions: torch.Tensor,
        before: BeforeLinears | None = None,
        cache: KVCache | None = None,
    ) -> list[State]:
        """Layer i on several batches, one node at a time: every batch has computed a
        linear group's input before any batch goes through it, and `before(names, inputs)`
        sees that whole input first (the group: every linear of the layer reading it). A
        calibration can so quantize the group's weights from all its inputs, and the
        batches go on through the quantized group."""
        assert cache is None or len(states) == 1, "a KV cache holds one batch"
        nodes, keep, dies = self._layer_plan(i)
        envs = [dict(s) for s in states]
        announced: set[str] = set()
        for k, node in enumerate(nodes):
            if before is not None and isinstance(node, Linear) and node.x not in announced:
                announced.add(node.x)
                group = [w for lin in self.graph.linears(i) if lin.x == node.x for w in lin.weights]
                before(group, [env[node.x] for env in envs])
            for env in envs:
                self.run_node(node, env, positions, cache)
                for v in dies.get(k, ()):
                    env.pop(v, None)
        return [{v: env[v] for v in keep} for env in envs]

    def finish(self, state: State, positions: torch.Tensor | None = None) -> torch.Tensor:
        """The state after the last layer -> logits [b, t, vocab] (float32)."""
        env = dict(state)
        pos = positions if positions is not None else torch.zeros(0, dtype=torch.long, device=self.device)
        for node in self.graph.epilogue():
            self.run_node(node, env, pos)
        return env[self.graph.output].float()

    def run_between(self, layer: int, start: str, stop: str, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The value `stop` of a layer computed from `start` = x alone (no cache): the part
        of the layer that `start` feeds, e.g. an attention block from its input norm to
        o's output."""
        nodes = self.graph.layer(layer)
        needed, chosen = {stop}, []
        for node in reversed(nodes):
            if needed & set(node.outputs):
                chosen.append(node)
                needed |= {v for v in node.inputs if v != start}
        produced = {v for n in chosen for v in n.outputs}
        missing = needed - produced - {stop}
        assert not missing, f"layer {layer}: {stop} needs {sorted(missing)} besides {start}"
        env: State = {start: x}
        for node in reversed(chosen):
            self.run_node(node, env, positions)
        return env[stop]

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """ids [b, t] -> logits [b, t, vocab]; with a cache, continues after its tokens."""
        start = cache.length if cache is not None else 0
        positions = torch.arange(start, start + ids.shape[1], device=self.device)
        state = self.start(ids, positions)
        for i in range(self.graph.num_layers):
            state = self.layer(i, state, positions, cache)
        return self.finish(state, positions)

    __call__ = forward

    def new_cache(self) -> KVCache:
        return KVCache.empty(self.graph.num_layers)
