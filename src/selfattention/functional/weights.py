"""Exact attention weights rebuilt from a fast backend's per-row statistic.

A blocked or fused backend keeps no weights, only one statistic per query row (``normalize``):
the log-sum-exp for softmax, the row sum z for sum, the key count c for relu. The weights of any
chosen rows are then one more pass over those rows only:

    S_R = scale · Q_R Kᵀ + bias_R                                   (b, h, r, j)
    W_R = exp(S_R - lse_R)  |  S_R / z_R  |  relu(S_R) / c_R        on allowed keys, else 0

computed block by block over the rows (``ROW_BLOCK_BYTES`` of scores at a time), so memory is
O(b·h·r·n_k) for r rows, never n_q × n_k unless every row is asked for. Differentiable: the
statistic is an autograd output of the backend, so gradients through W are exact too.
"""

from __future__ import annotations

import torch
from torch import Tensor

from selfattention.functional.call import AttentionCall

__all__ = ["allowed_rows", "rebuild"]

ROW_BLOCK_BYTES = 32 * 2**20


def allowed_rows(call: AttentionCall, rows: Tensor) -> Tensor | None:
    """What query rows ``rows`` (r,) may attend to: bool broadcastable to (b, h, r, n_k), or None.

    The same predicate as ``call.allowed()`` (mask, causal, window, grid, -inf bias), built for
    the chosen rows only.
    """
    keys = torch.arange(call.k_len, device=rows.device)
    allowed = None

    def both(a: Tensor | None, b: Tensor) -> Tensor:
        return b if a is None else a & b

    left, right = call.band()
    i, j = rows[:, None], keys[None, :]
    if left is not None:
        allowed = both(allowed, j >= i - left)
    if right is not None:
        allowed = both(allowed, j <= i + right)
    if call.grid is not None:
        allowed = both(allowed, call.grid.sees(rows, keys))
    if call.mask is not None:
        allowed = both(allowed, _rows(call.mask, rows))
    if call.bias is not None:
        allowed = both(allowed, ~torch.isneginf(_rows(call.bias, rows)))
    return allowed


def _rows(x: Tensor, rows: Tensor) -> Tensor:
    """Rows of a broadcastable (B?, H?, I?, J?) tensor (a size-1 row axis stays size 1)."""
    return x if x.shape[2] == 1 else x[:, :, rows]


def rebuild(call: AttentionCall, stat: Tensor, rows: Tensor | None = None) -> Tensor:
    """Weights (b, h, r, n_k) of query rows ``rows`` (all when None) from ``stat`` (b, h, i, 1)."""
    if rows is None:
        rows = torch.arange(call.q_len, device=call.q.device)
    dtype = torch.float32 if call.q.dtype in (torch.float16, torch.bfloat16) else call.q.dtype
    q, k = call.q.to(dtype), call.k.to(dtype)
    b, h = q.shape[:2]
    block = max(1, ROW_BLOCK_BYTES // (b * h * call.k_len * 4))
    grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (q, k, call.bias, stat)
    )
    out = None if grad else torch.empty(b, h, rows.numel(), call.k_len, dtype=call.v.dtype,
                                        device=q.device)  # fmt: skip
    parts = []
    for r0 in range(0, rows.numel(), block):
        r = rows[r0 : r0 + block]
        s = torch.matmul(q[:, :, r], k.transpose(-1, -2)) * call.scale  # (b, h, r, j)
        if call.bias is not None:
            s = s + _rows(call.bias, r).to(dtype)
        w = call.normalize.recompute(s, allowed_rows(call, r), stat[:, :, r].to(dtype))
        if out is None:
            parts.append(w.to(call.v.dtype))
        else:
            out[:, :, r0 : r0 + r.numel()] = w
    return torch.cat(parts, dim=2) if out is None else out
