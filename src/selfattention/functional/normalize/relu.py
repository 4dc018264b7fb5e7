"""ReLU normalisation: w_ij = relu(s_ij) / c_i, statistic the key count."""

from __future__ import annotations

import torch
from torch import Tensor

from selfattention.functional.normalize.base import Normalization, _compute_dtype, mm


class ReLU(Normalization):
    """w_ij = relu(s_ij) / c_i, c_i = keys query i may attend to; online: c and Σ relu(s) v.

    Backward: p = relu(s) / c, ds = 1[s > 0] ∘ dO Vᵀ / c.
    """

    neg_inf_is_nothing = True  # relu(-inf) = 0
    stat_label = "key count"

    def dense(self, scores: Tensor, allowed: Tensor | None) -> Tensor:
        return relu(scores, allowed)

    def fold(self, state, s, allowed, v, count=None) -> None:
        self.mask_fill(s, allowed).relu_()
        self._accumulate(state, s, allowed, v, count, None)

    def finish(self, state, out, stat, rows=None) -> None:
        torch.div(state.acc, state.count.clamp_min(1.0), out=out)
        stat.copy_(state.count)

    def grads(self, s, allowed, stat, delta, do, v):
        self.mask_fill(s, allowed)
        dp = mm(do, v.transpose(-1, -2))
        positive = s > 0
        c = stat.clamp_min(1.0)
        p = s.relu_().div_(c)
        return p, dp.mul_(positive).div_(c)

    def recompute(self, s, allowed, stat):
        if allowed is not None:
            s = s.masked_fill(~allowed, 0.0)
        return torch.relu(s) / stat.clamp_min(1.0)

    def dense_stat(self, s, allowed):
        if allowed is None:
            return s.new_full((*s.shape[:-1], 1), float(s.shape[-1]))
        return allowed.expand(s.shape).sum(-1, keepdim=True, dtype=s.dtype)


def relu(scores: Tensor, allowed: Tensor | None) -> Tensor:
    """relu(s) divided by the number of keys each query may attend to."""
    s = torch.relu(scores.to(_compute_dtype(scores)))
    if allowed is None:
        return s / scores.shape[-1]
    s = s.masked_fill(~allowed, 0.0)
    count = allowed.expand(s.shape).sum(dim=-1, keepdim=True).clamp_min(1)
    return s / count
