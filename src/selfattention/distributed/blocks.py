"""The compute of one piece (a block of queries against a block of keys), forward and backward.

Forward: ``sa.attention(..., return_stats=True)`` on the piece gives its partial output and row
statistic; ``sa.functional.merge_attention`` folds the pieces into the exact result (for softmax
out = Σ_p exp(lse_p - lse) out_p, lse = logsumexp_p lse_p; sum and relu merge by their row sums /
key counts). Backward (FlashAttention-2 style): with the *merged* statistic and
δ = Σ_e dO ∘ O, every tile's weights and score gradients follow from the normalisation object
alone (``Normalization.grads``), so each piece's dQ, dK, dV are computed where its keys are:

    p, ds = norm.grads(s, allowed, stat, δ, dO, V)
    dV += pᵀ dO,   dK += scale · dsᵀ Q,   dQ += scale · ds K
"""

from __future__ import annotations

import torch
from torch import Tensor

from selfattention.distributed.plan import Options, Piece, visible
from selfattention.functional.attention import attention
from selfattention.functional.stats import RowStats, merge_attention

__all__ = ["grad_stat", "merge", "piece_backward", "piece_forward"]

Q_TILE, K_TILE = 256, 1024  # a (b·h, 256, 1024) score tile: small enough to stay in cache


def piece_forward(opts: Options, p: Piece, q: Tensor, k: Tensor, v: Tensor, with_stat=True):
    """out (b, h, rows, e) of piece p, and its ``RowStats`` when ``with_stat``; k, v are the
    key buffer (b, h, cols, ·)."""
    qt = q[:, :, p.r0 : p.r1]
    kt, vt = k[:, :, p.c0 : p.c1], v[:, :, p.c0 : p.c1]
    window = p.window  # sa.attention's own window when the band crosses the piece's diagonal
    explicit = window is None and not p.full  # else a band mask
    allowed = opts.piece_mask(p, p.r0, p.r1, p.c0, p.c1, band=explicit)
    bias = opts.piece_bias(p, p.r0, p.r1, p.c0, p.c1, q.dtype)
    causal = window == (None, 0) and p.r1 - p.r0 == p.c1 - p.c0
    if causal:  # the same band, said so that the fused kernels (sdpa) take it
        window = None
    return attention(
        qt,
        kt,
        vt,
        mask=allowed,
        bias=bias,
        causal=causal,
        window=window,
        scale=opts.scale,
        normalize=opts.normalize,
        return_stats=with_stat,
    )


def merge(a: tuple[Tensor, RowStats], b: tuple[Tensor, RowStats]) -> tuple[Tensor, RowStats]:
    """Two partial results over disjoint keys -> the exact result over their union."""
    return merge_attention([a[0], b[0]], [a[1], b[1]])


def grad_stat(opts: Options, stats: RowStats) -> Tensor:
    """Public statistic (b, h, i) -> the convention ``Normalization.grads`` reads (b, h, i, 1):
    a row without any key gets ``empty_stat`` (softmax +inf instead of -inf, sum/relu 1
    instead of 0), which makes each of its recomputed weights 0."""
    value = stats.value
    log_domain = opts.norm.empty_stat == float("inf")
    empty = torch.isneginf(value) if log_domain else value == 0
    return value.masked_fill(empty, opts.norm.empty_stat).unsqueeze(-1)


def piece_backward(
    opts: Options,
    p: Piece,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    stat: Tensor,
    delta: Tensor,
    dout: Tensor,
    dq: Tensor,
    dk: Tensor,
    dv: Tensor,
) -> None:
    """Add piece p's gradients into dq (rows r0:r1) and dk, dv (columns c0:c1), tile by tile.

    stat, delta (b, h, n_r, 1) in the normalisation's own convention (``Normalization.grads``).
    """
    norm, scale = opts.norm, opts.scale
    for i0 in range(p.r0, p.r1, Q_TILE):
        i1 = min(p.r1, i0 + Q_TILE)
        qt, dot = q[:, :, i0:i1], dout[:, :, i0:i1]
        st, dl = stat[:, :, i0:i1], delta[:, :, i0:i1]
        for j0 in range(p.c0, p.c1, K_TILE):
            j1 = min(p.c1, j0 + K_TILE)
            off = (j0 - p.c0) - (i0 - p.r0)
            lo = None if p.lo is None else p.lo - off
            hi = None if p.hi is None else p.hi - off
            if not visible(lo, hi, i1 - i0, j1 - j0):
                continue
            kt, vt = k[:, :, j0:j1], v[:, :, j0:j1]
            bias = opts.piece_bias(p, i0, i1, j0, j1, q.dtype)
            allowed = opts.piece_mask(p, i0, i1, j0, j1)
            s = torch.matmul(qt, kt.transpose(-1, -2)).mul_(scale)  # (b, h, R, C)
            if bias is not None:
                s.add_(bias)
                finite = ~torch.isneginf(bias)
                allowed = finite if allowed is None else allowed & finite
            pw, ds = norm.grads(s, allowed, st, dl, dot, vt)
            dv[:, :, j0:j1] += torch.matmul(pw.transpose(-1, -2), dot)
            dk[:, :, j0:j1] += torch.matmul(ds.transpose(-1, -2), qt).mul_(scale)
            dq[:, :, i0:i1] += torch.matmul(ds, kt).mul_(scale)
