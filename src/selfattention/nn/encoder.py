"""Transformer encoder built from ``SelfAttention``, a feed-forward block and layer norms.

Post-norm (Vaswani et al.; BERT), ``norm_first=False``:
    x = norm1(x + drop(attn(x)));      x = norm2(x + drop(ff(x)))
Pre-norm (GPT-2, ViT), ``norm_first=True``:
    x = x + drop(attn(norm1(x)));      x = x + drop(ff(norm2(x)))
with ff(x) = fc2(drop(act(fc1(x)))).

``TransformerEncoderLayer(dim, heads, norm_first=False, activation="gelu", layer_norm_eps=1e-12)``
is exactly a BERT layer (exact erf GELU).

With ``causal=True`` (or a window (left, 0)) a layer is a decoder-only block, and ``cache=``
(one ``KVCache`` per layer, ``TransformerEncoder.make_cache()``) generates step by step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from selfattention.nn._checks import (
    check_mask,
    check_positive_int,
    check_probability,
    check_sequence,
)
from selfattention.nn.attention import SelfAttention
from selfattention.nn.cache import KVCache

__all__ = [
    "ACTIVATIONS",
    "EncoderOutput",
    "FeedForward",
    "TransformerEncoder",
    "TransformerEncoderLayer",
]

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,  # exact: x·Φ(x), with the erf (BERT, torch's default)
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2's approximation
    "relu": F.relu,
    "silu": F.silu,
}


def _resolve_activation(activation) -> Callable[[Tensor], Tensor]:
    if callable(activation):
        return activation
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {sorted(ACTIVATIONS)} or a callable, got {activation!r}"
        )
    return ACTIVATIONS[activation]


class FeedForward(nn.Module):
    """Position-wise MLP: fc2(drop(act(fc1(x)))), dim -> ff_dim -> dim."""

    def __init__(
        self,
        dim: int,
        ff_dim: int,
        activation: str | Callable[[Tensor], Tensor] = "gelu",
        dropout: float = 0.0,
        bias: bool = True,
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_positive_int("dim", dim)
        check_positive_int("ff_dim", ff_dim)
        self.activation_name = activation if isinstance(activation, str) else repr(activation)
        self.activation = _resolve_activation(activation)
        self.fc1 = nn.Linear(dim, ff_dim, bias=bias, device=device, dtype=dtype)
        self.fc2 = nn.Linear(ff_dim, dim, bias=bias, device=device, dtype=dtype)
        self.dropout = nn.Dropout(check_probability("dropout", dropout))

    def forward(self, x: Tensor) -> Tensor:
        """x (..., dim) -> (..., dim)."""
        return self.fc2(self.dropout(self.activation(self.fc1(x))))

    def extra_repr(self) -> str:
        return f"activation={self.activation_name}"


class TransformerEncoderLayer(nn.Module):
    """One encoder block: self-attention and feed-forward, each with a residual and a LayerNorm.

    Args:
        dim: model width. heads: attention heads. ff_dim: hidden width (default 4·dim).
        dropout: on the attention weights, on both residual branches and inside ff.
        activation: "gelu" (exact) | "gelu_tanh" | "relu" | "silu" | callable.
        norm_first: pre-norm (True) or post-norm (False; BERT, the original Transformer).
        layer_norm_eps: LayerNorm epsilon (BERT uses 1e-12).
        **attention_kwargs: passed to ``SelfAttention`` (head_dim, bias, positions, normalize,
            window, causal, backend, scale).

    Submodules: ``attn`` (SelfAttention), ``norm1``, ``ff`` (``ff.fc1``, ``ff.fc2``), ``norm2``.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        ff_dim: int | None = None,
        dropout: float = 0.0,
        activation: str | Callable[[Tensor], Tensor] = "gelu",
        norm_first: bool = True,
        layer_norm_eps: float = 1e-5,
        *,
        device=None,
        dtype=None,
        **attention_kwargs,
    ) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        ff_dim = 4 * dim if ff_dim is None else check_positive_int("ff_dim", ff_dim)
        dropout = check_probability("dropout", dropout)
        if not isinstance(norm_first, bool):
            raise TypeError(f"norm_first must be a bool, got {norm_first!r}")
        if not (isinstance(layer_norm_eps, int | float) and layer_norm_eps > 0):
            raise ValueError(f"layer_norm_eps must be a positive number, got {layer_norm_eps!r}")
        self.norm_first = norm_first
        kw = dict(device=device, dtype=dtype)
        self.attn = SelfAttention(dim, heads, dropout=dropout, **attention_kwargs, **kw)
        self.norm1 = nn.LayerNorm(dim, eps=layer_norm_eps, **kw)
        self.ff = FeedForward(dim, ff_dim, activation, dropout, **kw)
        self.norm2 = nn.LayerNorm(dim, eps=layer_norm_eps, **kw)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        bias: Tensor | None = None,
        return_weights: bool = False,
        cache: KVCache | None = None,
        cu_seqlens=None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """x (b, n, dim) -> (b, n, dim), or (out, weights (b, h, n, n)) with return_weights.

        mask: bool broadcastable to (b, h, n, n), True = may attend (padding: (b, 1, 1, n)).
        bias: float broadcastable to (b, h, n, n), added to the scores.
        cache: this layer's ``KVCache`` for causal step-by-step use (see ``SelfAttention``);
            then the weights and masks span the held keys instead of n.
        cu_seqlens: packed sequences along n (see ``SelfAttention.forward``).
        """
        check_sequence("x", x, self.dim)
        kw = dict(mask=mask, bias=bias, return_weights=return_weights)
        if cache is not None:
            kw["cache"] = cache
        if cu_seqlens is not None:
            kw["cu_seqlens"] = cu_seqlens
        if self.norm_first:
            a = self.attn(self.norm1(x), **kw)
            a, w = a if return_weights else (a, None)
            x = x + self.dropout1(a)
            x = x + self.dropout2(self.ff(self.norm2(x)))
        else:
            a = self.attn(x, **kw)
            a, w = a if return_weights else (a, None)
            x = self.norm1(x + self.dropout1(a))
            x = self.norm2(x + self.dropout2(self.ff(x)))
        return (x, w) if return_weights else x


@dataclass
class EncoderOutput:
    """What ``TransformerEncoder`` returns.

    last_hidden_state: (b, n, dim), after the final norm if there is one.
    hidden_states: (input, layer 1 output, ..., layer L output) when asked for, L + 1 tensors;
        the last one is ``last_hidden_state`` (final norm included), as in Hugging Face.
    weights: one (b, h, n, n) tensor per layer when asked for, per head.
    """

    last_hidden_state: Tensor
    hidden_states: tuple[Tensor, ...] | None = None
    weights: tuple[Tensor, ...] | None = None


class TransformerEncoder(nn.Module):
    """A stack of ``num_layers`` ``TransformerEncoderLayer`` s (``.layers``).

    Args:
        num_layers, dim, heads: depth, width and heads.
        final_norm: a LayerNorm after the last layer (``.final_norm``); None = only for pre-norm,
            which needs it because its residual stream is never normalised.
        **layer_kwargs: passed to every ``TransformerEncoderLayer``.
    """

    def __init__(
        self,
        num_layers: int,
        dim: int,
        heads: int,
        final_norm: bool | None = None,
        **layer_kwargs,
    ) -> None:
        super().__init__()
        check_positive_int("num_layers", num_layers)
        self.dim = check_positive_int("dim", dim)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(dim, heads, **layer_kwargs) for _ in range(num_layers)
        )
        if final_norm is None:
            final_norm = self.layers[0].norm_first
        if not isinstance(final_norm, bool):
            raise TypeError(f"final_norm must be a bool or None, got {final_norm!r}")
        eps = layer_kwargs.get("layer_norm_eps", 1e-5)
        kw = {k: layer_kwargs[k] for k in ("device", "dtype") if k in layer_kwargs}
        self.final_norm = nn.LayerNorm(dim, eps=eps, **kw) if final_norm else None

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        bias: Tensor | None = None,
        return_weights: bool = False,
        return_hidden_states: bool = False,
        cache: Sequence[KVCache] | None = None,
        cu_seqlens=None,
    ) -> EncoderOutput:
        """x (b, n, dim) -> ``EncoderOutput``; mask/bias as in ``TransformerEncoderLayer``.

        cache: one ``KVCache`` per layer (``make_cache()``), for causal layers step by step:
            x holds the next n positions after those already cached.
        cu_seqlens: packed sequences along n, (0, c_1, ..., n): each attends inside itself.
        """
        check_sequence("x", x, self.dim)
        check_mask("mask", mask)
        caches = self._check_cache(cache)
        hidden: list[Tensor] = [x]
        weights: list[Tensor] = []
        for layer, layer_cache in zip(self.layers, caches, strict=True):
            x = layer(
                x,
                mask=mask,
                bias=bias,
                return_weights=return_weights,
                cache=layer_cache,
                **({} if cu_seqlens is None else {"cu_seqlens": cu_seqlens}),
            )
            if return_weights:
                x, w = x
                weights.append(w)
            hidden.append(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
            hidden[-1] = x
        return EncoderOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden) if return_hidden_states else None,
            weights=tuple(weights) if return_weights else None,
        )

    def make_cache(self, capacity: int = 256, *, fixed: bool = False) -> list[KVCache]:
        """One empty ``KVCache`` per layer, for ``forward(..., cache=...)``."""
        return [KVCache(capacity, fixed=fixed) for _ in self.layers]

    def _check_cache(self, cache) -> list[KVCache | None]:
        if cache is None:
            return [None] * len(self.layers)
        if isinstance(cache, KVCache) or len(cache) != len(self.layers):
            got = "one KVCache" if isinstance(cache, KVCache) else f"{len(cache)} caches"
            raise ValueError(
                f"cache must hold one KVCache per layer ({len(self.layers)}), got {got}; "
                "use encoder.make_cache()"
            )
        return list(cache)
