"""Boundary checks shared by the modules: each error names the argument, what it got and what
was expected."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from selfattention.functional.call import check_mask as _check_mask


class ShapeError(ValueError, AssertionError):
    """A shape error of ``MultiheadAttention``'s inputs: a ValueError as everywhere in this
    package, and an AssertionError as torch.nn.MultiheadAttention raises, so code written against
    torch still catches it. Messages start with torch's wording."""


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_probability(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0.0 <= value < 1.0):
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def check_float_tensor(name: str, x) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def check_sequence(name: str, x, features: int, feature_name: str = "dim") -> Tensor:
    """x must be a float tensor of shape (batch, seq, features)."""
    check_float_tensor(name, x)
    if x.ndim != 3:
        raise ValueError(
            f"{name} must have shape (batch, seq, {feature_name}={features}), got "
            f"{tuple(x.shape)} ({x.ndim}-D); add a batch axis with {name}.unsqueeze(0)"
        )
    if x.shape[-1] != features:
        raise ValueError(
            f"{name} must have {feature_name}={features} features in its last dimension, got "
            f"shape {tuple(x.shape)}"
        )
    if x.shape[1] == 0:
        raise ValueError(f"{name} must have at least one position, got shape {tuple(x.shape)}")
    return x


def check_patches(x, grid: tuple[int, int], dim: int) -> Tensor:
    """x must be a float tensor (batch, H·W, dim) of patches, row-major over ``grid``."""
    check_float_tensor("x", x)
    n = grid[0] * grid[1]
    if x.ndim != 3 or x.shape[1] != n or x.shape[2] != dim:
        raise ValueError(
            f"x must be (batch, H·W={n}, dim={dim}) for grid {grid}, got {tuple(x.shape)}"
        )
    return x


def check_mask(name: str, mask) -> Tensor | None:
    """None, or a bool mask (True = may attend); the shape is checked where it is known."""
    return None if mask is None else _check_mask(mask, name=name)


def check_flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_positions(positions, heads: int, head_dim: int) -> None:
    """None, or a module with ``attend(q, k) -> (q, k, bias)`` built for these heads/head_dim."""
    if positions is None:
        return
    if not callable(getattr(positions, "attend", None)):
        raise TypeError(
            "positions must have an attend(q, k) -> (q, k, bias) method (RotaryPositions, "
            f"ALiBi), got {type(positions).__name__}; additive encodings such as "
            "SinusoidalPositions are applied to the input x by the model, not by attention"
        )
    if getattr(positions, "heads", heads) != heads:
        raise ValueError(f"positions was built for heads={positions.heads}, got heads={heads}")
    if getattr(positions, "head_dim", head_dim) != head_dim:
        raise ValueError(
            f"positions was built for head_dim={positions.head_dim}, but this attention has "
            f"head_dim={head_dim}"
        )


def self_attention_inputs(x, context, mask, return_weights, *, dim: int, kv_dim: int) -> Tensor:
    """Check ``SelfAttention.forward``'s arguments; returns the keys' source (context, or x).

    x (b, i, dim); context (b, j, kv_dim) or None (then kv_dim must equal dim); mask bool or None.
    """
    check_sequence("x", x, dim)
    check_mask("mask", mask)
    check_flag("return_weights", return_weights)
    if context is None:
        if kv_dim != dim:
            raise ValueError(
                f"this attention was built with kv_dim={kv_dim} != dim={dim}, so "
                "it needs context= (batch, seq, kv_dim)"
            )
        return x
    if isinstance(context, Tensor) and context.dtype == torch.bool:
        raise TypeError(
            "context must be a float tensor (batch, seq, kv_dim), got a bool tensor; "
            "pass a mask by keyword: attn(x, mask=mask)"
        )
    check_sequence("context", context, kv_dim, "kv_dim")
    if context.shape[0] != x.shape[0]:
        raise ValueError(
            f"context must have the same batch size as x: x has {x.shape[0]}, "
            f"context has {context.shape[0]}"
        )
    if context.dtype != x.dtype:
        raise TypeError(f"context dtype {context.dtype} differs from x dtype {x.dtype}")
    return context


class MultiheadInputs(NamedTuple):
    """``MultiheadAttention.forward``'s inputs, batch-first: (N, L, E), (N, S, kdim), (N, S, vdim),
    key_padding_mask (N, S) or None; ``batched`` says whether the caller passed a batch axis."""

    query: Tensor
    key: Tensor
    value: Tensor
    key_padding_mask: Tensor | None
    batched: bool


def multihead_inputs(
    query,
    key,
    value,
    key_padding_mask,
    is_causal,
    *,
    batch_first: bool,
    embed_dim: int,
    kdim: int,
    vdim: int,
) -> MultiheadInputs:
    """Check torch's ``MultiheadAttention.forward`` arguments and bring them to batch-first.

    query (L, N, E) / (N, L, E) with batch_first / unbatched (L, E); key (S, N, kdim) and value
    (S, N, vdim) likewise; key_padding_mask (N, S), or (S,) unbatched. ``query is key`` (and
    ``key is value``) survive, so self-attention can project with one matmul.
    """
    for name, t in (("query", query), ("key", key), ("value", value)):
        check_float_tensor(name, t)
    if query.ndim not in (2, 3):
        raise ShapeError(
            f"query should be unbatched 2D or batched 3D tensor but received {query.ndim}-D "
            f"query tensor (shape {tuple(query.shape)}): query must be 3-D (batched) or 2-D "
            "(unbatched)"
        )
    if key.ndim != query.ndim or value.ndim != query.ndim:
        kind = "batched (3-D)" if query.ndim == 3 else "unbatched (2-D)"
        raise ShapeError(
            f"For {kind} `query`, expected `key` and `value` to be {query.ndim}-D but found "
            f"{key.ndim}-D and {value.ndim}-D tensors respectively (key {tuple(key.shape)}, "
            f"value {tuple(value.shape)}: they must have query's rank)"
        )
    if key_padding_mask is not None and isinstance(key_padding_mask, Tensor):
        want = query.ndim - 1
        if key_padding_mask.ndim != want:
            raise ShapeError(
                f"For {'batched (3-D)' if want == 2 else 'unbatched (2-D)'} `query`, expected "
                f"`key_padding_mask` to be `None` or {want}-D but found "
                f"{key_padding_mask.ndim}-D tensor instead (shape {tuple(key_padding_mask.shape)})"
            )
    batched = query.ndim == 3
    same = (query is key, key is value)
    if not batched:  # (L, E) -> (1, L, E)
        query, key, value = query[None], key[None], value[None]
        if key_padding_mask is not None:
            if not isinstance(key_padding_mask, Tensor):
                check_torch_mask("key_padding_mask", key_padding_mask)
            key_padding_mask = key_padding_mask[None]
    elif not batch_first:  # (L, N, E) -> (N, L, E)
        query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
    if same[0]:
        key = query
    if same[1]:
        value = key
    for name, t, what, width in (
        ("query", query, "embed_dim", embed_dim),
        ("key", key, "kdim", kdim),
        ("value", value, "vdim", vdim),
    ):
        if t.shape[-1] != width:
            raise ShapeError(
                f"{name} must have {what}={width} features, got shape {tuple(t.shape)}"
            )
    n, q_len = query.shape[:2]
    if key.shape[:2] != value.shape[:2] or key.shape[0] != n:
        raise ShapeError(
            "query, key and value must share the batch size and key and value the sequence "
            f"length; got (batch, seq) query {(n, q_len)}, key {tuple(key.shape[:2])}, "
            f"value {tuple(value.shape[:2])}"
        )
    check_flag("is_causal", is_causal)
    return MultiheadInputs(query, key, value, key_padding_mask, batched)


def check_torch_mask(name: str, mask) -> None:
    """A mask in torch's convention: bool (True = IGNORE) or float (added to the scores)."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.dtype.is_floating_point:
        raise TypeError(
            f"{name} must be bool (True = IGNORE, torch's polarity) or floating point (added to "
            f"the scores), got dtype {mask.dtype}"
        )
