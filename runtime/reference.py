"""A torch forward of the IR, written out layer by layer, with a KV cache.

It is the numerical reference: calibration runs it to observe activations, evaluation
runs it for perplexity and KL, and tests hold its logits against `transformers`.
Quantized weights run as their dequantized values and annotated activations are
quantize-dequantized before their linear, so a quantized IR runs as its hardware would
compute it up to accumulation order.

The forward is decomposed (`embed`, `layer`, `head`) so layer-by-layer calibration
can run one decoder layer at a time; `layer_batches` runs one layer on the whole
calibration set a group of linears at a time (GPTQ's sequential mode).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from inferc.core.ir import ArchSpec, ModelIR, RopeSpec
from inferc.core.numerics import dequantize, fake_quantize_activation

# observer(linear_weight_name, input [..., in_features])
Observer = Callable[[str, torch.Tensor], None]
# before(weight names of linears reading one input, that input per batch)
BeforeLinears = Callable[[list[str], list[torch.Tensor]], None]


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


def rope_inv_freq(rope: RopeSpec, head_dim: int) -> torch.Tensor:
    inv = 1.0 / (rope.theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    if rope.kind == "linear":
        inv = inv / rope.factor
    elif rope.kind == "llama3":
        low_wavelen = rope.original_max_position / rope.low_freq_factor
        high_wavelen = rope.original_max_position / rope.high_freq_factor
        wavelen = 2 * torch.pi / inv
        scaled = torch.where(wavelen > low_wavelen, inv / rope.factor, inv)
        smooth = (rope.original_max_position / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor)
        mid = (1 - smooth) * scaled / rope.factor + smooth * scaled
        is_mid = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv = torch.where(is_mid, mid, scaled)
    return inv.float()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + _rotate_half(x) * sin


class ReferenceModel:
    """Runs a ModelIR in torch. Weights are materialized per layer on first use."""

    def __init__(
        self,
        ir: ModelIR,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        quantized: bool = True,
    ) -> None:
        self.ir = ir
        self.spec: ArchSpec = ir.spec
        self.device = torch.device(device)
        self.dtype = dtype
        self.quantized = quantized
        self.observers: list[Observer] = []
        self._params: dict[str, torch.Tensor] = {}
        self._inv_freq: dict[RopeSpec, torch.Tensor] = {}

    # ---- weights -------------------------------------------------------------------

    def param(self, name: str) -> torch.Tensor:
        """A weight as this model computes with it (dequantized if annotated)."""
        p = self._params.get(name)
        if p is None:
            if self.quantized and name in self.ir.weights:
                p = dequantize(self.ir.weights[name])
            else:
                p = self.ir.tensors.get(name)
            p = p.to(device=self.device, dtype=self.dtype)
            self._params[name] = p
        return p

    @contextmanager
    def overriding(self, weights: dict[str, torch.Tensor]):
        """Compute with these tensors in place of the named weights until the block exits
        (what a calibration search uses to try candidate weights in a whole block)."""
        saved = {name: self._params.get(name) for name in weights}
        for name, w in weights.items():
            self._params[name] = w.to(device=self.device, dtype=self.dtype)
        try:
            yield self
        finally:
            for name, w in saved.items():
                if w is None:
                    self._params.pop(name, None)
                else:
                    self._params[name] = w

    def release(self, prefix: str = "") -> None:
        """Drop materialized weights whose names start with prefix (all by default)."""
        for name in [n for n in self._params if n.startswith(prefix)]:
            del self._params[name]

    # ---- building blocks -----------------------------------------------------------

    def linear(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """x [..., in] @ W[name].T; `name` is the module path without `.weight`."""
        wname = name + ".weight"
        for observe in self.observers:
            observe(wname, x)
        if self.quantized and wname in self.ir.activations:
            x = fake_quantize_activation(self.ir.activations[wname], x)
        bias_name = name + ".bias"
        bias = self.param(bias_name) if bias_name in self.ir.tensors else None
        return F.linear(x, self.param(wname), bias)

    def norm(self, name: str, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.spec.rms_norm_eps)
        return (xf * (self.spec.norm_offset + self.param(name + ".weight").float())).to(x.dtype)

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.hidden_act == "silu":
            return F.silu(x)
        return F.gelu(x, approximate="tanh" if self.spec.hidden_act == "gelu_pytorch_tanh" else "none")

    def _rope(self, layer: int, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rope = self.spec.layer_rope(layer)
        if rope not in self._inv_freq:
            self._inv_freq[rope] = rope_inv_freq(rope, self.spec.head_dim).to(self.device)
        freqs = positions.float()[:, None] * self._inv_freq[rope][None, :]  # [T, d/2]
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos().to(self.dtype), emb.sin().to(self.dtype)

    def _mask(self, layer: int, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        allowed = k_pos[None, :] <= q_pos[:, None]  # [Tq, Tk]
        window = self.spec.layer_window(layer)
        if window:
            allowed &= k_pos[None, :] > q_pos[:, None] - window
        return allowed

    def attention(self, layer: int, x: torch.Tensor, positions: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        return self.linear(f"model.layers.{layer}.self_attn.o_proj", self.attention_context(layer, x, positions, cache))

    def attention_context(self, layer: int, x: torch.Tensor, positions: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        """The attention up to o_proj: heads concatenated, [b, t, q_size]."""
        s = self.spec
        p = f"model.layers.{layer}.self_attn."
        b, t, _ = x.shape
        q = self.linear(p + "q_proj", x).view(b, t, s.num_heads, s.head_dim)
        k = self.linear(p + "k_proj", x).view(b, t, s.num_kv_heads, s.head_dim)
        v = self.linear(p + "v_proj", x).view(b, t, s.num_kv_heads, s.head_dim)
        if s.qk_norm:
            q = self.norm(p + "q_norm", q)
            k = self.norm(p + "k_norm", k)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # [b, heads, t, d]
        cos, sin = self._rope(layer, positions)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k_pos = positions
        if cache is not None:
            k, v = cache.append(layer, k, v)
            k_pos = torch.arange(k.shape[2], device=self.device)
        rep = s.num_heads // s.num_kv_heads
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        mask = self._mask(layer, positions, k_pos)  # [t, T]
        if s.attn_logit_softcap:
            scores = (q @ k.transpose(-1, -2)) * s.softmax_scale  # [b, h, t, T]
            scores = torch.tanh(scores / s.attn_logit_softcap) * s.attn_logit_softcap
            scores = scores.masked_fill(~mask, float("-inf"))
            out = torch.softmax(scores.float(), dim=-1).to(v.dtype) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=s.softmax_scale)
        return out.transpose(1, 2).reshape(b, t, s.q_size)

    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        return self.linear(f"model.layers.{layer}.mlp.down_proj", self.mlp_hidden(layer, x))

    def mlp_hidden(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """The MLP up to down_proj: act(gate_proj x) * up_proj x, [..., intermediate]."""
        p = f"model.layers.{layer}.mlp."
        return self._act(self.linear(p + "gate_proj", x)) * self.linear(p + "up_proj", x)

    # ---- the forward, decomposed --------------------------------------------------

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [b, t] -> hidden [b, t, hidden]."""
        h = F.embedding(ids.to(self.device), self.param("model.embed_tokens.weight"))
        if self.spec.embedding_scale != 1.0:
            h = h * torch.tensor(self.spec.embedding_scale, dtype=h.dtype)
        return h

    def layer(self, i: int, h: torch.Tensor, positions: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        return self.layer_batches(i, [h], positions, cache=cache)[0]

    def layer_batches(
        self,
        i: int,
        hs: list[torch.Tensor],
        positions: torch.Tensor,
        before: BeforeLinears | None = None,
        cache: KVCache | None = None,
    ) -> list[torch.Tensor]:
        """Layer i on several batches, one group of linears at a time: every batch has
        computed a group's input before any batch goes through it, and `before(names,
        inputs)` sees that whole input first. A calibration can so quantize the group's
        weights from all its inputs, and the batches go on through the quantized group."""
        assert cache is None or len(hs) == 1, "a KV cache holds one batch"
        p = f"model.layers.{i}."
        attn, mlp = p + "self_attn.", p + "mlp."

        def group(names: list[str], xs: list[torch.Tensor]) -> list[torch.Tensor]:
            if before is not None:
                before([n + ".weight" for n in names], xs)
            return xs

        sandwich = self.spec.sandwich_norm
        xs = group([attn + "q_proj", attn + "k_proj", attn + "v_proj"], [self.norm(p + "input_layernorm", h) for h in hs])
        ctxs = group([attn + "o_proj"], [self.attention_context(i, x, positions, cache) for x in xs])
        del xs
        outs = [self.linear(attn + "o_proj", c) for c in ctxs]
        del ctxs
        if sandwich:
            outs = [self.norm(p + "post_attention_layernorm", o) for o in outs]
        hs = [h + o for h, o in zip(hs, outs)]
        pre_mlp = p + ("pre_feedforward_layernorm" if sandwich else "post_attention_layernorm")
        xs = group([mlp + "gate_proj", mlp + "up_proj"], [self.norm(pre_mlp, h) for h in hs])
        acts = group([mlp + "down_proj"], [self.mlp_hidden(i, x) for x in xs])
        del xs
        outs = [self.linear(mlp + "down_proj", a) for a in acts]
        del acts
        if sandwich:
            outs = [self.norm(p + "post_feedforward_layernorm", o) for o in outs]
        return [h + o for h, o in zip(hs, outs)]

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """hidden [b, t, hidden] -> logits [b, t, vocab] (float32)."""
        h = self.norm("model.norm", h)
        name = self.ir.lm_head_name
        for observe in self.observers:
            observe(name, h)
        logits = F.linear(h, self.param(name)).float()
        if self.spec.final_logit_softcap:
            cap = self.spec.final_logit_softcap
            logits = torch.tanh(logits / cap) * cap
        return logits

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """ids [b, t] -> logits [b, t, vocab]; with a cache, continues after its tokens."""
        start = cache.length if cache is not None else 0
        positions = torch.arange(start, start + ids.shape[1], device=self.device)
        h = self.embed(ids)
        for i in range(self.spec.num_layers):
            h = self.layer(i, h, positions, cache)
        return self.head(h)

    __call__ = forward

    def new_cache(self) -> KVCache:
        return KVCache.empty(self.spec.num_layers)
