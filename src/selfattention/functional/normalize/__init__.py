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

from selfattention.functional.normalize.base import (
    Normalization,
    Normalize,
    RowState,
    UserNormalization,
)
from selfattention.functional.normalize.relu import ReLU, relu
from selfattention.functional.normalize.softmax import Softmax, softmax
from selfattention.functional.normalize.sums import Sum, sum_

__all__ = [
    "NORMALIZATIONS",
    "RELU",
    "SOFTMAX",
    "SUM",
    "Normalization",
    "Normalize",
    "ReLU",
    "RowState",
    "Softmax",
    "Sum",
    "UserNormalization",
    "relu",
    "resolve",
    "softmax",
    "sum_",
]


# The name table: the only place a normalisation is named.
SOFTMAX, SUM, RELU = Softmax("softmax"), Sum("sum"), ReLU("relu")
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
