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

The package: ``series`` (reading a CSV, oldest first), ``smoother`` (the smoother and the
baselines), ``metrics`` (the figures and the sweeps), ``compare`` (``SmoothConfig`` and one run
against the baselines at equal roughness), ``plot`` (the picture).
"""

from __future__ import annotations

from selfattention.apps.smoothing.compare import (
    Comparison,
    SmoothConfig,
    compare,
    ema_at,
    moving_average_at,
    volatile_span,
)
from selfattention.apps.smoothing.metrics import (
    ATTENTION_DECAYS,
    ATTENTION_TEMPERATURES,
    EMA_ALPHAS,
    MA_WINDOWS,
    by_regime,
    compare_at_roughness,
    lag,
    roughness,
    score,
    tracking_error,
    tradeoff,
)
from selfattention.apps.smoothing.plot import plot
from selfattention.apps.smoothing.series import FILE_ORDER, Series, load_series, parse_dates
from selfattention.apps.smoothing.smoother import (
    as_series,
    attention_smooth,
    delay_embedding,
    exponential_moving_average,
    moving_average,
)

__all__ = [
    "ATTENTION_DECAYS",
    "ATTENTION_TEMPERATURES",
    "EMA_ALPHAS",
    "FILE_ORDER",
    "MA_WINDOWS",
    "Comparison",
    "Series",
    "SmoothConfig",
    "as_series",
    "attention_smooth",
    "by_regime",
    "compare",
    "compare_at_roughness",
    "delay_embedding",
    "ema_at",
    "exponential_moving_average",
    "lag",
    "load_series",
    "moving_average",
    "moving_average_at",
    "parse_dates",
    "plot",
    "roughness",
    "score",
    "tracking_error",
    "tradeoff",
    "volatile_span",
]
