"""AWQ (Lin et al., 2023) as plain tensor kernels, driving any weight format.

For linears W_i that share an input x [tokens, in], per-input-channel scales
s = mean|x|^alpha (normalised to geometric mean 1) protect the salient channels:
x W^T = (x / s) (W s)^T, and W s is what gets rounded. alpha is chosen on a grid to
minimise the error of what the linears feed: by default their concatenated outputs, or
any `block` the caller supplies (the pass uses the whole attention or MLP, as the AWQ
paper and AutoAWQ do, so the loss counts what the softmax and the down projection make
of each linear's error). Duo scaling (AutoAWQ's later form)
divides by the weights' per-channel magnitude too, s = mean|x|^alpha / mean|w|^(1-alpha),
with |w| normalised by its group maximum; `duo="both"` searches both families. A
clipping search then shrinks each group's range where that lowers the group's output
error.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Block = Callable[[torch.Tensor, list[torch.Tensor]], torch.Tensor]  # (input, weights) -> output

_MIN_MEAN = 1e-4  # channels that never fire still get a finite scale


def rtn_fake_quantize(fmt, w: torch.Tensor) -> torch.Tensor:
    """w rounded to nearest by the format (tensor-wide scales bound to w first)."""
    bind = getattr(fmt, "for_tensor", None)
    fmt = bind(w) if bind is not None else fmt
    return fmt.fake_quantize(w, fmt.choose_qparams(w))


def awq_scales(x_mean: torch.Tensor, alpha: float, w_mean: torch.Tensor | None = None) -> torch.Tensor:
    """[in] scales mean|x|^alpha (duo: / mean|w|^(1 - alpha)), normalised so max * min = 1."""
    s = x_mean.float().clamp(min=_MIN_MEAN).pow(alpha)
    if w_mean is not None:
        s = s / w_mean.clamp(min=_MIN_MEAN).pow(1 - alpha)
    return s / (s.max() * s.min()).sqrt()


def weight_magnitude(weights: list[torch.Tensor], group_size: int | None) -> torch.Tensor:
    """[in] mean over all rows of |w| / (its group's max |w|), for duo scaling."""
    w = torch.cat([w.float() for w in weights], dim=0)
    rows, cols = w.shape
    g = group_size or cols
    wg = w.abs().reshape(rows, cols // g, g)
    return (wg / wg.amax(-1, keepdim=True).clamp(min=1e-12)).reshape(rows, cols).mean(0)


def _candidates(x_mean: torch.Tensor, w_mean: torch.Tensor | None, grid: int, duo: str):
    """(alpha, scales) on the grid, plain and/or duo."""
    for k in range(grid):
        alpha = k / grid
        if duo in ("off", "both"):
            yield alpha, awq_scales(x_mean, alpha)
        if duo in ("on", "both"):
            yield alpha, awq_scales(x_mean, alpha, w_mean)


def linear_outputs(x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    """The default block: the linears' outputs side by side [..., sum out]."""
    return torch.cat([x @ w.T for w in weights], dim=-1)


def scale_candidates(x_mean: torch.Tensor, weights: list[torch.Tensor], fmt_of: list, grid: int = 20,
                     duo: str = "off") -> list[tuple[float, torch.Tensor]]:
    """(alpha, scales [in]) for every grid point, plain and/or duo (module docstring)."""
    group = next((getattr(f, "group_size", None) for f in fmt_of if f is not None), None)
    w_mean = weight_magnitude([w.float() for w in weights], group) if duo != "off" else None
    return list(_candidates(x_mean, w_mean, grid, duo))


def candidate_errors(x: torch.Tensor, weights: list[torch.Tensor], fmt_of: list, candidates: list[tuple[float, torch.Tensor]],
                     block: Block = linear_outputs) -> tuple[torch.Tensor, int]:
    """Sum of squared errors of block(x / s, rounded W s) against block(x, W), float64 [n
    candidates], and how many output elements each sum covers. Sums over disjoint
    samples add up, so several shards (or ranks) can share one search."""
    x = x.float()
    ws = [w.float() for w in weights]
    ref = block(x, ws)
    errors = torch.empty(len(candidates), dtype=torch.float64)
    for k, (_, s) in enumerate(candidates):
        out = block(x / s, [w * s if f is None else rtn_fake_quantize(f, w * s) for w, f in zip(ws, fmt_of)])
        errors[k] = (out - ref).pow(2).sum(dtype=torch.float64)
    return errors, ref.numel()


def pick_scales(candidates: list[tuple[float, torch.Tensor]], errors: torch.Tensor, count: int) -> tuple[torch.Tensor, float, list[float]]:
    """(scales, alpha, mean squared error per candidate) of the first candidate with the
    lowest error."""
    losses = (errors / max(count, 1)).tolist()
    best = min(range(len(candidates)), key=lambda k: (losses[k], k))
    return candidates[best][1], candidates[best][0], losses


def search_scales(
    x: torch.Tensor,
    x_mean: torch.Tensor,
    weights: list[torch.Tensor],
    fmt_of: list,
    grid: int = 20,
    duo: str = "off",
    block: Block = linear_outputs,
) -> tuple[torch.Tensor, float, list[float]]:
    """Grid search of alpha in [0, 1); x [..., in] samples, weights [out_i, in] sharing
    x, fmt_of[i] the format of weights[i] (None: left unrounded); duo "off", "on" or
    "both" (see the module docstring); the loss is the mean squared error of
    block(x, weights). Returns (scales [in], best alpha, losses)."""
    candidates = scale_candidates(x_mean, weights, fmt_of, grid, duo)
    errors, count = candidate_errors(x, weights, fmt_of, candidates, block)
    return pick_scales(candidates, errors, count)


def clip_errors(x: torch.Tensor, w: torch.Tensor, fmt, grid: int = 20, max_shrink: float = 0.5) -> torch.Tensor:
    """Sum over the tokens x [tokens, in] of each (row, group)'s squared output error when
    its range is clipped to amax * (1 - k / grid), k < max_shrink * grid: float64
    [k, out, groups]. Sums over disjoint tokens add up (shards, ranks)."""
    rows, cols = w.shape
    gs = fmt.group_size or cols
    xg = x.float().reshape(-1, cols // gs, gs)  # [tokens, G, gs]
    wg = w.float().reshape(rows, cols // gs, gs)  # [rows, G, gs]
    ref = torch.einsum("ngk,rgk->rgn", xg, wg)
    amax = wg.abs().amax(-1, keepdim=True)  # [rows, G, 1]
    steps = max(1, int(max_shrink * grid))
    errors = torch.empty(steps, rows, cols // gs, dtype=torch.float64)
    for k in range(steps):
        max_val = amax * (1 - k / grid)
        q = rtn_fake_quantize(fmt, wg.clamp(-max_val, max_val).reshape(rows, cols)).reshape(wg.shape)
        errors[k] = (torch.einsum("ngk,rgk->rgn", xg, q) - ref).pow(2).sum(-1, dtype=torch.float64)
    return errors


def pick_clip(w: torch.Tensor, fmt, errors: torch.Tensor, grid: int = 20) -> torch.Tensor:
    """Per-(row, group) threshold [out, groups]: the first range with the lowest error."""
    rows, cols = w.shape
    gs = fmt.group_size or cols
    amax = w.float().reshape(rows, cols // gs, gs).abs().amax(-1)  # [rows, G]
    ranges = torch.stack([amax * (1 - k / grid) for k in range(errors.shape[0])])  # [k, rows, G]
    return ranges.gather(0, errors.argmin(0, keepdim=True)).squeeze(0)  # argmin: the first minimum


def search_clip(x: torch.Tensor, w: torch.Tensor, fmt, grid: int = 20, max_shrink: float = 0.5) -> torch.Tensor:
    """Per-(row, group) clipping threshold [out, groups] minimising each group's share of
    the output error, over ranges amax * (1 - k / grid), k < max_shrink * grid."""
    return pick_clip(w, fmt, clip_errors(x, w, fmt, grid, max_shrink), grid)


def apply_clip(w: torch.Tensor, max_val: torch.Tensor) -> torch.Tensor:
    """w [out, in] clamped to +-max_val [out, groups] per group."""
    rows, cols = w.shape
    g = max_val.shape[1]
    m = max_val.unsqueeze(-1)
    return w.float().reshape(rows, g, cols // g).clamp(-m, m).reshape(rows, cols)
