"""The textbook ladder in NumPy float64, one short function per rung; each docstring is its formula.

Rows are words: X is (n, d), one d-dimensional vector per word. Every function also takes batched
arrays (..., n, d); leading axes broadcast as in ``numpy.matmul``.

    reweight                     Y = W X
    scores                       S = scale · Q Kᵀ
    normalize                    W = softmax(S) | S / rowsum(S) | relu(S) / n_allowed
    self_attention               Y = softmax(X Xᵀ) X                    (no parameters)
    projected_self_attention     Y = softmax(X Wq (X Wk)ᵀ / √d_k) X Wv
    multi_head_self_attention    Y = concat_h(head_h) Wo
    additive_scores              S_ij = vᵀ tanh(Wq q_i + Wk k_j)        (Bahdanau)
    attention                    the general oracle for ``selfattention.attention``
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from selfattention.reference._arrays import as_bool, as_float, broadcast_to_scores
from selfattention.reference.masks import window_mask

__all__ = [
    "NORMALIZATIONS",
    "additive_scores",
    "attention",
    "multi_head_self_attention",
    "normalize",
    "projected_self_attention",
    "reweight",
    "scores",
    "self_attention",
]

NORMALIZATIONS = ("softmax", "sum", "relu")
NormalizeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def reweight(x, w) -> np.ndarray:
    """Y = W X: each output row is a weighted sum of the input rows.

    x (..., n, d), w (..., m, n) -> (..., m, d); y_i = Σ_j w_ij x_j.
    """
    x, w = as_float("x", x), as_float("w", w)
    if w.shape[-1] != x.shape[-2]:
        raise ValueError(f"w must have {x.shape[-2]} columns (one per row of x), got {w.shape}")
    return w @ x


def scores(q, k, scale: float = 1.0) -> np.ndarray:
    """S = scale · Q Kᵀ: s_ij = scale · q_i · k_j, pairwise dot products.

    q (..., i, d), k (..., j, d) -> (..., i, j).
    """
    q, k = as_float("q", q), as_float("k", k)
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must share the vector size: q has {q.shape[-1]} (shape {q.shape}), "
            f"k has {k.shape[-1]} (shape {k.shape})"
        )
    return _check_scale(scale) * (q @ np.swapaxes(k, -1, -2))


def normalize(s, kind: str | NormalizeFn = "softmax", mask=None) -> np.ndarray:
    """Turn each row of scores into weights over the allowed keys (mask True = may attend).

        softmax: w_ij = exp(s_ij) / Σ_j' exp(s_ij')
        sum:     w_ij = s_ij / Σ_j' s_ij'           (``relevances /= sum(relevances)``)
        relu:    w_ij = max(s_ij, 0) / n_i,         n_i = number of allowed keys of row i
        callable(s, allowed) -> w, then zeroed where not allowed.

    Disallowed keys (and -inf scores) get weight 0; a row with no allowed key is all zeros.
    "sum" raises ValueError for a row whose allowed scores sum to <= 0.
    """
    s = as_float("scores", s, allow_neginf=True)
    allowed = np.isfinite(s)
    if mask is not None:
        allowed = allowed & broadcast_to_scores("mask", as_bool("mask", mask), s.shape)
    has_key = allowed.any(axis=-1, keepdims=True)
    s0 = np.where(allowed, s, 0.0)  # finite everywhere
    if callable(kind):
        w = np.asarray(kind(s0, allowed), dtype=np.float64)
        if w.shape != s.shape:
            raise ValueError(f"normalize callable must return shape {s.shape}, got {w.shape}")
        return np.where(allowed, w, 0.0)
    if kind == "softmax":
        top = np.where(allowed, s, -np.inf).max(axis=-1, keepdims=True)
        e = np.where(allowed, np.exp(s0 - np.where(has_key, top, 0.0)), 0.0)
        return e / np.where(has_key, e.sum(axis=-1, keepdims=True), 1.0)
    if kind == "sum":
        total = s0.sum(axis=-1, keepdims=True)
        bad = has_key & (total <= 0)
        if bad.any():
            raise ValueError(
                f'normalize="sum" needs every row of scores to sum to > 0, but {int(bad.sum())} '
                "row(s) sum to <= 0 (dot products can be negative); use softmax or relu"
            )
        return s0 / np.where(has_key, total, 1.0)
    if kind == "relu":
        count = allowed.sum(axis=-1, keepdims=True)
        return np.maximum(s0, 0.0) / np.maximum(count, 1)
    raise ValueError(
        f"normalize must be one of {list(NORMALIZATIONS)} or a callable (scores, allowed) -> "
        f"weights, got {kind!r}"
    )


_normalize_rows = normalize  # ``attention`` has an argument of the same name


def self_attention(x, *, return_weights: bool = False):
    """Y = softmax(X Xᵀ) X: every word becomes a mix of all words, weighted by similarity.

    No parameters and no 1/√d (as the classic write-ups). x (..., n, d) -> y (..., n, d),
    and the weights (..., n, n) with ``return_weights=True``.
    """
    x = as_float("x", x)
    w = normalize(scores(x, x), "softmax")
    y = w @ x
    return (y, w) if return_weights else y


def attention(
    q,
    k,
    v,
    mask=None,
    bias=None,
    scale: float | None = None,
    normalize: str | NormalizeFn = "softmax",
    causal: bool = False,
    window: int | tuple[int | None, int | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """O = normalize(scale · Q Kᵀ + bias over allowed keys) V; returns (O, W).

    q (..., i, d), k (..., j, d), v (..., j, e); mask bool (True = may attend) and bias (-inf =
    masked) broadcast to (..., i, j). scale defaults to 1/√d. causal keeps j <= i; window w or
    (left, right) keeps i - left <= j <= i + right (None = unbounded side), positions aligned
    top-left. A query with no allowed key gets zero weights and a zero output.
    """
    q, k, v = as_float("q", q), as_float("k", k), as_float("v", v)
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same length: k {k.shape}, v {v.shape}")
    if scale is None:
        scale = 1.0 / np.sqrt(q.shape[-1])
    s = scores(q, k, scale)
    shape = s.shape
    i, j = shape[-2], shape[-1]
    if bias is not None:
        s = s + broadcast_to_scores(
            "bias", as_float("bias", bias, min_ndim=0, allow_neginf=True), shape
        )
    allowed = np.ones(shape, dtype=bool)
    if mask is not None:
        allowed &= broadcast_to_scores("mask", as_bool("mask", mask), shape)
    if not isinstance(causal, bool | np.bool_):
        raise TypeError(f"causal must be a bool, got {causal!r}")
    left, right = _resolve_window(window)
    if causal:
        right = 0 if right is None else min(right, 0)
    allowed &= window_mask(i, j, left, right)
    w = _normalize_rows(s, normalize, allowed)
    return w @ v, w


def projected_self_attention(x, wq, wk, wv, *, scale: float | None = None, mask=None, causal=False):
    """Q = X Wq, K = X Wk, V = X Wv;  Y = softmax(Q Kᵀ / √d_k) V.  Returns (Y, W).

    x (..., n, dim); wq, wk (dim, d_k); wv (dim, d_v). Matrices act on the right (x @ W); a
    ``torch.nn.Linear`` holds the transpose (y = x @ weight.T + bias).
    """
    x = as_float("x", x)
    q, k, v = (x @ as_float(n, m) for n, m in (("wq", wq), ("wk", wk), ("wv", wv)))
    return attention(q, k, v, mask=mask, scale=scale, causal=causal)


def multi_head_self_attention(
    x, wq, wk, wv, wo, *, scale: float | None = None, mask=None, causal=False
) -> tuple[np.ndarray, list[np.ndarray]]:
    """head_h = softmax(X Wq_h (X Wk_h)ᵀ / √d_k) X Wv_h;  Y = concat(head_1 … head_H) Wo.

    wq, wk, wv: a list of per-head (dim, d_k) / (dim, d_v) matrices, or stacked (H, dim, d).
    wo (H·d_v, dim_out). Returns Y (..., n, dim_out) and the list of per-head weights (..., n, n).
    """
    heads = [_as_heads(name, m) for name, m in (("wq", wq), ("wk", wk), ("wv", wv))]
    if not (len(heads[0]) == len(heads[1]) == len(heads[2])):
        raise ValueError(
            f"wq, wk, wv must have the same number of heads, got {[len(h) for h in heads]}"
        )
    outs, weights = [], []
    for wq_h, wk_h, wv_h in zip(*heads, strict=True):
        o, w = projected_self_attention(x, wq_h, wk_h, wv_h, scale=scale, mask=mask, causal=causal)
        outs.append(o)
        weights.append(w)
    cat = np.concatenate(outs, axis=-1)
    wo = as_float("wo", wo)
    if wo.shape[-2] != cat.shape[-1]:
        raise ValueError(f"wo must have {cat.shape[-1]} rows (heads · d_v), got shape {wo.shape}")
    return cat @ wo, weights


def additive_scores(q, k, wq, wk, v) -> np.ndarray:
    """S_ij = vᵀ tanh(Wq q_i + Wk k_j)  (Bahdanau et al. 2015, "additive" attention).

    q (..., i, d_q), k (..., j, d_k), wq (hidden, d_q), wk (hidden, d_k), v (hidden,)
    -> (..., i, j). The matrices act on column vectors as in the paper (``nn.Linear.weight``'s
    layout).
    """
    q, k = as_float("q", q), as_float("k", k)
    wq, wk = as_float("wq", wq), as_float("wk", wk)
    v = as_float("v", v, min_ndim=1)
    if wq.shape != (v.shape[0], q.shape[-1]) or wk.shape != (v.shape[0], k.shape[-1]):
        raise ValueError(
            f"expected wq {(v.shape[0], q.shape[-1])} and wk {(v.shape[0], k.shape[-1])} for "
            f"v {v.shape}, q {q.shape}, k {k.shape}; got wq {wq.shape}, wk {wk.shape}"
        )
    hq = q @ wq.T  # (..., i, hidden)
    hk = k @ wk.T  # (..., j, hidden)
    return np.tanh(hq[..., :, None, :] + hk[..., None, :, :]) @ v


def _as_heads(name: str, m) -> list[np.ndarray]:
    if isinstance(m, Sequence) and not isinstance(m, np.ndarray):
        if len(m) == 0:
            raise ValueError(f"{name} must hold at least one head")
        return [as_float(f"{name}[{h}]", mh) for h, mh in enumerate(m)]
    arr = as_float(name, m, min_ndim=3)
    if arr.ndim != 3:
        raise ValueError(f"{name} stacked must be (heads, dim, d), got shape {arr.shape}")
    return list(arr)


def _check_scale(scale) -> float:
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not np.isfinite(scale):
        raise ValueError(f"scale must be a finite number, got {scale!r}")
    return float(scale)


def _resolve_window(window) -> tuple[int | None, int | None]:
    if window is None:
        return None, None
    if isinstance(window, int | np.integer) and not isinstance(window, bool):
        pair = (window, window)
    elif isinstance(window, tuple | list) and len(window) == 2:
        pair = tuple(window)
    else:
        raise ValueError(f"window must be an int or a (left, right) pair, got {window!r}")
    for name, r in zip(("left", "right"), pair, strict=True):
        if r is not None and (isinstance(r, bool) or not isinstance(r, int | np.integer) or r < 0):
            raise ValueError(f"window {name} must be a non-negative int or None, got {r!r}")
    return pair
