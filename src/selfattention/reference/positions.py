"""Position information as oracles for the modules: sinusoidal, rotary (RoPE) and ALiBi.

Conventions (the modules in ``selfattention.nn`` follow the same ones):
- sinusoidal (Vaswani et al. 2017): PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(same);
  added to the word vectors.
- rotary (Su et al. 2021) in the half-split ("rotate_half") layout of Hugging Face LLaMA and
  GPT-NeoX: dimension m < d/2 is paired with m + d/2, not with its neighbour; applied to q and k
  after their projections, so q_p · k_r depends on p and r only through p - r.
- ALiBi (Press et al. 2022): head h gets slope m_h; the bias is -m_h · |i - j|, symmetric (for
  encoders; under a causal mask it equals the paper's m_h · (j - i)).
"""

from __future__ import annotations

import math

import numpy as np

from selfattention.reference._arrays import as_float

__all__ = ["alibi_bias", "alibi_slopes", "rotary", "sinusoidal_positions"]


def _positive(name: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"{name} must be a positive int, got {n!r}")
    return int(n)


def sinusoidal_positions(n: int, d: int, base: float = 10000.0) -> np.ndarray:
    """(n, d): PE[p, 2i] = sin(p / base^(2i/d)), PE[p, 2i+1] = cos(p / base^(2i/d)).

    An odd d keeps the last sine column (its cosine partner would be column d).
    """
    n, d = _positive("n", n), _positive("d", d)
    p = np.arange(n, dtype=np.float64)[:, None]
    two_i = np.arange(0, d, 2, dtype=np.float64)[None, :]
    angle = p / base ** (two_i / d)  # (n, ceil(d/2))
    pe = np.zeros((n, d))
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, : d // 2])
    return pe


def rotary(x, base: float = 10000.0, positions=None) -> np.ndarray:
    """RoPE, half-split layout: with x = [x1, x2] (halves of the last axis), θ_m = base^(-2m/d),

        out = [x1 cos(pθ) - x2 sin(pθ),  x2 cos(pθ) + x1 sin(pθ)]

    i.e. each pair (x[m], x[m + d/2]) is rotated by the angle p·θ_m. x (..., n, d), d even;
    positions p default to 0 … n-1 along axis -2.
    """
    x = as_float("x", x)
    n, d = x.shape[-2], x.shape[-1]
    if d % 2:
        raise ValueError(f"rotary needs an even last dimension, got {d} (shape {x.shape})")
    p = (
        np.arange(n, dtype=np.float64)
        if positions is None
        else as_float("positions", positions, min_ndim=1)
    )
    if p.shape[-1] != n:
        raise ValueError(f"positions must have {n} entries (axis -2 of x), got shape {p.shape}")
    theta = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)  # (d/2,)
    angle = p[..., :, None] * theta  # (..., n, d/2)
    cos, sin = np.cos(angle), np.sin(angle)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def alibi_slopes(heads: int) -> np.ndarray:
    """(heads,): for a power of two H, m_h = 2^(-8h/H), h = 1 … H. Otherwise, with P the largest
    power of two below H, the P slopes of P followed by every other slope of 2P (the first H - P
    of m_1, m_3, m_5, … for 2P), as in the authors' reference code."""
    heads = _positive("heads", heads)

    def power_of_two(h: int) -> np.ndarray:
        return 2.0 ** (-8.0 * np.arange(1, h + 1) / h)

    if heads & (heads - 1) == 0:
        return power_of_two(heads)
    p = 2 ** math.floor(math.log2(heads))
    return np.concatenate([power_of_two(p), power_of_two(2 * p)[0::2][: heads - p]])


def alibi_bias(heads: int, n: int, k_len: int | None = None) -> np.ndarray:
    """(heads, n, k_len) additive bias B[h, i, j] = -m_h · |i - j| (symmetric; m_h from
    ``alibi_slopes``). Add it to the scores before the softmax."""
    n = _positive("n", n)
    k_len = n if k_len is None else _positive("k_len", k_len)
    dist = np.abs(np.arange(n)[:, None] - np.arange(k_len)[None, :]).astype(np.float64)
    return -alibi_slopes(heads)[:, None, None] * dist
