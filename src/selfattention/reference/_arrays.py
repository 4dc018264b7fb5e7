"""Input checks shared by the reference rungs: every array becomes a finite float64 ndarray."""

from __future__ import annotations

import numpy as np

__all__ = ["as_bool", "as_float", "broadcast_to_scores"]


def as_float(name: str, x, *, min_ndim: int = 2, allow_neginf: bool = False) -> np.ndarray:
    """``x`` as float64, at least ``min_ndim``-D, non-empty and finite (or -inf if allowed)."""
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must be at least {min_ndim}-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must be non-empty, got shape {arr.shape}")
    bad = np.isnan(arr) | np.isposinf(arr) | (np.isneginf(arr) & (not allow_neginf))
    if bad.any():
        allowed = "finite or -inf" if allow_neginf else "finite"
        raise ValueError(f"{name} must be {allowed}, got {int(bad.sum())} bad value(s)")
    return arr


def as_bool(name: str, m) -> np.ndarray:
    """A bool mask (True = may attend); integer or float masks are refused, not guessed."""
    arr = np.asarray(m)
    if arr.dtype != np.bool_:
        raise TypeError(
            f"{name} must be bool (True = may attend), got dtype {arr.dtype}; "
            "pass an additive float mask as bias= instead"
        )
    return arr


def broadcast_to_scores(name: str, arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Broadcast a mask or bias to the scores' shape (..., i, j), or say why it cannot."""
    try:
        out_shape = np.broadcast_shapes(arr.shape, shape)
    except ValueError:
        out_shape = None
    if out_shape != shape:
        raise ValueError(f"{name} of shape {arr.shape} cannot broadcast to the scores' {shape}")
    return np.broadcast_to(arr, shape)
