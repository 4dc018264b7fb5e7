"""Parameter-free self-attention smoothing of a series, and the baselines to judge it by.

The write-ups' first picture of self-attention: re-weight each point of a noisy series by the
points related to it, ``Y = W X``, where row i of ``W`` holds the normalised similarities of point
i to the others. Nothing is learned; the settings are a temperature and a window.

Each point becomes a vector ``e_i`` = its last ``lags`` values (a delay embedding), in units of the
series' typical daily move ``s = std(x_t - x_{t-1})``. The scores are

    S_ij = -||e_i - e_j||² / (τ · lags)  -  (i - j) / ℓ        for i - window < j <= i (causal)
    W = softmax_j(S),    y_i = Σ_j W_ij x_j

The first term says "j is related to i when the recent values look alike" (a Gaussian kernel of
temperature τ; τ → ∞ ignores content); the second is a position term: an ALiBi-style linear
penalty with decay length ℓ that, alone, gives an exponentially weighted average (an EMA truncated
to the window). A plain dot product ``e_i · e_j`` would favour the largest values, so the distance
is used instead; it is a dot product plus biases
(``-||e_i-e_j||² = 2 e_i·e_j - ||e_i||² - ||e_j||²``; the ``||e_i||²`` term cancels in the softmax),
which is how it is handed to
:func:`selfattention.attention`: ``q = k = e``, ``scale = 2/(τ·lags)``, key bias
``-||e_j||²/(τ·lags) + j/ℓ``. With ``causal=False`` the window is centred and the position term
is Gaussian, ``-((i - j)/ℓ)²``.

The baselines are the trailing moving average and the exponential moving average; the figures are

* roughness: ``std(Δy) / std(Δx)`` (1 = as rough as the raw series, 0 = a straight line);
* lag: the shift k (days, refined by a parabola) that best aligns ``y_t`` with ``x_{t-k}``, i.e. the
  peak of their cross-correlation, found as the minimum of the mean squared difference;
* tracking error: ``sqrt(mean((y - x)²))`` in the series' units.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "Series",
    "attention_smooth",
    "by_regime",
    "compare_at_roughness",
    "delay_embedding",
    "exponential_moving_average",
    "lag",
    "load_series",
    "moving_average",
    "plot",
    "roughness",
    "score",
    "tracking_error",
    "tradeoff",
]


# ---------------------------------------------------------------------------------------------
# input


@dataclass(frozen=True)
class Series:
    """A series read from a file: ``values`` (n,) float64, ``labels`` (n,) e.g. dates, ``name``."""

    values: np.ndarray
    labels: list[str]
    name: str
    dropped: int = 0  # rows removed or filled because of missing values


def _open_text(path: Path):
    return gzip.open(path, "rt", newline="") if path.suffix == ".gz" else open(path, newline="")


def load_series(
    path: str | Path,
    column: str,
    *,
    label_column: str | None = None,
    missing: str = "error",
) -> Series:
    """Read one numeric column of a CSV file (``.csv`` or ``.csv.gz``, header row required).

    Rows are taken as equally spaced observations, in file order: gaps in the dates (weekends,
    holidays) are not filled, as is usual for daily prices.

    Args:
        column: header of the value column.
        label_column: header of a label column (e.g. dates); default: the first column if it is
            not ``column``, else row numbers.
        missing: what to do with empty or NaN cells: ``"error"`` (default), ``"drop"`` the rows, or
            ``"interpolate"`` linearly between the neighbours (ends take the nearest value).

    Raises:
        FileNotFoundError: no such file. ValueError: no such column, a non-numeric cell (named by
        row and column), a missing value with ``missing="error"``, fewer than 3 values.
    """
    if missing not in ("error", "drop", "interpolate"):
        raise ValueError(f"missing must be 'error', 'drop' or 'interpolate', got {missing!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"series file {path} does not exist")
    with _open_text(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty (expected a header row and values)")
        header = [h.strip().lstrip("\ufeff") for h in header]
        if column not in header:
            raise ValueError(f"{path} has no column {column!r}; columns: {', '.join(header)}")
        col = header.index(column)
        if label_column is None:
            lab = 0 if col != 0 else None
        elif label_column in header:
            lab = header.index(label_column)
        else:
            raise ValueError(f"{path} has no column {label_column!r}; columns: {', '.join(header)}")
        values: list[float] = []
        labels: list[str] = []
        for row_no, row in enumerate(reader, start=2):
            if not row:
                continue
            cell = row[col].strip() if col < len(row) else ""
            labels.append(row[lab] if lab is not None and lab < len(row) else str(row_no - 1))
            if cell == "" or cell.lower() in ("nan", "na", "null"):
                if missing == "error":
                    raise ValueError(
                        f"{path}: row {row_no}, column {column!r} is missing ({cell!r}); "
                        "use missing='drop' or 'interpolate' (--missing on the command line)"
                    )
                values.append(math.nan)
                continue
            try:
                v = float(cell)
            except ValueError:
                raise ValueError(
                    f"{path}: row {row_no}, column {column!r} is not a number: {cell!r}"
                ) from None
            if not math.isfinite(v):
                raise ValueError(f"{path}: row {row_no}, column {column!r} is {cell!r}")
            values.append(v)
    x = np.asarray(values, dtype=np.float64)
    bad = np.isnan(x)
    if bad.any():
        if missing == "drop":
            labels = [lb for lb, b in zip(labels, bad, strict=True) if not b]
            x = x[~bad]
        else:
            idx = np.arange(len(x))
            if bad.all():
                raise ValueError(f"{path}: column {column!r} has no values at all")
            x = np.interp(idx, idx[~bad], x[~bad])
    if len(x) < 3:
        raise ValueError(f"{path}: column {column!r} has {len(x)} values; need at least 3")
    return Series(values=x, labels=labels, name=column, dropped=int(bad.sum()))


def _as_series(x: Any) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"x must be a 1-d series, got shape {arr.shape}")
    if len(arr) < 2:
        raise ValueError(f"x must have at least 2 values, got {len(arr)}")
    if not np.isfinite(arr).all():
        where = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"x has a non-finite value at index {where}: {arr[where]}")
    return arr


# ---------------------------------------------------------------------------------------------
# the smoother


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
    x = _as_series(x)
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
    x = _as_series(x)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    c = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(len(x))
    lo = np.maximum(0, i - n + 1) if causal else np.maximum(0, i - n)
    hi = i + 1 if causal else np.minimum(len(x), i + n + 1)
    return (c[hi] - c[lo]) / (hi - lo)


def exponential_moving_average(x: Sequence[float] | np.ndarray, alpha: float) -> np.ndarray:
    """``y_0 = x_0``, ``y_t = α x_t + (1 - α) y_{t-1}``; the span N corresponds to α = 2/(N+1)."""
    x = _as_series(x)
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    y = np.empty_like(x)
    acc = x[0]
    for t, v in enumerate(x):  # 5,000 points: a Python loop is fast enough and needs no SciPy
        acc = alpha * v + (1.0 - alpha) * acc
        y[t] = acc
    return y


# ---------------------------------------------------------------------------------------------
# figures


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
    x = _as_series(x)
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


# ---------------------------------------------------------------------------------------------
# picture


def plot(
    series: Series,
    smoothed: dict[str, np.ndarray],
    rows: list[dict[str, Any]],
    path: str | Path,
    *,
    zoom: tuple[int, int] | None = None,
) -> Path:
    """PNG: the raw and smoothed series (zoomed to ``zoom`` = (start, stop) indices) and the
    trade-off curves (roughness against lag, and against tracking error)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = series.values
    lo, hi = zoom or (0, len(x))
    fig = plt.figure(figsize=(11, 7.5), dpi=90)
    grid = fig.add_gridspec(2, 2, height_ratios=(1.1, 1))
    top = fig.add_subplot(grid[0, :])
    t = np.arange(lo, hi)
    top.plot(t, x[lo:hi], color="0.6", lw=1.0, label="raw")
    colours = {"moving average": "C0", "EMA": "C2", "attention": "C3"}
    colours["attention, content only"] = "C1"
    for name, y in smoothed.items():
        method = name.split(" (")[0]
        top.plot(t, y[lo:hi], lw=1.4, color=colours.get(method), label=name)
    ticks = np.linspace(lo, hi - 1, 6).astype(int)
    top.set_xticks(ticks, [series.labels[i][:10] for i in ticks])
    top.set_ylabel(series.name)
    top.set_title("raw and smoothed, at equal roughness")
    top.legend(fontsize=8, loc="best")
    for col, key, label in ((0, "lag", "lag (days)"), (1, "tracking_error", "tracking error")):
        ax = fig.add_subplot(grid[1, col])
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = sorted((r for r in rows if r["method"] == method), key=lambda r: r["roughness"])
            ax.plot(
                [p["roughness"] for p in pts],
                [p[key] for p in pts],
                "o-",
                ms=3,
                color=colours.get(method),
                label=method,
            )
        ax.set_xlabel("roughness  std(Δy)/std(Δx)  (smoother ←)")
        ax.set_ylabel(label)
        ax.set_title(f"trade-off: roughness vs {label}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
