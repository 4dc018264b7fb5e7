"""The readable, materialised path and the ground truth for every other backend.

    S = scale · Q Kᵀ + bias          (b, h, i, j)
    W = normalize(S, allowed)        rows over allowed keys; masked -> 0
    O = dropout(W) V                 (b, h, i, e)

Time O(b·h·i·j·d), memory O(b·h·i·j): it stores the full weight matrix, the only backend that
materialises it (the others rebuild the rows asked for from their row statistic). With
``return_stats`` the statistic of whole rows comes from ``Normalization.dense_stat``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from selfattention.functional.backends.base import Backend, Result
from selfattention.functional.call import AttentionCall


def scores(call: AttentionCall) -> Tensor:
    """scale · Q Kᵀ (+ bias), in at least float32: (b, h, i, j)."""
    q, k = call.q, call.k
    if q.dtype in (torch.float16, torch.bfloat16):
        q, k = q.float(), k.float()
    s = torch.einsum("bhid,bhjd->bhij", q, k) * call.scale
    if call.bias is not None:
        s = s + call.bias.to(s.dtype)
    return s


def forward(call: AttentionCall) -> Result:
    allowed = call.allowed()
    s = scores(call)
    weights = call.normalize.dense(s, allowed)
    stat = call.normalize.dense_stat(s, allowed) if call.return_stats else None
    used = weights
    if call.dropout_p > 0.0:
        used = torch.nn.functional.dropout(weights, p=call.dropout_p)
    # W V in the weights' precision (float32 for half inputs): rounding W to half first would
    # double the output error for no speed gain on CPU.
    out = torch.einsum("bhij,bhje->bhie", used, call.v.to(used.dtype)).to(call.v.dtype)
    if not call.return_weights:
        return Result(out, None, stat)
    if call.weights_rows is not None:
        used = used[:, :, call.weights_rows]
    return Result(out, used.to(call.v.dtype), stat)


BACKEND = Backend(
    "math",
    forward,
    cost="time O(b·h·n_q·n_k·d), memory O(b·h·n_q·n_k); returns weights",
)
