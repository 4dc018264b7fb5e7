"""How smooth, how late, how far: the figures that judge a smoother, and the sweeps that trace
each method's trade-off.

* roughness: ``std(Δy) / std(Δx)`` (1 = as rough as the raw series, 0 = a straight line);
* lag: the shift k (days, refined by a parabola) that best aligns ``y_t`` with ``x_{t-k}``, i.e. the
  peak of their cross-correlation, found as the minimum of the mean squared difference;
* tracking error: ``sqrt(mean((y - x)²))`` in the series' units.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from selfattention.apps.smoothing.smoother import (
    as_series,
    attention_smooth,
    exponential_moving_average,
    moving_average,
)

__all__ = [
    "ATTENTION_DECAYS",
    "ATTENTION_TEMPERATURES",
    "EMA_ALPHAS",
    "MA_WINDOWS",
    "by_regime",
    "compare_at_roughness",
    "lag",
    "roughness",
    "score",
    "tracking_error",
    "tradeoff",
]


def roughness(x: np.ndarray, y: np.ndarray) -> float:
    """``std(Δy) / std(Δx)``: 1 = as rough as the raw series."""
    sx = float(np.std(np.diff(x)))
    return float(np.std(np.diff(y))) / sx if sx > 0 else 0.0


def lag(x: np.ndarray, y: np.ndarray, max_lag: int = 100) -> float:
    """Shift k >= 0 (fractional) minimising ``mean((y_t - x_{t-k})²)``: the cross-correlation
    peak."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    k_max = min(max_lag, len(x) // 4)
    if k_max < 2:
        return 0.0
    m = np.array([np.mean((y[k_max:] - x[k_max - k : len(x) - k]) ** 2) for k in range(k_max)])
    k = int(np.argmin(m))
    if 0 < k < k_max - 1:  # parabola through the three points around the minimum
        a, b, c = m[k - 1], m[k], m[k + 1]
        den = a - 2 * b + c
        return float(k + 0.5 * (a - c) / den) if den > 0 else float(k)
    return float(k)


def tracking_error(x: np.ndarray, y: np.ndarray) -> float:
    """Root mean squared difference between the smoothed and the raw series."""
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(x)) ** 2)))


def score(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The three figures for one smoothed series."""
    return {
        "roughness": roughness(x, y),
        "lag": lag(x, y),
        "tracking_error": tracking_error(x, y),
    }


def by_regime(
    x: np.ndarray, y: np.ndarray, *, width: int = 20, quantile: float = 0.9
) -> dict[str, dict[str, float]]:
    """Roughness and tracking error apart on volatile and calm stretches.

    A point is volatile when the mean absolute move over the ``width`` points ending at it is in
    the top ``1 - quantile`` of the series (the 2008 crash, 2001, 2011 in the S&P demo)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    moves = np.abs(np.diff(x, prepend=x[0]))
    vol = np.convolve(moves, np.ones(width) / width, mode="full")[: len(x)]
    hot = vol > np.quantile(vol, quantile)
    out = {}
    for name, sel in (("volatile", hot), ("calm", ~hot)):
        d = sel[1:]
        sx = float(np.std(np.diff(x)[d])) or 1.0
        out[name] = {
            "share": float(sel.mean()),
            "roughness": float(np.std(np.diff(y)[d])) / sx,
            "tracking_error": float(np.sqrt(np.mean((y[sel] - x[sel]) ** 2))),
        }
    return out


# Each method's setting sweeps it from barely smoothed to heavily smoothed.
MA_WINDOWS = (2, 3, 4, 5, 7, 10, 14, 20, 30, 40)
EMA_ALPHAS = (0.7, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.07, 0.05)
ATTENTION_DECAYS = (0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 35.0, 60.0)
ATTENTION_TEMPERATURES = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


def tradeoff(
    x: np.ndarray,
    *,
    temperature: float = 100.0,
    decay: float = 5.0,
    lags: int = 5,
    window: int = 60,
) -> list[dict[str, Any]]:
    """Score each method across its setting: rows ``{method, setting, roughness, lag,
    tracking_error}``. Attention is swept twice: over the decay ℓ at ``temperature`` ("attention"),
    and over τ with no position term ("attention, content only", the write-ups' pure form)."""
    x = as_series(x)
    rows: list[dict[str, Any]] = []
    for n in MA_WINDOWS:
        rows.append(
            {"method": "moving average", "setting": f"n={n}", **score(x, moving_average(x, n))}
        )
    for a in EMA_ALPHAS:
        y = exponential_moving_average(x, a)
        rows.append({"method": "EMA", "setting": f"alpha={a}", **score(x, y)})
    for d in ATTENTION_DECAYS:
        y = attention_smooth(x, temperature=temperature, decay=d, lags=lags, window=window)
        rows.append(
            {"method": "attention", "setting": f"tau={temperature:g},decay={d:g}", **score(x, y)}
        )
    for t in ATTENTION_TEMPERATURES:
        y = attention_smooth(x, temperature=t, decay=None, lags=lags, window=window)
        rows.append({"method": "attention, content only", "setting": f"tau={t:g}", **score(x, y)})
    return rows


def compare_at_roughness(
    rows: list[dict[str, Any]], levels: Sequence[float] = (0.5, 0.4, 0.3, 0.2)
) -> list[dict[str, Any]]:
    """Each method's lag and tracking error interpolated at the same roughness levels (None where
    a method's sweep does not reach the level)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((r for r in rows if r["method"] == method), key=lambda r: r["roughness"])
        rough = np.array([p["roughness"] for p in pts])
        for level in levels:
            row: dict[str, Any] = {"method": method, "roughness": level}
            for key in ("lag", "tracking_error"):
                inside = rough.min() <= level <= rough.max()
                vals = np.array([p[key] for p in pts])
                row[key] = float(np.interp(level, rough, vals)) if inside else None
            out.append(row)
    return out
