"""Validation of one distributed call, on every rank and across ranks, into ``Options``."""

from __future__ import annotations

import torch
from torch import Tensor

from selfattention.distributed.group import Ring, ShardMismatchError, check_same_call
from selfattention.distributed.plan import Options
from selfattention.distributed.shard import LAYOUTS, check_layout, layout_segments
from selfattention.functional import masks as _masks
from selfattention.functional import normalize as _norm
from selfattention.functional.call import check_scale

__all__ = ["make_options"]

_NAMES = [
    "batch",
    "heads",
    "",
    "head_dim",
    "value_dim",
    "dtype",
    "layout",
    "causal",
    "left",
    "right",
    "normalize",
    "mask",
    "bias",
    "device type",
]
_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def make_options(ring: Ring, q, k, v, *, causal, window, mask, bias, normalize, layout, scale):
    """Validate one call on every rank and agree across ranks; returns ``Options``."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor) or t.dim() != 4 or not t.is_floating_point():
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a floating-point (b, h, n_r, d) tensor, got {got}")
    if not (q.shape[:3] == k.shape[:3] == v.shape[:3] and q.shape[-1] == k.shape[-1]):
        raise ValueError(
            "self-attention shards need q, k (b, h, n_r, d) and v (b, h, n_r, e) with the same "
            f"b, h, n_r, d; got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in _DTYPES:
        raise TypeError(f"q, k, v must share one float dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be a bool, got {causal!r}")
    check_layout(layout)
    scale = check_scale(scale)
    if not isinstance(normalize, str) or normalize not in _norm.NORMALIZATIONS:
        raise ValueError(
            f"normalize must be one of {sorted(_norm.NORMALIZATIONS)} in ring_attention (a "
            f"callable needs whole rows, which no rank holds), got {normalize!r}"
        )
    window_ = _masks.resolve_window(window)
    left, right = window_ if window_ is not None else (None, None)
    if causal:
        right = 0 if right is None else min(right, 0)
    b, h, n_r, d = q.shape
    flags = [
        -1 if left is None else left,
        -1 if right is None else right,
        sorted(_norm.NORMALIZATIONS).index(normalize),
        int(mask is not None),
        0 if bias is None else (1 if isinstance(bias, Tensor) else 2),
        ["cpu", "cuda"].index(q.device.type) if q.device.type in ("cpu", "cuda") else 9,
    ]
    sig = [b, h, n_r, d, v.shape[-1], _DTYPES.index(q.dtype), LAYOUTS.index(layout), int(causal)]
    rows = check_same_call(ring, sig + flags, _NAMES, q.device)
    n = sum(row[2] for row in rows)
    segments = layout_segments(n, ring.size, layout)
    expected = [sum(e - s for s, e in segs) for segs in segments]
    got = [row[2] for row in rows]
    if got != expected:
        raise ShardMismatchError(
            f"shard lengths {got} (rank order) are not the {layout!r} layout of n={n} tokens "
            f"over {ring.size} ranks, which is {expected}; cut the sequence with "
            f"sa.distributed.shard(x, group, layout={layout!r})"
        )
    mask = _check_side("mask", mask, b, h, n_r, n, bool_=True)
    if isinstance(bias, Tensor):
        bias = _check_side("bias", bias, b, h, n_r, n, bool_=False)
        if bias.requires_grad and torch.is_grad_enabled():
            raise ValueError(
                "bias must not require a gradient in ring_attention (it is a constant per call); "
                "pass bias.detach(), or a callable bias(q_pos, k_pos) of global positions"
            )
    elif bias is not None and not callable(bias):
        raise TypeError(
            "bias must be a Tensor, a callable (q_pos, k_pos) -> Tensor or None, "
            f"got {type(bias).__name__}"
        )
    return Options(
        ring=ring,
        n=n,
        layout=layout,
        segments=segments,
        left=left,
        right=right,
        scale=scale if scale is not None else d**-0.5,
        normalize=normalize,
        norm=_norm.resolve(normalize),
        mask=mask,
        bias=bias,
        device=q.device,
    )


def _check_side(name, t, b, h, n_r, n, *, bool_):
    """mask/bias: (b|1, h|1, n_r|1, n|1) — local query rows, global key columns."""
    if t is None:
        return None
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(t).__name__}")
    if bool_ and t.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor (True = may attend), got {t.dtype}")
    if not bool_ and not t.is_floating_point():
        raise TypeError(f"{name} must be a float tensor, got {t.dtype}")
    t4 = t.reshape((1,) * (4 - t.dim()) + tuple(t.shape)) if t.dim() <= 4 else t
    ok = t4.dim() == 4 and all(
        s in (1, full) for s, full in zip(t4.shape, (b, h, n_r, n), strict=True)
    )
    if not ok:
        raise ValueError(
            f"{name} must broadcast to (b, h, n_r, n) = ({b}, {h}, {n_r}, {n}): this rank's query "
            f"rows (in shard order) against all n keys (in sequence order), got {tuple(t.shape)}"
        )
    return t4
