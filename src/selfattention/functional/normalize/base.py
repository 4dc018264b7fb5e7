"""The normalisation interface (``Normalization``), its running row state and shared helpers;
a user callable's wrapper. The three built-in normalisations live beside it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Normalize = Callable[[Tensor, Tensor | None], Tensor]


def _compute_dtype(scores: Tensor) -> torch.dtype:
    return torch.float32 if scores.dtype in (torch.float16, torch.bfloat16) else scores.dtype


def mm(a: Tensor, b: Tensor) -> Tensor:
    """Batched a @ b; 3-D operands go straight to bmm, which reads strided views in place."""
    return torch.bmm(a, b) if a.dim() == 3 and b.dim() == 3 else a @ b


def _count(allowed: Tensor | None, s: Tensor) -> Tensor:
    """Allowed keys per row of a tile s (..., R, C): (..., R, 1)."""
    if allowed is None:
        return torch.full((*s.shape[:-1], 1), float(s.shape[-1]), dtype=s.dtype, device=s.device)
    return allowed.sum(-1, keepdim=True, dtype=s.dtype).expand((*s.shape[:-1], 1))


@dataclass
class RowState:
    """Running statistics of a block of query rows: (..., R, 1) each, acc (..., R, e)."""

    acc: Tensor | None = None
    m: Tensor | None = None  # softmax: running max (finite; 0 where no key seen yet)
    l: Tensor | None = None  # softmax: Σ exp(s - m); sum: Σ s
    count: Tensor | None = None  # number of allowed keys (sum, relu)


class Normalization:
    """One normalisation: its dense form, blockwise fold and finish, and tile gradients.

    Class attributes that the kernels read instead of comparing names:
    ``fill`` is the score of a disallowed key inside a tile; ``neg_inf_is_nothing`` says that a
    -inf score adds nothing (so a band may be added to the scores as 0/-inf); ``needs_count``
    that ``fold`` uses the allowed-key count; ``needs_rows`` that ``finish`` checks rows and must
    be told which rows are real (padding rows are not).
    """

    name: str = "?"
    stat_label: str = "row statistic"
    blockwise: bool = True
    fill: float = 0.0
    empty_stat: float = 0.0
    neg_inf_is_nothing: bool = False
    needs_count: bool = True
    needs_rows: bool = False

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def __call__(self, scores: Tensor, allowed: Tensor | None) -> Tensor:
        return self.dense(scores, allowed)

    def dense(self, scores: Tensor, allowed: Tensor | None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def mask_fill(self, s: Tensor, allowed: Tensor | None) -> Tensor:
        """Fill disallowed scores of a tile in place with ``fill``."""
        if allowed is not None:
            s.masked_fill_(~allowed, self.fill)
        return s

    def fold(
        self,
        state: RowState,
        s: Tensor,
        allowed: Tensor | None,
        v: Tensor,
        count: Tensor | None = None,
    ) -> None:
        """Fold a tile of scores s (..., R, C) (overwritten) with values v (..., C, e) into state.

        ``count`` (..., R, 1), the allowed keys per row, may be given when the caller has already
        put -inf on the disallowed scores and passes ``allowed=None``.
        """
        raise NotImplementedError  # pragma: no cover

    def finish(
        self, state: RowState, out: Tensor, stat: Tensor, rows: Tensor | None = None
    ) -> None:
        """Write out (..., R, e) and stat (..., R, 1); ``rows`` (..., R, 1) marks the real rows."""
        raise NotImplementedError  # pragma: no cover

    def whole(
        self,
        s: Tensor,
        allowed: Tensor | None,
        v: Tensor,
        out: Tensor,
        stat: Tensor | None,
        *,
        maybe_empty: bool = True,
        count: Tensor | None = None,
        rows: Tensor | None = None,
    ) -> None:
        """One tile that holds every key its rows may see: out, and stat unless it is None."""
        state = RowState()
        self.fold(state, s, allowed, v, count)
        if stat is None:
            stat = out.new_empty((*out.shape[:-1], 1))
        self.finish(state, out, stat, rows)

    def grads(
        self,
        s: Tensor,
        allowed: Tensor | None,
        stat: Tensor,
        delta: Tensor,
        do: Tensor,
        v: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Recomputed weights p and score gradient ds of one tile (s is overwritten).

        s (..., R, C) scaled+biased scores; stat, delta (..., R, 1); do (..., R, e); v (..., C, e).
        """
        raise NotImplementedError  # pragma: no cover

    def partial(self) -> Normalization:
        """The variant for a result over part of the keys (``return_stats``): the same object,
        except sum, whose partial row sums need only be non-zero."""
        return self

    def public_stat(self, stat: Tensor) -> Tensor:
        """Kernel statistic -> the public one (``RowStats``): the same, but softmax's -inf."""
        return stat

    def stat_delta(self, delta: Tensor, stat: Tensor, dstat: Tensor | None) -> Tensor:
        """δ with a gradient dstat of the statistic folded in, so ``grads`` needs no change.

        relu's statistic (a key count) has no gradient: δ unchanged.
        """
        return delta

    def recompute(self, s: Tensor, allowed: Tensor | None, stat: Tensor) -> Tensor:
        """Weights (..., R, C) of a tile from its row statistic (..., R, 1); differentiable."""
        raise NotImplementedError  # pragma: no cover

    def dense_stat(self, s: Tensor, allowed: Tensor | None) -> Tensor:
        """The statistic (..., i, 1) of whole rows of scores; differentiable, kernel convention."""
        raise NotImplementedError  # pragma: no cover

    def merge_coefficients(self, stats: list[Tensor]) -> tuple[list[Tensor], Tensor]:
        """Partial statistics (public convention) -> (coefficient of each part, merged stat).

        sum and relu: a weighted mean, c_p = stat_p / Σ stat (0 where the sum is 0).
        """
        total = torch.stack(stats).sum(0)
        safe = torch.where(total == 0, torch.ones_like(total), total)
        return [st / safe for st in stats], total

    def _accumulate(self, state: RowState, s: Tensor, allowed, v: Tensor, count, row) -> None:
        """Shared by sum and relu: acc += s v, count += allowed keys, l += row sums."""
        pv = mm(s, v)
        c = _count(allowed, s) if count is None else count
        if state.acc is None:
            state.acc, state.l, state.count = pv, row, c.clone()
        else:
            state.acc.add_(pv)
            state.count = state.count + c
            if row is not None:
                state.l.add_(row)


class UserNormalization(Normalization):
    """A user callable f(scores, allowed) -> weights; dense only (it needs whole rows)."""

    blockwise = False

    def __init__(self, fn: Normalize) -> None:
        super().__init__(getattr(fn, "__name__", type(fn).__name__))
        self.fn = fn

    def dense(self, scores: Tensor, allowed: Tensor | None) -> Tensor:
        if allowed is not None:
            # Disallowed scores (maybe -inf from a bias) reach the user as 0, as in the
            # reference: any finite function of them then has finite gradients.
            scores = scores.masked_fill(~allowed, 0.0)
        w = self.fn(scores, allowed)
        if not isinstance(w, Tensor) or w.shape != scores.shape:
            got = getattr(w, "shape", type(w).__name__)
            raise ValueError(
                f"normalize callable must return weights of shape {tuple(scores.shape)}, got {got}"
            )
        return w if allowed is None else w.masked_fill(~allowed, 0.0)
