"""Softmax: w_ij = exp(s_ij) / Σ_j' exp(s_ij'), statistic the log-sum-exp."""

from __future__ import annotations

import torch
from torch import Tensor

from selfattention.functional.normalize.base import Normalization, _compute_dtype, mm


class Softmax(Normalization):
    """w_ij = exp(s_ij) / Σ_j' exp(s_ij'); online: running max m and l = Σ exp(s - m); stat lse.

    Backward: p = exp(s - lse), ds = p ∘ (dO Vᵀ - δ).
    """

    fill = float("-inf")  # exp -> 0
    empty_stat = float("inf")
    stat_label = "log-sum-exp"
    neg_inf_is_nothing = True
    needs_count = False

    def dense(self, scores: Tensor, allowed: Tensor | None) -> Tensor:
        return softmax(scores, allowed)

    def fold(self, state, s, allowed, v, count=None) -> None:
        self.mask_fill(s, allowed)
        m_tile = s.amax(-1, keepdim=True)
        m_new = m_tile if state.m is None else torch.maximum(state.m, m_tile)
        m_new = m_new.masked_fill(torch.isneginf(m_new), 0.0)  # rows without keys stay finite
        p = s.sub_(m_new).exp_()
        l_tile = p.sum(-1, keepdim=True)
        pv = mm(p, v)
        if state.acc is None:
            state.acc, state.l = pv, l_tile
        else:
            alpha = torch.exp(state.m - m_new)
            state.acc = state.acc.mul_(alpha).add_(pv)
            state.l = state.l.mul_(alpha).add_(l_tile)
        state.m = m_new

    def finish(self, state, out, stat, rows=None) -> None:
        empty = state.l == 0
        l_safe = state.l.masked_fill(empty, 1.0)
        torch.div(state.acc, l_safe, out=out)
        torch.add(state.m, torch.log(l_safe), out=stat)
        stat.masked_fill_(empty, self.empty_stat)

    def whole(self, s, allowed, v, out, stat, *, maybe_empty=True, count=None, rows=None) -> None:
        """torch's fused softmax does max, exp, sum and divide in one kernel; lse =
        max_j s - log max_j p costs two cheap reads more, and only when ``stat`` is wanted.
        Rows with no key (all -inf) are zeroed when ``maybe_empty``."""
        self.mask_fill(s, allowed)
        p = torch.softmax(s, -1)
        torch.bmm(p, v, out=out) if p.dim() == 3 else torch.matmul(p, v, out=out)
        if stat is None and not maybe_empty:
            return
        self._tile_stat(s.amax(-1, keepdim=True), p, out, stat, maybe_empty)

    def whole_in_place(self, s, v, out, stat, maybe_empty: bool) -> None:
        """``whole`` for a tile whose disallowed scores are already -inf, with the weights
        written over s (torch's softmax with ``out=s``: no second tile); the row max is taken
        before that, for the statistic."""
        m = s.amax(-1, keepdim=True) if stat is not None or maybe_empty else None
        torch.softmax(s, -1, out=s)
        torch.bmm(s, v, out=out)
        self._tile_stat(m, s, out, stat, maybe_empty)

    def _tile_stat(self, m, p, out, stat, maybe_empty: bool) -> None:
        """lse = max_j s - log max_j p into ``stat``; rows without any key (m = -inf) get
        out = 0 and the empty statistic."""
        if stat is not None:
            torch.sub(m, torch.log(p.amax(-1, keepdim=True)), out=stat)
        if maybe_empty:
            empty = torch.isneginf(m)
            out.masked_fill_(empty, 0.0)
            if stat is not None:
                stat.masked_fill_(empty, self.empty_stat)

    def grads(self, s, allowed, stat, delta, do, v):
        self.mask_fill(s, allowed)
        dp = mm(do, v.transpose(-1, -2))
        p = s.sub_(stat).exp_()
        return p, dp.sub_(delta).mul_(p)

    def public_stat(self, stat):
        return stat.masked_fill(torch.isposinf(stat), float("-inf"))  # log 0: no key

    def stat_delta(self, delta, stat, dstat):
        # ds_ij = p_ij (dp_ij - δ_i) + p_ij dlse_i = p_ij (dp_ij - (δ_i - dlse_i))
        if dstat is None:
            return delta
        return delta - dstat.masked_fill(torch.isinf(stat), 0.0)

    def recompute(self, s, allowed, stat):
        if allowed is not None:
            s = s.masked_fill(~allowed, float("-inf"))
        return torch.exp(s - stat)  # empty rows: stat = +inf -> 0

    def dense_stat(self, s, allowed):
        if allowed is None:
            return torch.logsumexp(s, -1, keepdim=True)
        empty = ~allowed.any(-1, keepdim=True)
        # A row without keys takes the logsumexp of zeros (finite gradient) and is then +inf.
        s = s.masked_fill(~allowed, float("-inf")).masked_fill(empty, 0.0)
        return torch.logsumexp(s, -1, keepdim=True).masked_fill(empty, self.empty_stat)

    def merge_coefficients(self, stats):
        lse = torch.stack(stats)
        top = lse.amax(0).detach()
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        total = torch.exp(lse - top).sum(0)  # 0 where every part is empty
        empty = total == 0
        merged = top + torch.log(torch.where(empty, torch.ones_like(total), total))
        merged = merged.masked_fill(empty, float("-inf"))
        base = merged.masked_fill(empty, 0.0)
        return [torch.exp(st - base) for st in stats], merged


def softmax(scores: Tensor, allowed: Tensor | None) -> Tensor:
    """Softmax over keys; disallowed keys get exactly 0, fully masked rows are all 0 (no NaN)."""
    s = scores.to(_compute_dtype(scores))
    if allowed is None:
        return torch.softmax(s, dim=-1)
    # The most negative finite value (not -inf) keeps fully masked rows finite, also backward.
    s = s.masked_fill(~allowed, torch.finfo(s.dtype).min)
    return torch.softmax(s, dim=-1).masked_fill(~allowed, 0.0)
