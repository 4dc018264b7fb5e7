"""Bool masks as index predicates (True = may attend); i = query position, j = key position.

Queries and keys are aligned top-left: query i and key i are the same position, whatever the
lengths (as ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["causal_mask", "padding_mask", "window_mask"]


def _check_len(name: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"{name} must be a positive int, got {n!r}")
    return int(n)


def _check_reach(name: str, r) -> int | None:
    if r is None:
        return None
    if isinstance(r, bool) or not isinstance(r, int | np.integer) or r < 0:
        raise ValueError(f"window {name} must be a non-negative int or None, got {r!r}")
    return int(r)


def causal_mask(i: int, j: int | None = None) -> np.ndarray:
    """(i, j) bool: M[q, k] = k <= q (no query sees a later key)."""
    i = _check_len("i", i)
    j = i if j is None else _check_len("j", j)
    return np.arange(j)[None, :] <= np.arange(i)[:, None]


def window_mask(i: int, j: int | None = None, left: int | None = None, right: int | None = None):
    """(i, j) bool band: M[q, k] = q - left <= k <= q + right; None = unbounded on that side."""
    i = _check_len("i", i)
    j = i if j is None else _check_len("j", j)
    left, right = _check_reach("left", left), _check_reach("right", right)
    q, k = np.arange(i)[:, None], np.arange(j)[None, :]
    m = np.ones((i, j), dtype=bool)
    if left is not None:
        m &= k >= q - left
    if right is not None:
        m &= k <= q + right
    return m


def padding_mask(lengths, n: int | None = None) -> np.ndarray:
    """(b, n) bool: M[s, k] = k < lengths[s] (key k of sequence s is a real token, not padding)."""
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"lengths must be a 1-D sequence of ints, got {lengths!r}")
    if (lengths < 0).any():
        raise ValueError(f"lengths must be non-negative, got {lengths.tolist()}")
    n = int(lengths.max(initial=0)) if n is None else _check_len("n", n)
    if (lengths > n).any():
        raise ValueError(f"lengths must be <= n={n}, got {lengths.tolist()}")
    return np.arange(n)[None, :] < lengths[:, None]
