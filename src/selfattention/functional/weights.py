"""Exact attention weights for the rows asked for, after a fast backend that keeps none.

A blocked or fused backend keeps at most one statistic per query row (``normalize``): the
log-sum-exp for softmax, the row sum z for sum, the key count c for relu. The weights of any
chosen rows are one more pass over those rows only:

    S_R = scale · Q_R Kᵀ + bias_R                                   (b, h, r, j)
    W_R = exp(S_R - lse_R)  |  S_R / z_R  |  relu(S_R) / c_R        on allowed keys, else 0

The statistic is the backend's when the call returns it too (``return_stats``/``return_lse``: one
source for both); otherwise it is taken from the same block of scores, which holds every key
its rows may see (``Normalization.dense_stat``) - exact, and it spares the fast pass the extra
reductions (10-20 % of a window call) for rows nobody looks at.

computed block by block over the rows (``ROW_BLOCK_BYTES`` of scores at a time; with a band,
nearby rows grouped and scored against the keys their band reaches only), so memory is
O(b·h·r·n_k) for r rows, never n_q × n_k unless every row is asked for. Differentiable: the
statistic is an autograd output of the backend (or of the block), so gradients through W are
exact too.
"""

from __future__ import annotations

import torch
from torch import Tensor

from selfattention.functional.call import AttentionCall

__all__ = ["allowed_rows", "rebuild"]

ROW_BLOCK_BYTES = 32 * 2**20
# Below this many scores in all, the rebuild runs on one thread: its ops are then tiny, and
# waking torch's other threads for each of them costs more than the op when cores are shared.
SMALL_SCORES = 2**22


def allowed_rows(
    call: AttentionCall, rows: Tensor, keys: tuple[int, int] | None = None
) -> Tensor | None:
    """What query rows ``rows`` (r,) may attend to among keys ``keys`` = [j0, j1) (default all):
    bool broadcastable to (b, h, r, j1 - j0), or None.

    The same predicate as ``call.allowed()`` (mask, causal, window, grid, -inf bias), built for
    the chosen rows and keys only.
    """
    j0, j1 = keys if keys is not None else (0, call.k_len)
    cols = torch.arange(j0, j1, device=rows.device)
    allowed = None

    def both(a: Tensor | None, b: Tensor) -> Tensor:
        return b if a is None else a & b

    left, right = call.band()
    i, j = rows[:, None], cols[None, :]
    if left is not None:
        allowed = both(allowed, j >= i - left)
    if right is not None:
        allowed = both(allowed, j <= i + right)
    if call.grid is not None:
        allowed = both(allowed, call.grid.sees(rows, cols))
    if call.mask is not None:
        allowed = both(allowed, _tile(call.mask, rows, j0, j1))
    if call.bias is not None:
        allowed = both(allowed, ~torch.isneginf(_tile(call.bias, rows, j0, j1)))
    return allowed


def _tile(x: Tensor, rows: Tensor, j0: int, j1: int) -> Tensor:
    """Rows and keys [j0, j1) of a broadcastable (B?, H?, I?, J?) tensor (size-1 axes stay)."""
    x = x if x.shape[2] == 1 else x[:, :, rows]
    return x if x.shape[3] == 1 else x[..., j0:j1]


def groups(call: AttentionCall, rows: Tensor) -> list[tuple[Tensor, Tensor, int, int]]:
    """Rows cut into groups of nearby rows: [(positions in ``rows``, rows, j0, j1)].

    With a band (causal, window) a group of rows only reaches keys [min - left, max + right],
    so rows are sorted and grouped while their spread stays within the band's width; scattered
    rows of a long window call then cost one band each, not one row of n_k keys each.
    """
    left, right = call.band()
    b, h = call.q.shape[:2]
    order = torch.argsort(rows, stable=True)
    ordered = rows[order].tolist()
    spread = None if left is None or right is None else max(left + right + 1, 64)
    out, start = [], 0
    while start < len(ordered):
        stop = start + 1
        width = call.k_len if spread is None else min(call.k_len, 2 * spread)
        limit = max(1, ROW_BLOCK_BYTES // (b * h * width * 4))
        while (
            stop < len(ordered)
            and stop - start < limit
            and (spread is None or ordered[stop] - ordered[start] < spread)
        ):
            stop += 1
        lo, hi = ordered[start], ordered[stop - 1]
        j0 = 0 if left is None else max(0, lo - left)
        j1 = call.k_len if right is None else min(call.k_len, hi + right + 1)
        out.append((order[start:stop], rows[order[start:stop]], j0, max(j0, j1)))
        start = stop
    return out


def rebuild(call: AttentionCall, stat: Tensor | None, rows: Tensor | None = None) -> Tensor:
    """Weights (b, h, r, n_k) of query rows ``rows`` (all when None), from ``stat``
    (b, h, i, 1, kernel convention) or, when None, from each block's own statistic."""
    if rows is None:
        rows = torch.arange(call.q_len, device=call.q.device)
    dtype = torch.float32 if call.q.dtype in (torch.float16, torch.bfloat16) else call.q.dtype
    q, k = call.q.to(dtype), call.k.to(dtype)
    b, h = q.shape[:2]
    grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (q, k, call.bias, stat)
    )
    plan = groups(call, rows)
    small = sum(b * h * r.numel() * (j1 - j0) for _, r, j0, j1 in plan) <= SMALL_SCORES
    threads = torch.get_num_threads()
    if small:
        torch.set_num_threads(1)
    try:
        return _rebuild(call, plan, stat, rows, q, k, dtype, grad)
    finally:
        torch.set_num_threads(threads)


def _rebuild(call, plan, stat, rows, q, k, dtype, grad) -> Tensor:
    b, h, nk = q.shape[0], q.shape[1], call.k_len
    out = torch.zeros(b, h, rows.numel(), nk, dtype=call.v.dtype, device=q.device)
    parts, where = [], []
    for pos, r, j0, j1 in plan:
        if j1 <= j0:  # the band of these rows holds no key: their weights stay 0
            continue
        s = torch.matmul(q[:, :, r], k[:, :, j0:j1].transpose(-1, -2)) * call.scale
        if call.bias is not None:
            s = s + _tile(call.bias, r, j0, j1).to(dtype)
        allowed = allowed_rows(call, r, (j0, j1))
        norm = call.normalize
        st = norm.dense_stat(s, allowed) if stat is None else stat[:, :, r].to(dtype)
        w = norm.recompute(s, allowed, st).to(call.v.dtype)
        if grad:  # out of place, so autograd sees every block
            parts.append(torch.nn.functional.pad(w, (j0, nk - j1)))
            where.append(pos)
        else:
            out[:, :, pos, j0:j1] = w
    if not grad:
        return out
    if not parts:
        return out.requires_grad_(False)
    done = torch.cat(where)
    full = torch.cat(parts, dim=2)
    if done.numel() < rows.numel():  # rows whose band is empty: zeros
        missing = torch.ones(rows.numel(), dtype=torch.bool, device=rows.device)
        missing[done] = False
        done = torch.cat([done, missing.nonzero().flatten()])
        full = torch.cat([full, out[:, :, : int(missing.sum())]], dim=2)
    return full[:, :, torch.argsort(done)]
