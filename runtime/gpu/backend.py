"""The CUDA backend: the model graph interpreted with the GPU kernels, a static KV cache
and the decode step captured in a CUDA graph.

`GpuModel` is the reference interpreter (`runtime/reference.py`) with the node methods
that matter for speed replaced: linears run their prepared kernels (one launch per fused
linear), RMS norms (and skip + norm) and silu-gating are one Triton kernel each, the
rotary embedding of a packed q|k|v runs in place, and attention writes the new keys and
values into a cache preallocated once and attends over the whole cache under a
position mask, so every decode step has the same shapes and can be replayed from a
CUDA graph. Grouped-query heads are folded into the query length (no repeated keys).

`CudaBackend` implements the runtime's backend interface (`logits`, `start`, `step`)
and, for batched generation, `prefill(ids)` (in chunks) and `decode(tokens)`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from inferc.core.errors import UnsupportedError
from inferc.core.ir import Attention, GatedAct, Linear, ModelIR, RMSNorm, RopeSpec, SkipRMSNorm
from inferc.runtime.gpu import kernels
from inferc.runtime.gpu.linear import Prepared, prepare_linear
from inferc.runtime.reference import ReferenceModel, rope_inv_freq


class StaticKVCache:
    """Keys and values of every attention, [batch, kv_heads, max_len, head_dim], allocated once."""

    def __init__(self, attentions: list[Attention], batch: int, max_len: int, device: torch.device, dtype: torch.dtype) -> None:
        slots = max(a.cache_slot for a in attentions) + 1
        self.keys: list[torch.Tensor] = [torch.empty(0)] * slots
        self.values: list[torch.Tensor] = [torch.empty(0)] * slots
        for a in attentions:
            shape = (batch, a.num_kv_heads, max_len, a.head_dim)
            self.keys[a.cache_slot] = torch.zeros(shape, device=device, dtype=dtype)
            self.values[a.cache_slot] = torch.zeros(shape, device=device, dtype=dtype)
        self.batch, self.max_len, self.length = batch, max_len, 0
        self.k_pos = torch.arange(max_len, device=device)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in [*self.keys, *self.values])


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


class GpuModel(ReferenceModel):
    """The graph interpreter with GPU kernels for linears, norms, gating and attention."""

    def __init__(self, ir: ModelIR, device: str | torch.device = "cuda", dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__(ir, device=device, dtype=dtype, quantized=True)
        self.linears: dict[str, Prepared] = {node.out: self._prepare(node) for node in self.graph.linears()}
        self.attentions = [n for n in self.graph if isinstance(n, Attention)]
        self.notes: list[str] = []
        if any(a.format is not None and a.format.value == "nvfp4" for a in ir.activations.values()):
            self.notes.append("NVFP4 activations run in bf16 (emulated W4A16): Hopper has no FP4 tensor cores")
        self._rope_memo: dict = {}  # per forward: rotary tables and attention masks

    def _prepare(self, node: Linear) -> Prepared:
        parts = [self.ir.weights.get(w) if w in self.ir.weights else self.ir.tensors.get(w) for w in node.weights]
        bias = torch.cat([self.ir.tensors.get(p.bias_name) for p in node.parts]) if node.bias else None
        act = self.ir.activations.get(node.weights[0])
        if node.tied:  # the head shares the embedding's tensor
            return prepare_linear([self.param(node.weights[0])], bias, None, self.device, self.dtype)
        return prepare_linear(parts, bias, act, self.device, self.dtype)

    def weight_bytes(self) -> int:
        """Bytes of every weight the forward reads once per step (linears, embedding row aside)."""
        return sum(lin.weight_bytes() for lin in self.linears.values())

    # ---- node methods replaced for the GPU ------------------------------------------

    def _linear(self, node: Linear, env, positions, cache) -> None:
        env[node.out] = self.linears[node.out](env[node.x])

    def _rms_norm(self, node: RMSNorm, env, positions, cache) -> None:
        env[node.out] = kernels.rms_norm(env[node.x], self.param(node.weight), node.eps, node.offset)[0]

    def _skip_rms_norm(self, node: SkipRMSNorm, env, positions, cache) -> None:
        env[node.out], env[node.sum_out] = kernels.rms_norm(env[node.x], self.param(node.weight), node.eps, node.offset,
                                                            skip=env[node.skip])

    def _gated_act(self, node: GatedAct, env, positions, cache) -> None:
        if node.packed and node.act == "silu":
            env[node.out] = kernels.silu_mul(env[node.gate])
        else:
            super()._gated_act(node, env, positions, cache)

    def _rope_half(self, rope: RopeSpec, dim: int, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [T, dim / 2] in fp32, computed once per forward."""
        key = (rope, dim)
        if key not in self._rope_memo:
            if key not in self._inv_freq:
                self._inv_freq[key] = rope_inv_freq(rope, dim).to(self.device)
            freqs = positions.float()[:, None] * self._inv_freq[key][None, :]
            self._rope_memo[key] = (freqs.cos().contiguous(), freqs.sin().contiguous())
        return self._rope_memo[key]

    def _mask(self, window: int | None, rep: int, positions: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """Which cache slots each query sees, [rep * t, L] (rows repeated for folded heads), once per forward."""
        key = ("mask", window, rep)
        if key not in self._rope_memo:
            allowed = k_pos[None, :] <= positions[:, None]  # [t, L]
            if window:
                allowed &= k_pos[None, :] > positions[:, None] - window
            self._rope_memo[key] = allowed.repeat(rep, 1) if rep > 1 else allowed  # type: ignore[assignment]
        return self._rope_memo[key]  # type: ignore[return-value]

    def _qkv(self, node: Attention, env, positions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q [b, heads, t, d], k, v [b, kv_heads, t, d] with the rotary embedding applied."""
        nh, nkv, hd = node.num_heads, node.num_kv_heads, node.head_dim
        if node.packed and not node.q_norm and _pow2(node.rotary_dim // 2):
            qkv = env[node.q]
            b, t, _ = qkv.shape
            cos, sin = self._rope_half(node.rope, node.rotary_dim, positions)
            kernels.rope_(qkv, cos, sin, nh + nkv, hd)  # in place: nothing else reads the linear's output
            q, k, v = qkv.split([nh * hd, nkv * hd, nkv * hd], dim=-1)
            return (q.reshape(b, t, nh, hd).transpose(1, 2), k.reshape(b, t, nkv, hd).transpose(1, 2),
                    v.reshape(b, t, nkv, hd).transpose(1, 2))
        return super()._qkv(node, env, positions)

    def _attention(self, node: Attention, env, positions, cache) -> None:
        if not isinstance(cache, StaticKVCache):
            raise UnsupportedError("the GPU model attends through its static KV cache; run it through CudaBackend")
        nh, nkv, hd = node.num_heads, node.num_kv_heads, node.head_dim
        q, k, v = self._qkv(node, env, positions)
        b, _, t, _ = q.shape
        keys, values = cache.keys[node.cache_slot][:b], cache.values[node.cache_slot][:b]
        keys.index_copy_(2, positions, k)
        values.index_copy_(2, positions, v)
        rep = nh // nkv
        allowed = self._mask(node.window, rep if not node.softcap else 1, positions, cache.k_pos)
        if node.softcap:  # the reference's explicit scores (no fused kernel soft-caps)
            kk, vv = keys.repeat_interleave(rep, dim=1), values.repeat_interleave(rep, dim=1)
            scores = torch.tanh((q @ kk.transpose(-1, -2)) * node.scale / node.softcap) * node.softcap
            out = torch.softmax(scores.masked_fill(~allowed, float("-inf")).float(), dim=-1).to(vv.dtype) @ vv
        else:  # fold each kv head's `rep` query heads into the query length
            qg = q.reshape(b, nkv, rep * t, hd)
            out = F.scaled_dot_product_attention(qg, keys, values, attn_mask=allowed, scale=node.scale)
            out = out.reshape(b, nh, t, hd)
        env[node.out] = out.transpose(1, 2).reshape(b, t, nh * hd)

    # ---- the forward ------------------------------------------------------------------

    def run(self, ids: torch.Tensor, positions: torch.Tensor, cache: StaticKVCache, last_only: bool) -> torch.Tensor:
        """ids [b, t] at `positions` [t] -> logits [b, t or 1, vocab] (float32)."""
        self._rope_memo = {}
        state = self.start(ids, positions)
        for i in range(self.graph.num_layers):
            state = self.layer(i, state, positions, cache)
        if last_only:
            state = {name: v[:, -1:] for name, v in state.items()}
            positions = positions[-1:]
        return self.finish(state, positions)


class CudaBackend:
    """Runs an IR on a CUDA GPU with the quantized kernels (see the module docstring)."""

    name = "cuda"

    def __init__(self, ir: ModelIR, device: str = "cuda", dtype: torch.dtype = torch.bfloat16, max_len: int = 2048,
                 prefill_chunk: int = 512, graphs: bool = True) -> None:
        if not torch.cuda.is_available():
            raise UnsupportedError("the CUDA backend needs a CUDA GPU and none is visible; use --device cpu")
        self.device = torch.device(device)
        self.model = GpuModel(ir, self.device, dtype)
        self.max_len, self.prefill_chunk, self.use_graphs = max_len, prefill_chunk, graphs
        self.cache: StaticKVCache | None = None
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @property
    def vocab_size(self) -> int:
        return self.model.spec.vocab_size

    @property
    def notes(self) -> list[str]:
        return self.model.notes

    def _cache_for(self, batch: int, length: int) -> StaticKVCache:
        if self.cache is None or self.cache.batch != batch or self.cache.max_len < length:
            self.cache = None
            self._graphs.clear()
            self.cache = StaticKVCache(self.model.attentions, batch, max(self.max_len, length), self.device, self.model.dtype)
        return self.cache

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor, new_tokens: int = 0, all_logits: bool = False) -> torch.Tensor:
        """Fill a fresh cache with ids [b, t] in chunks -> logits of the last position [b, vocab]
        (all positions [b, t, vocab] with all_logits); room is kept for new_tokens more."""
        ids = ids.to(self.device)
        b, t = ids.shape
        cache = self._cache_for(b, t + new_tokens)
        outs = []
        for c0 in range(0, t, self.prefill_chunk):
            c1 = min(t, c0 + self.prefill_chunk)
            pos = torch.arange(c0, c1, device=self.device)
            outs.append(self.model.run(ids[:, c0:c1], pos, cache, last_only=not all_logits))
        cache.length = t
        return torch.cat(outs, dim=1) if all_logits else outs[-1][:, -1]

    def _eager_step(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return self.model.run(tokens, pos, self.cache, last_only=True)[:, -1]  # type: ignore[arg-type]

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """One token per row, tokens [b] -> logits [b, vocab] (a buffer the next call reuses)."""
        cache = self.cache
        assert cache is not None and cache.length < cache.max_len, "prefill first, with room for the new tokens"
        b = tokens.shape[0]
        tokens = tokens.to(self.device).reshape(b, 1)
        pos = torch.full((1,), cache.length, device=self.device, dtype=torch.long)
        if not self.use_graphs:
            out = self._eager_step(tokens, pos)
        else:
            if b not in self._graphs:
                self._graphs[b] = self._capture(tokens, pos)
            graph, tok_buf, pos_buf, out = self._graphs[b]
            tok_buf.copy_(tokens)
            pos_buf.copy_(pos)
            graph.replay()
        cache.length += 1
        return out

    def _capture(self, tokens: torch.Tensor, pos: torch.Tensor):
        """Capture one decode step (warmed up first: Triton compiles and tunes outside the
        capture). The warm-up steps write the same keys and values the replay will."""
        tok_buf, pos_buf = tokens.clone(), pos.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._eager_step(tok_buf, pos_buf)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self._eager_step(tok_buf, pos_buf)
        return graph, tok_buf, pos_buf, out

    # ---- the runtime's backend interface ----------------------------------------------

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.prefill(ids, all_logits=True).float()

    def start(self, ids: torch.Tensor) -> tuple[Any, torch.Tensor]:
        return self.cache, self.prefill(ids, new_tokens=self.max_len - ids.shape[1]).float()

    def step(self, state: Any, token: int) -> torch.Tensor:
        return self.decode(torch.tensor([token])).float()

    def close(self) -> None:
        self._graphs.clear()
        self.cache = None
        self.model.release()
        self.model.linears.clear()
