"""Row normalisations that turn relevance scores into weights, one object each.

A normalisation is resolved once, at the boundary (``AttentionCall.normalize`` holds the
object), and every path asks the object, never its name:

- ``dense(s, allowed) -> W``: a whole row at once (the math path); also ``norm(s, allowed)``;
- ``fold(state, s, allowed, v)`` then ``finish(state, out, stat)``: keys visited tile by tile and
  folded into running row statistics (the blocked kernels: chunked, window, 2-D tiles), so no
  row of the n_q × n_k matrix is stored; ``whole(...)`` is the one-tile shortcut;
- ``grads(s, allowed, stat, delta, dO, V) -> (P, dS)``: the backward of one tile, recomputed from
  the per-row statistic ``stat`` and δ = Σ_e dO ∘ O (FlashAttention-2 style); ``stat_delta``
  folds a gradient reaching the statistic itself into δ (d lse / d s_ij = w_ij, d z / d s_ij = 1);
- ``recompute(s, allowed, stat) -> W`` (differentiable) and ``dense_stat(s, allowed)``: weights
  rebuilt from the statistic, and the statistic of whole rows (the math path);
- ``merge_coefficients(stats)``: how partial results over disjoint key sets combine.

Scores s (b, h, i, j); ``allowed`` bool, broadcastable, or None. W = 0 wherever a key is not
allowed, and a row of zeros where no key is (never NaN).

    name     dense w_ij                   fold state                        stat (per row)
    softmax  exp(s_ij) / Σ_j' exp(s_ij')  max m, l = Σ exp(s-m), Σ exp(s-m) v  lse = m + log l
    sum      s_ij / Σ_j' s_ij'            z = Σ s, Σ s v                     z = Σ_j s_ij
    relu     relu(s_ij) / c_i             c = #allowed keys, Σ relu(s) v     c

Softmax is computed in at least float32; sum is the write-ups' ``relevances /= sum(relevances)``
and raises ValueError on a row with keys whose scores sum to <= 0. A user callable
f(scores, allowed) -> weights sees 0 at disallowed scores, and its weights there are set to 0; it
has no blockwise form (it needs whole rows), so only the math path serves it.

The statistic is what merges partial results over disjoint key sets exactly
(``functional.merge_attention``): softmax out = Σ_p exp(lse_p - lse) out_p with
lse = logsumexp_p lse_p; sum and relu out = Σ_p stat_p out_p / Σ_p stat_p. Inside the kernels a
row without keys has ``empty_stat`` (lse = +inf, z = c = 0), which makes every recomputed weight
of it zero; the public ``RowStats`` turns softmax's +inf into -inf (= log 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Normalize = Callable[[Tensor, Tensor | None], Tensor]

__all__ = [
    "NORMALIZATIONS",
    "RELU",
    "SOFTMAX",
    "SUM",
    "Normalization",
    "Normalize",
    "RowState",
    "UserNormalization",
    "relu",
    "resolve",
    "softmax",
    "sum_",
]


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
        m = s.amax(-1, keepdim=True)
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

    def partial(self) -> Normalization:
        return self if not self.strict else SUM_PARTIAL

    def dense(self, scores: Tensor, allowed: Tensor | None) -> Tensor:
        return sum_(scores, allowed, strict=self.strict)

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


# -- dense forms (also public as plain functions) ---------------------------------------------


def softmax(scores: Tensor, allowed: Tensor | None) -> Tensor:
    """Softmax over keys; disallowed keys get exactly 0, fully masked rows are all 0 (no NaN)."""
    s = scores.to(_compute_dtype(scores))
    if allowed is None:
        return torch.softmax(s, dim=-1)
    # The most negative finite value (not -inf) keeps fully masked rows finite, also backward.
    s = s.masked_fill(~allowed, torch.finfo(s.dtype).min)
    return torch.softmax(s, dim=-1).masked_fill(~allowed, 0.0)


def sum_(scores: Tensor, allowed: Tensor | None, strict: bool = True) -> Tensor:
    """Divide each row by its sum; a row whose allowed scores sum to <= 0 raises ValueError
    (``strict=False``: only a sum of exactly 0 does)."""
    s = scores.to(_compute_dtype(scores))
    if allowed is not None:
        s = s.masked_fill(~allowed, 0.0)
        has_key = allowed.any(dim=-1, keepdim=True)
    else:
        has_key = torch.ones((), dtype=torch.bool, device=s.device)
    total = s.sum(dim=-1, keepdim=True)
    _check_sum(SUM.name, total, has_key, strict)
    return s / torch.where(has_key, total, torch.ones_like(total))


def relu(scores: Tensor, allowed: Tensor | None) -> Tensor:
    """relu(s) divided by the number of keys each query may attend to."""
    s = torch.relu(scores.to(_compute_dtype(scores)))
    if allowed is None:
        return s / scores.shape[-1]
    s = s.masked_fill(~allowed, 0.0)
    count = allowed.expand(s.shape).sum(dim=-1, keepdim=True).clamp_min(1)
    return s / count


# The name table: the only place a normalisation is named.
SOFTMAX, SUM, RELU = Softmax("softmax"), Sum("sum"), ReLU("relu")
SUM_PARTIAL = Sum("sum", strict=False)  # ``SUM.partial()``: not in the name table
NORMALIZATIONS: dict[str, Normalization] = {n.name: n for n in (SOFTMAX, SUM, RELU)}


def resolve(normalize: str | Normalization | Normalize) -> Normalization:
    """A name from ``NORMALIZATIONS``, a ``Normalization``, or a user callable -> the object."""
    if isinstance(normalize, Normalization):
        return normalize
    if isinstance(normalize, str) and normalize in NORMALIZATIONS:
        return NORMALIZATIONS[normalize]
    if callable(normalize) and not isinstance(normalize, str):
        return UserNormalization(normalize)
    raise ValueError(
        f"normalize must be one of {sorted(NORMALIZATIONS)} or a callable "
        f"(scores, mask) -> weights, got {normalize!r}"
    )
