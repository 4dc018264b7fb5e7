"""One smoothing run: the attention smoother at the chosen settings against the moving average and
the EMA tuned to the same roughness, scored overall and by regime, plus each method's sweep.

    result = compare(load_series("prices.csv", "Close"), SmoothConfig(window=60))
    result.chosen          # {label: smoothed series}, attention first
    result.at_equal        # {label: {roughness, lag, tracking_error, volatile, calm}}
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from selfattention.apps.smoothing.metrics import (
    by_regime,
    compare_at_roughness,
    roughness,
    score,
    tradeoff,
)
from selfattention.apps.smoothing.series import Series
from selfattention.apps.smoothing.smoother import (
    attention_smooth,
    exponential_moving_average,
    moving_average,
)

__all__ = ["Comparison", "SmoothConfig", "compare", "ema_at", "moving_average_at", "volatile_span"]


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} (--{name}) must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class SmoothConfig:
    """The smoother's settings (see the package docstring for the formula).

    Attributes:
        temperature: τ > 0 (``math.inf`` = position only).
        decay: ℓ > 0 in steps, or None for content similarity only.
        lags: delay-embedding length (>= 1).
        window: points attended to, i included (>= 1).

    Raises:
        ValueError: naming the option, what it got and what is allowed.
    """

    temperature: float = 100.0
    decay: float | None = 5.0
    lags: int = 5
    window: int = 60

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, int | float) and self.temperature > 0):
            raise ValueError(f"temperature (--temperature) must be > 0, got {self.temperature!r}")
        if self.decay is not None and not (
            isinstance(self.decay, int | float) and 0 < self.decay < math.inf
        ):
            raise ValueError(f"decay (--decay) must be > 0 and finite, got {self.decay!r}")
        _positive_int("lags", self.lags)
        _positive_int("window", self.window)


@dataclass(frozen=True)
class Comparison:
    """What ``compare`` found. ``chosen`` maps a label (attention, EMA, moving average, with
    their settings) to the smoothed series (n,); ``at_equal`` scores each overall and by regime;
    ``rows`` is every method's sweep and ``levels`` the sweeps read at common roughness levels;
    ``zoom`` = (start, stop) of the most volatile stretch, for the picture."""

    config: SmoothConfig
    chosen: dict[str, np.ndarray]
    at_equal: dict[str, dict[str, Any]]
    rows: list[dict[str, Any]]
    levels: list[dict[str, Any]]
    zoom: tuple[int, int]
    settings: dict[str, Any] = field(default_factory=dict)


def ema_at(x: np.ndarray, target: float) -> tuple[float, np.ndarray]:
    """The EMA whose roughness is ``target``: (alpha, y). Roughness falls monotonically as alpha
    falls, so alpha is found by bisection."""
    lo, hi = 1e-4, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if roughness(x, exponential_moving_average(x, mid)) > target:
            hi = mid
        else:
            lo = mid
    a = (lo + hi) / 2
    return a, exponential_moving_average(x, a)


def moving_average_at(x: np.ndarray, target: float) -> tuple[int, np.ndarray]:
    """The trailing moving average (n = 1 … 199 points) closest to roughness ``target``."""
    best = min(range(1, 200), key=lambda n: abs(roughness(x, moving_average(x, n)) - target))
    return best, moving_average(x, best)


def volatile_span(x: np.ndarray, width: int = 160) -> tuple[int, int]:
    """(start, stop) of the ``width`` points with the largest total move: where smoothers
    differ most."""
    if len(x) <= width:
        return 0, len(x)
    moves = np.abs(np.diff(x, prepend=x[0]))
    vol = np.convolve(moves, np.ones(width), mode="valid")
    start = int(np.argmax(vol))
    return start, start + width


def compare(series: Series, config: SmoothConfig) -> Comparison:
    """Smooth ``series`` by attention at ``config``, tune the EMA and the moving average to the
    same roughness, score all three, and sweep each method across its setting."""
    x = series.values
    att = attention_smooth(
        x, temperature=config.temperature, decay=config.decay, lags=config.lags,
        window=config.window,
    )  # fmt: skip
    r = roughness(x, att)
    alpha, ema = ema_at(x, r)
    n, ma = moving_average_at(x, r)
    chosen = {
        f"attention (τ={config.temperature:g}, ℓ={config.decay})": att,
        f"EMA (α={alpha:.3f})": ema,
        f"moving average (n={n})": ma,
    }
    rows = tradeoff(x, temperature=config.temperature, lags=config.lags, window=config.window)
    return Comparison(
        config=config,
        chosen=chosen,
        at_equal={name: {**score(x, y), **by_regime(x, y)} for name, y in chosen.items()},
        rows=rows,
        levels=compare_at_roughness(rows),
        zoom=volatile_span(x),
        settings=asdict(config),
    )
