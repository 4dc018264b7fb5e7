"""The smoother and its two baselines: ``attention_smooth`` (the formula in the package
docstring), the trailing ``moving_average`` and the ``exponential_moving_average``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "as_series",
    "attention_smooth",
    "delay_embedding",
    "exponential_moving_average",
    "moving_average",
]


def as_series(x: Any) -> np.ndarray:
    """``x`` as a 1-d float64 array of at least 2 finite values (ValueError naming the fault)."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"x must be a 1-d series, got shape {arr.shape}")
    if len(arr) < 2:
        raise ValueError(f"x must have at least 2 values, got {len(arr)}")
    if not np.isfinite(arr).all():
        where = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"x has a non-finite value at index {where}: {arr[where]}")
    return arr


def delay_embedding(x: np.ndarray, lags: int) -> np.ndarray:
    """(n, lags) matrix, row i = ``x_i, x_{i-1}, ..., x_{i-lags+1}`` (the start repeats x_0)."""
    if not isinstance(lags, int) or lags < 1:
        raise ValueError(f"lags must be a positive int, got {lags!r}")
    idx = np.arange(len(x))[:, None] - np.arange(lags)[None, :]
    return x[np.clip(idx, 0, None)]


def attention_smooth(
    x: Sequence[float] | np.ndarray,
    *,
    temperature: float = 100.0,
    decay: float | None = 5.0,
    lags: int = 5,
    window: int | None = 60,
    causal: bool = True,
    return_weights: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Smooth ``x`` (n,) by self-attention, ``y = softmax(S) x`` with S as in the module docstring.

    Args:
        temperature: τ, in squared daily moves per lag; larger = more smoothing by content,
            ``math.inf`` = position only.
        decay: ℓ, in steps; the position term's length (None = no position term).
        lags: length of the delay embedding.
        window: how many points (including i) a point may attend to; None = all.
        causal: attend to the past only (the smoothed value is known on the day); False = a
            centred window of ``window`` points on each side.
        return_weights: also return W (n, n) (dense: use for short series).

    Returns:
        y (n,) float64, or (y, W).
    """
    x = as_series(x)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if decay is not None and not decay > 0:
        raise ValueError(f"decay must be > 0 or None, got {decay!r}")
    if window is not None and (not isinstance(window, int) or window < 1):
        raise ValueError(f"window must be a positive int or None, got {window!r}")
    import selfattention as sa

    n = len(x)
    step = float(np.std(np.diff(x))) or 1.0  # a constant series: any unit will do
    e = torch.from_numpy(delay_embedding(x, lags) / step)  # (n, lags)
    pos = torch.arange(n, dtype=torch.float64)
    inv_t = 0.0 if math.isinf(temperature) else 1.0 / (temperature * lags)
    bias = -(e**2).sum(-1) * inv_t  # (n,) key bias; the query's own norm cancels
    if decay is not None and causal:
        bias = bias + pos / decay  # -(i - j)/ℓ = j/ℓ - (row constant)
    elif decay is not None:
        # -((i - j)/ℓ)² = 2 (i/ℓ)(j/ℓ) - (j/ℓ)² - (row constant): one more feature, one more bias
        p = pos / decay
        e = torch.cat([e * math.sqrt(inv_t), p[:, None]], dim=1)
        inv_t = 1.0  # now folded into e; scale 2 gives 2·inv_t·e_i·e_j + 2·p_i·p_j
        bias = bias - p**2
    if causal:
        win = (window - 1, 0) if window is not None else (None, 0)
    else:
        win = (window, window) if window is not None else None
    q = e[None, None]  # (1, 1, n, d)
    v = torch.from_numpy(x.copy())[None, None, :, None]  # (1, 1, n, 1)
    res = sa.attention(
        q,
        q,
        v,
        bias=bias[None, None, None, :],
        scale=2.0 * inv_t,
        window=win,
        return_weights=return_weights,
    )
    if return_weights:
        out, weights = res
        return out[0, 0, :, 0].numpy(), weights[0, 0].numpy()
    return res[0, 0, :, 0].numpy()


def moving_average(x: Sequence[float] | np.ndarray, n: int, *, causal: bool = True) -> np.ndarray:
    """Mean of the last ``n`` points (fewer at the start); ``causal=False``: 2n+1 centred."""
    x = as_series(x)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    c = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(len(x))
    lo = np.maximum(0, i - n + 1) if causal else np.maximum(0, i - n)
    hi = i + 1 if causal else np.minimum(len(x), i + n + 1)
    return (c[hi] - c[lo]) / (hi - lo)


def exponential_moving_average(x: Sequence[float] | np.ndarray, alpha: float) -> np.ndarray:
    """``y_0 = x_0``, ``y_t = α x_t + (1 - α) y_{t-1}``; the span N corresponds to α = 2/(N+1)."""
    x = as_series(x)
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    y = np.empty_like(x)
    acc = x[0]
    for t, v in enumerate(x):  # 5,000 points: a Python loop is fast enough and needs no SciPy
        acc = alpha * v + (1.0 - alpha) * acc
        y[t] = acc
    return y
