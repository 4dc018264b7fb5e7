"""Turning what users pass (torch tensors, NumPy arrays, lists per layer) into checked NumPy arrays.

Shape letters: L layers, H heads, i queries, j keys, n tokens, b batch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["as_array", "as_labels", "parse_selection", "select", "stack_layers", "thin_ticks"]


def as_array(x: Any, name: str, *, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """A float64 NumPy copy of a tensor/array/nested list, checked for dimensions and finiteness."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch here
        # .double(), not .float(): float64 tensors stay exact, half/bfloat16 (which NumPy cannot
        # hold) widen without loss.
        x = x.detach().cpu().double().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be a tensor or array of numbers, got {type(x).__name__}: {exc}"
        ) from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            want = " or ".join(f"{d}-d" for d in allowed)
            raise ValueError(f"{name} must be {want}, got shape {tuple(arr.shape)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values (shape {tuple(arr.shape)})")
    return arr


def stack_layers(weights: Any, name: str = "weights") -> np.ndarray:
    """Attention weights in any of the usual layouts -> one array (L, H, i, j).

    Accepted: (i, j) one map; (H, i, j) one layer; (L, H, i, j); a list/tuple per layer of
    (H, i, j) or (1, H, i, j) (what ``TransformerEncoder(..., return_weights=True)`` returns for a
    batch of one).
    """
    if isinstance(weights, list | tuple):
        if not weights:
            raise ValueError(f"{name} is an empty list; expected one (H, i, j) array per layer")
        layers = []
        for k, w in enumerate(weights):
            a = as_array(w, f"{name}[{k}]", ndim=(2, 3, 4))
            if a.ndim == 4:
                a = _drop_batch(a, f"{name}[{k}]")
            if a.ndim == 2:
                a = a[None]
            layers.append(a)
        shapes = {a.shape for a in layers}
        if len(shapes) > 1:
            raise ValueError(
                f"{name}: every layer must have the same (H, i, j); got {sorted(shapes)}"
            )
        return np.stack(layers)
    a = as_array(weights, name, ndim=(2, 3, 4, 5))
    if a.ndim == 5:  # (L, b, H, i, j)
        if a.shape[1] != 1:
            raise ValueError(
                f"{name} has shape {tuple(a.shape)} read as (L, b, H, i, j) with b={a.shape[1]}; "
                "select one sequence first, e.g. weights[:, k]"
            )
        a = a[:, 0]
    while a.ndim < 4:
        a = a[None]
    return a


def _drop_batch(a: np.ndarray, name: str) -> np.ndarray:
    if a.shape[0] != 1:
        raise ValueError(
            f"{name} has shape {tuple(a.shape)} read as (b, H, i, j) with b={a.shape[0]}; "
            "select one sequence first, e.g. [w[k] for w in weights]"
        )
    return a[0]


def as_labels(labels: Any, n: int, name: str) -> list[str]:
    """n display labels (str(x) of each item); ``None`` gives "0", "1", ..."""
    if labels is None:
        return [str(k) for k in range(n)]
    if isinstance(labels, str):
        raise TypeError(f"{name} must be a list of labels, got a single string {labels!r}")
    out = [str(t) for t in labels]
    if len(out) != n:
        raise ValueError(f"{name} has {len(out)} labels but the weights have {n} positions there")
    return out


_RANGE = re.compile(r"^\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?$")


def parse_selection(spec: Any, n: int, name: str, *, strict: bool = True) -> list[int]:
    """Indices chosen from ``range(n)``.

    ``spec``: None (all), an int, a slice, an iterable of ints, or a string such as "0,5" or
    "0-3,7" (ranges inclusive). Negative indices count from the end; duplicates are dropped, order
    kept. Out-of-range indices raise ValueError, or with ``strict=False`` are dropped (the result
    may then be empty).
    """
    if spec is None:
        return list(range(n))
    if isinstance(spec, slice):
        picked = list(range(n))[spec]
    elif isinstance(spec, str):
        picked = []
        for part in spec.split(","):
            if not part.strip():
                continue
            m = _RANGE.match(part)
            if not m:
                raise ValueError(
                    f"{name}={spec!r}: expected comma-separated indices or ranges "
                    "like '0,5' or '0-3'"
                )
            lo, hi = int(m.group(1)), m.group(2)
            picked.extend(range(lo, int(hi) + 1) if hi is not None else [lo])
    elif isinstance(spec, int | np.integer):
        picked = [int(spec)]
    elif isinstance(spec, Iterable):
        picked = [_as_index(v, name) for v in spec]
    else:
        raise TypeError(
            f"{name} must be None, an int, a slice, a list of ints or a string like '0-3'"
        )
    out: list[int] = []
    for k in picked:
        if not -n <= k < n:
            if not strict:
                continue
            raise ValueError(f"{name}: index {k} is out of range for {n} entries (0..{n - 1})")
        k = k % n
        if k not in out:
            out.append(k)
    if not out and strict:
        raise ValueError(f"{name}={spec!r} selects nothing out of {n} entries")
    return out


def _as_index(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer):
        raise TypeError(f"{name} must hold integer indices, got {v!r}")
    return int(v)


def select(w: np.ndarray, layers: Any = None, heads: Any = None) -> tuple[np.ndarray, list, list]:
    """w (L, H, i, j) restricted to the chosen layers and heads, plus the chosen indices."""
    layer_ids = parse_selection(layers, w.shape[0], "layers")
    head_ids = parse_selection(heads, w.shape[1], "heads")
    return w[np.ix_(layer_ids, head_ids)], layer_ids, head_ids


def thin_ticks(n: int, max_labels: int) -> Sequence[int]:
    """Every k-th position so that at most ``max_labels`` tick labels are drawn."""
    step = max(1, -(-n // max(1, max_labels)))
    return range(0, n, step)
