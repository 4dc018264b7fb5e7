"""Sum normalisation (the write-ups' ``relevances /= sum(relevances)``), statistic the row sum."""

from __future__ import annotations

import torch
from torch import Tensor

from selfattention.functional.normalize.base import Normalization, _compute_dtype, mm


class Sum(Normalization):
    """w_ij = s_ij / z_i, z_i = Σ_j' s_ij'; online: z and Σ s v; stat z.

    Backward: p = s / z, ds = (dO Vᵀ - δ) / z on allowed entries.
    A whole row must have z > 0; a partial one (``strict=False``, from ``partial()``: results
    over part of the keys, merged later) only z != 0, since its z is one term of the row's sum.
    """

    needs_rows = True
    stat_label = "row sum"

    def __init__(self, name: str, strict: bool = True) -> None:
        super().__init__(name)
        self.strict = strict
        self._partial: Sum | None = None if strict else self

    def partial(self) -> Normalization:
        """The same normalisation over part of a row's keys: one object per whole one."""
        if self._partial is None:
            self._partial = Sum(self.name, strict=False)
        return self._partial

    def dense(self, scores: Tensor, allowed: Tensor | None) -> Tensor:
        return sum_(scores, allowed, strict=self.strict, name=self.name)

    def fold(self, state, s, allowed, v, count=None) -> None:
        self.mask_fill(s, allowed)
        self._accumulate(state, s, allowed, v, count, s.sum(-1, keepdim=True))

    def finish(self, state, out, stat, rows=None) -> None:
        has_key = state.count > 0
        _check_sum(self.name, state.l, has_key if rows is None else has_key & rows, self.strict)
        torch.div(state.acc, torch.where(has_key, state.l, torch.ones_like(state.l)), out=out)
        torch.where(has_key, state.l, torch.zeros_like(state.l), out=stat)

    def grads(self, s, allowed, stat, delta, do, v):
        self.mask_fill(s, allowed)
        dp = mm(do, v.transpose(-1, -2))
        z = _nonzero(stat)
        p = s.div_(z)
        ds = dp.sub_(delta).div_(z)
        if allowed is not None:
            ds.masked_fill_(~allowed, 0.0)
        return p, ds

    def stat_delta(self, delta, stat, dstat):
        # ds_ij = (dp_ij - δ_i) / z_i + dz_i = (dp_ij - (δ_i - z_i dz_i)) / z_i
        return delta if dstat is None else delta - dstat * stat

    def recompute(self, s, allowed, stat):
        if allowed is not None:
            s = s.masked_fill(~allowed, 0.0)
        return s / _nonzero(stat)

    def dense_stat(self, s, allowed):
        if allowed is not None:
            s = s.masked_fill(~allowed, 0.0)
        return s.sum(-1, keepdim=True)


def _nonzero(stat: Tensor) -> Tensor:
    """A divisor: 1 where a row has no key (its scores are all 0 there anyway)."""
    return torch.where(stat == 0, torch.ones_like(stat), stat)


def _check_sum(name: str, total: Tensor, has_key: Tensor, strict: bool = True) -> None:
    """Rows with keys must sum to > 0 (dot products can be negative); partial rows to != 0."""
    bad = has_key & ((total <= 0) if strict else (total == 0))
    if bool(bad.any()) and not strict:
        raise ValueError(
            f'normalize="{name}" with return_stats needs every row of scores to have a '
            f"non-zero sum over its keys, but {int(bad.sum())} row(s) sum to exactly 0"
        )
    if bool(bad.any()):
        raise ValueError(
            f'normalize="{name}" needs every row of scores to sum to > 0, but {int(bad.sum())} '
            "row(s) sum to <= 0 (dot products can be negative); use softmax or relu, or make "
            "the scores positive"
        )


def sum_(scores: Tensor, allowed: Tensor | None, strict: bool = True, name: str = "sum") -> Tensor:
    """Divide each row by its sum; a row whose allowed scores sum to <= 0 raises ValueError
    (``strict=False``: only a sum of exactly 0 does)."""
    s = scores.to(_compute_dtype(scores))
    if allowed is not None:
        s = s.masked_fill(~allowed, 0.0)
        has_key = allowed.any(dim=-1, keepdim=True)
    else:
        has_key = torch.ones((), dtype=torch.bool, device=s.device)
    total = s.sum(dim=-1, keepdim=True)
    _check_sum(name, total, has_key, strict)
    return s / torch.where(has_key, total, torch.ones_like(total))
