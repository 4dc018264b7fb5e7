"""Grouped-query attention: k and v with fewer heads than q, without copying k or v.

With h_q query heads and h_kv key/value heads (g = h_q / h_kv), query head i reads key/value
head i // g (torch SDPA's ``enable_gqa``). The backends only know equal heads, so the call is
reshaped at this boundary, never k or v:

* fold: when nothing depends on the query position or the query head (no causal, window or grid;
  mask and bias constant over heads and query rows), the g query heads of a group become g·i
  rows of one head: q (b, h_q, i, d) -> (b, h_kv, g·i, d), one backend call, outputs reshaped back.
* loop: otherwise member r of every group (query heads r, g + r, 2g + r, ..., a strided view of
  q) attends to the h_kv heads as they are; g backend calls, outputs stacked as (b, h_kv, g, i, e)
  -> (b, h_q, i, e).

Either way the backend receives the caller's k and v tensors themselves (tests check data_ptr).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor

from selfattention.functional.backends.base import Result
from selfattention.functional.call import AttentionCall

__all__ = ["serve", "split"]

Serve = Callable[[AttentionCall], Result]


def _foldable(call: AttentionCall) -> bool:
    """Can the g query heads of a group be g·i rows of one head? (Nothing per position or head.)"""
    if call.causal or call.windowed or call.grid is not None or call.weights_rows is not None:
        return False
    return all(t is None or (t.shape[1] == 1 and t.shape[2] == 1) for t in (call.mask, call.bias))


def _member(t: Tensor | None, r: int, g: int) -> Tensor | None:
    """The query heads r, g + r, 2g + r, ... of a mask or bias (unchanged when broadcast)."""
    return t if t is None or t.shape[1] == 1 else t[:, r::g]


def split(call: AttentionCall) -> list[AttentionCall]:
    """One equal-heads call per group member r (q heads r::g), k and v as they are."""
    g = call.groups
    return [
        replace(
            call, q=call.q[:, r::g], mask=_member(call.mask, r, g), bias=_member(call.bias, r, g)
        )
        for r in range(g)
    ]


def serve(call: AttentionCall, serve_one: Serve) -> Result:
    """``serve_one`` (equal heads -> Result with weights) applied to a grouped call.

    Returns out (b, h_q, i, e), weights (b, h_q, i|r, j) and stat (b, h_q, i, 1), per query head.
    """
    g = call.groups
    if g == 1:
        return serve_one(call)
    b, h, i, d = call.q.shape
    if _foldable(call):
        r = serve_one(replace(call, q=call.q.reshape(b, h // g, g * i, d)))
        weights = None if r.weights is None else r.weights.reshape(b, h, i, -1)
        stat = None if r.stat is None else r.stat.reshape(b, h, i, 1)
        return Result(r.out.reshape(b, h, i, -1), weights, stat)
    parts = [serve_one(sub) for sub in split(call)]

    def stack(ts: list[Tensor | None]) -> Tensor | None:
        if ts[0] is None:
            return None
        s = torch.stack(ts, dim=2)  # (b, h_kv, g, ...): query head m·g + r
        return s.reshape(b, h, *s.shape[3:])

    return Result(
        stack([p.out for p in parts]),
        stack([p.weights for p in parts]),
        stack([p.stat for p in parts]),
    )
