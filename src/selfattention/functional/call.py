"""The one request every backend receives, validated once at the public boundary.

The ``check_*`` validators are public so that the modules in ``selfattention.nn`` reject bad
options with the same messages as the functions do (argument name, what it got, what it expects).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from selfattention.functional import masks as _masks
from selfattention.functional import normalize as _norm


@dataclass(frozen=True)
class AttentionCall:
    """A validated attention request. Shapes: q (b, h, i, d), k (b, h, j, d), v (b, h, j, e).

    At the public boundary k and v may have h_kv heads, h_kv dividing h (``groups`` > 1,
    grouped-query attention); such a call is split by ``functional.grouped`` before any backend.

    ``mask`` is the user's bool mask only (True = may attend) and ``bias`` the additive float bias,
    both 4-D (leading axes added at validation) and broadcastable to (b, h, i, j);
    ``causal``, ``window`` = (left, right) (clamped to left <= n_q - 1, right <= n_k - 1) and
    ``grid`` (a 2-D ``Neighborhood``, or None) are kept symbolic so that kernels can skip work;
    ``allowed()`` materialises them all as one bool mask for the paths that need it.
    ``normalize`` is the resolved ``Normalization`` object (never a name).
    ``return_stats`` asks for the per-row statistic (log-sum-exp for softmax);
    ``weights_rows`` (int64 (r,), or None = every row) the query rows whose weights are returned.
    """

    q: Tensor
    k: Tensor
    v: Tensor
    mask: Tensor | None
    bias: Tensor | None
    causal: bool
    window: tuple[int | None, int | None] | None
    scale: float
    normalize: _norm.Normalization
    dropout_p: float
    return_weights: bool
    grid: _masks.Neighborhood | None = None
    return_stats: bool = False
    weights_rows: Tensor | None = None

    @property
    def need_stat(self) -> bool:
        """Must the kernel return the per-row statistic? (Weights alone take it from the rows'
        own block of scores: ``functional.weights``.)"""
        return self.return_stats

    @property
    def groups(self) -> int:
        """Query heads per key/value head (grouped-query attention); backends only ever see 1
        (``functional.grouped`` splits the call first)."""
        return self.q.shape[1] // self.k.shape[1]

    @property
    def q_len(self) -> int:
        return self.q.shape[-2]

    @property
    def k_len(self) -> int:
        return self.k.shape[-2]

    def band(self) -> tuple[int | None, int | None]:
        """(left, right) reach of each query after causal and window, None = unbounded."""
        left, right = self.window if self.window is not None else (None, None)
        if self.causal:
            right = 0 if right is None else min(right, 0)
        return left, right

    @property
    def windowed(self) -> bool:
        """Does the window leave out some key of some query? (A window >= n on both sides is
        full attention.)"""
        if self.window is None:
            return False
        left, right = self.window
        return (left is not None and left < self.q_len - 1) or (
            right is not None and right < self.k_len - 1
        )

    def allowed(self) -> Tensor | None:
        """User mask AND causal AND window AND grid AND finite bias, as one bool mask (or None)."""
        window = self.window if self.windowed else None
        m = _masks.build(
            self.mask, self.causal, window, self.q_len, self.k_len, self.q.device, self.grid
        )
        if self.bias is not None and bool(torch.isneginf(self.bias).any()):
            # -inf in an additive bias means "may not attend": treat it as masked, so no NaN.
            m = _masks.combine(m, ~torch.isneginf(self.bias))
        return m


def _check_tensor(name: str, t) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if t.ndim != 4:
        raise ValueError(
            f"{name} must have shape (batch, heads, seq, head_dim), got {tuple(t.shape)} "
            f"({t.ndim}-D); add a heads axis with {name}.unsqueeze(1)"
        )
    if 0 in t.shape:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(t.shape)}")


def _check_broadcast(name: str, t: Tensor, target: tuple[int, ...]) -> None:
    try:
        out = torch.broadcast_shapes(tuple(t.shape), target)
    except RuntimeError:
        out = None
    if out != target:
        raise ValueError(
            f"{name} of shape {tuple(t.shape)} cannot broadcast to (batch, heads, q_len, k_len) "
            f"= {target}"
        )


def check_mask(mask, target_shape: tuple[int, ...] | None = None, name: str = "mask") -> Tensor:
    """A bool mask (True = may attend), broadcastable to ``target_shape`` when one is given."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a bool torch.Tensor or None, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"{name} must be bool (True = may attend), got dtype {mask.dtype}; "
            "pass an additive float mask as bias= instead"
        )
    if target_shape is not None:
        _check_broadcast(name, mask, tuple(target_shape))
    return mask


def check_scale(value, name: str = "scale") -> float | None:
    """A finite int/float, or None (= 1/√d, resolved by the caller)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if value is not None and not (number and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number or None, got {value!r}")
    return None if value is None else float(value)


def check_normalize(value, name: str = "normalize", allow_callable: bool = True):
    """A name from ``normalize.NORMALIZATIONS`` or a blockwise ``Normalization``, or (if allowed)
    a callable (scores, mask) -> W. Returns ``value`` unchanged (``normalize.resolve`` makes the
    object)."""
    if isinstance(value, str) and value in _norm.NORMALIZATIONS:
        return value
    if isinstance(value, _norm.Normalization) and (value.blockwise or allow_callable):
        return value
    if allow_callable and callable(value):
        return value
    names = sorted(_norm.NORMALIZATIONS)
    expected = f"one of {names}" + (" or a callable (scores, mask) -> weights" * allow_callable)
    raise ValueError(f"{name} must be {expected}, got {value!r}")


def check_backend(value, choices=None, name: str = "backend") -> str:
    """A backend name: a string, and "auto" or one of ``choices`` when those are given."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string name, got {value!r}")
    if choices is not None and value != "auto" and value not in choices:
        raise ValueError(f"{name} must be 'auto' or one of {sorted(choices)}, got {value!r}")
    return value


def check_rows(rows, q_len: int, name: str = "weights_rows") -> Tensor | None:
    """None, a slice, an int sequence or a 1-D integer tensor of query rows -> int64 (r,).

    Negative indices count from the end, as in Python; duplicates keep their order.
    """
    if rows is None:
        return None
    if isinstance(rows, slice):
        idx = torch.arange(q_len)[rows]
    elif isinstance(rows, Tensor):
        if rows.dtype in (torch.bool,) or rows.dtype.is_floating_point or rows.ndim != 1:
            raise TypeError(
                f"{name} must be a 1-D integer tensor, got dtype {rows.dtype} with shape "
                f"{tuple(rows.shape)}"
            )
        idx = rows.detach().to("cpu", torch.int64)
    elif isinstance(rows, list | tuple | range) and all(
        isinstance(r, int) and not isinstance(r, bool) for r in rows
    ):
        idx = torch.tensor(list(rows), dtype=torch.int64).reshape(-1)
    else:
        raise TypeError(
            f"{name} must be None, a slice, a sequence of ints or a 1-D integer tensor, "
            f"got {rows!r}"
        )
    if idx.numel() == 0:
        raise ValueError(f"{name} must select at least one query row, got {rows!r}")
    bad = (idx < -q_len) | (idx >= q_len)
    if bool(bad.any()):
        raise ValueError(
            f"{name} must index the {q_len} query rows (-{q_len} ... {q_len - 1}), "
            f"got {idx[bad].tolist()[:5]}"
        )
    return idx % q_len


def _as_4d(t: Tensor) -> Tensor:
    """A view with leading size-1 axes, so backends can rely on (b|1, h|1, i|1, j|1)."""
    return t.reshape((1,) * (4 - t.ndim) + tuple(t.shape)) if t.ndim < 4 else t


def make_call(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None,
    bias: Tensor | None,
    causal: bool,
    window,
    scale: float | None,
    normalize,
    dropout_p: float,
    return_weights: bool,
    grid: _masks.Neighborhood | None = None,
    return_stats: bool = False,
    weights_rows=None,
) -> AttentionCall:
    """Check every argument and name the culprit; returns the normalised request.

    ``grid`` (from ``neighborhood_attention``) restricts each patch of an H × W grid to its
    k × k neighbourhood; q and k must then have H·W positions.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_tensor(name, t)
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must share head_dim: q has {q.shape[-1]} (shape {tuple(q.shape)}), "
            f"k has {k.shape[-1]} (shape {tuple(k.shape)})"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same sequence length: k has {k.shape[-2]}, v has {v.shape[-2]}"
        )
    if q.shape[0] != k.shape[0] or k.shape[:2] != v.shape[:2]:
        raise ValueError(
            "q, k, v must share (batch, heads) (k, v may have fewer heads than q, dividing "
            "them: grouped-query attention), got "
            f"{tuple(q.shape[:2])}, {tuple(k.shape[:2])}, {tuple(v.shape[:2])}"
        )
    if q.shape[1] % k.shape[1]:
        # grouped-query attention: query head i reads key/value head i // (h_q / h_kv)
        raise ValueError(
            f"k and v heads must divide q heads (grouped-query attention): q has {q.shape[1]} "
            f"heads, k and v have {k.shape[1]} (q.shape {tuple(q.shape)}, k.shape "
            f"{tuple(k.shape)})"
        )
    if grid is not None and not (q.shape[-2] == k.shape[-2] == grid.size):
        raise ValueError(
            f"q and k must be (batch, heads, H·W={grid.size}, head_dim) for grid "
            f"{(grid.height, grid.width)}, got {tuple(q.shape)} and {tuple(k.shape)}"
        )
    target = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    if mask is not None:
        mask = _as_4d(check_mask(mask, target))
    if bias is not None:
        if not isinstance(bias, Tensor) or not bias.dtype.is_floating_point:
            got = bias.dtype if isinstance(bias, Tensor) else type(bias).__name__
            raise TypeError(f"bias must be a floating-point tensor, got {got}")
        _check_broadcast("bias", bias, target)
        if bool((torch.isnan(bias) | torch.isposinf(bias)).any()):
            raise ValueError("bias must be finite or -inf (= masked), got NaN or +inf entries")
        bias = _as_4d(bias)
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be a bool, got {causal!r}")
    window_ = _masks.resolve_window(window)
    if window_ is not None:
        window_ = _masks.clamp_window(window_, q.shape[-2], k.shape[-2])
    scale = check_scale(scale)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    check_normalize(normalize)
    norm = _norm.resolve(normalize)
    if return_stats is True:  # a result over part of the keys, to be merged: sum's check relaxes
        norm = norm.partial()
    if not (0.0 <= float(dropout_p) < 1.0):
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p!r}")
    for name, flag in (("return_weights", return_weights), ("return_stats", return_stats)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {flag!r}")
    if return_stats and not norm.blockwise:
        raise ValueError(
            f"return_stats/return_lse need a built-in normalize ({sorted(_norm.NORMALIZATIONS)}); "
            f"a user callable {norm.name!r} has no per-row statistic to merge by"
        )
    if weights_rows is not None and not return_weights:
        raise ValueError("weights_rows chooses rows of the weights: pass return_weights=True too")
    rows = check_rows(weights_rows, q.shape[-2])
    if rows is not None:
        rows = rows.to(q.device)
    return AttentionCall(
        q,
        k,
        v,
        mask,
        bias,
        causal,
        window_,
        float(scale),
        norm,
        float(dropout_p),
        bool(return_weights),
        grid,
        bool(return_stats),
        rows,
    )
