"""Scale searches of ggml's quantizers, vectorised over many sub-blocks at once.

Inputs are transposed, [n, blocks] float32 (see `_common`). The arithmetic order follows
ggml's C code (`make_qkx2_quants`, `make_qx_quants`) so results are bit-identical.
"""

from __future__ import annotations

import numpy as np
from inferc.core.numerics.ggml._common import F32, nearest_int, seq_sum

GROUP_MAX_EPS = F32(1e-15)


def min_scale_search(
    xt: np.ndarray, wt: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric (scale, min) search: x ~ scale * L - m with L in [0, nmax].

    xt, wt: [n, B] values and weights. Returns (L [n, B] float32, scale [B], m [B]) where
    m = -min >= 0, as ggml's make_qkx2_quants returns them.
    """
    mn = np.minimum(xt.min(axis=0), F32(0))
    mx = xt.max(axis=0)
    sum_w = seq_sum(wt)
    sum_x = seq_sum(wt * xt)
    flat = mx == mn
    rng = np.where(flat, F32(1), mx - mn).astype(np.float32)
    xm = xt - mn  # [n, B]
    iscale = F32(nmax) / rng
    scale = F32(1) / iscale
    L = np.clip(nearest_int(iscale * xm), 0, nmax)
    best = seq_sum(wt * _sq(scale * L + mn - xt))
    lo = mn.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        for step in range(nstep + 1):
            # ggml searches around the best (scale, min) so far: the range moves with it
            isc = (F32(rmin) + F32(rdelta) * F32(step) + F32(nmax)) / np.where(flat, F32(1), mx - lo)
            laux = np.clip(nearest_int(isc * (xt - lo)), 0, nmax)
            wl = wt * laux
            sum_l, sum_l2, sum_xl = seq_sum(wl), seq_sum(wl * laux), seq_sum(wl * xt)
            det = sum_w * sum_l2 - sum_l * sum_l
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / det
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det
            pos = this_min > 0
            this_min = np.where(pos, F32(0), this_min)
            this_scale = np.where(pos, sum_xl / sum_l2, this_scale)
            mad = seq_sum(wt * _sq(this_scale * laux + this_min - xt))
            better = (det > 0) & (mad < best)
            L = np.where(better, laux, L)
            best = np.where(better, mad, best)
            scale = np.where(better, this_scale, scale)
            lo = np.where(better, this_min, lo)
    L = np.where(flat, F32(0), L)
    scale = np.where(flat, F32(0), scale)
    return L.astype(np.float32), scale.astype(np.float32), (-lo).astype(np.float32)


def _sq(d: np.ndarray) -> np.ndarray:
    return d * d


def symmetric_scale_search(xt: np.ndarray, nmax: int, qw: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric search: x ~ scale * (L - nmax), L in [0, 2 nmax - 1] (make_qx_quants,
    rmse_type 1: weights x^2, or `qw` [n, B] when given). Returns (L [n, B], scale [B])."""
    n, nb = xt.shape
    ax = np.abs(xt)
    amax = ax.max(axis=0)
    first = np.argmax(ax, axis=0)
    vmax = xt[first, np.arange(nb)]
    small = amax < GROUP_MAX_EPS
    vmax = np.where(small, F32(1), vmax).astype(np.float32)
    w = xt * xt if qw is None else qw
    wx = w * xt

    def trial(iscale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lq = np.clip(nearest_int(iscale * xt), -nmax, nmax - 1)
        return lq, seq_sum(wx * lq), seq_sum(w * lq * lq)

    with np.errstate(divide="ignore", invalid="ignore"):
        lq, sumlx, suml2 = trial(F32(-nmax) / vmax)
        L = lq + F32(nmax)
        scale = np.where(suml2 != 0, sumlx / suml2, F32(0)).astype(np.float32)
        best = scale * sumlx
        for step in range(-9, 10):
            if step == 0:
                continue
            lq, sumlx, suml2 = trial(-(F32(nmax) + F32(0.1) * F32(step)) / vmax)
            better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
            L = np.where(better, lq + F32(nmax), L)
            scale = np.where(better, sumlx / suml2, scale)
            best = np.where(better, scale * sumlx, best)
    L = np.where(small, F32(0), L)
    scale = np.where(small, F32(0), scale)
    return L.astype(np.float32), scale.astype(np.float32)
