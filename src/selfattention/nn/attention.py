"""``SelfAttention``: learnable projections around ``selfattention.functional.attention``.

Legend: b batch, i query positions, j key positions, h heads, d head_dim, e = dim.

    Q = X W_qᵀ + b_q,  K = C W_kᵀ + b_k,  V = C W_vᵀ + b_v      (C = X, or the context)
    per head:  O_h = normalize(Q_h K_hᵀ / √d + bias) V_h
    out = concat_h(O_h) W_oᵀ + b_o

Step by step: ``forward(x, cache=KVCache())`` attends from the new positions to every cached
one (causal generation, see ``nn/cache.py``); ``stream()`` runs a (left, right) window over
chunks as they arrive (``nn/stream.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from selfattention.functional import attention
from selfattention.functional import masks as _masks
from selfattention.functional import normalize as _norm
from selfattention.functional import packed as _packed
from selfattention.functional.call import check_backend, check_normalize, check_scale
from selfattention.nn._checks import (
    check_flag,
    check_positions,
    check_positive_int,
    check_probability,
    self_attention_inputs,
)
from selfattention.nn.cache import KVCache, attend_at, check_positions_at_offset

if TYPE_CHECKING:
    from selfattention.nn.stream import WindowStream

__all__ = ["SelfAttention", "merge_heads", "split_heads"]


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(b, n, h·d) -> (b, h, n, d)."""
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(b, h, n, d) -> (b, n, h·d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def _pad_layout(segs: list[tuple[int, int]], device) -> tuple[Tensor, Tensor]:
    """Index (s, L_max) of each sequence's tokens in the packed axis (0 past its end), and
    which entries are real."""
    starts = torch.tensor([a for a, _ in segs], device=device)
    lens = torch.tensor([e - a for a, e in segs], device=device)
    pos = torch.arange(int(lens.max()), device=device)
    valid = pos[None] < lens[:, None]
    return torch.where(valid, starts[:, None] + pos[None], 0), valid


def _unpack(x: Tensor, idx: Tensor) -> Tensor:
    """(b, h, T, d) packed -> (b·s, h, L_max, d), each sequence from position 0."""
    b, h, _, d = x.shape
    s, n = idx.shape
    # index_select, not x[..., idx]: its backward is an index_add, not a sorting index_put
    g = x.index_select(2, idx.reshape(-1)).view(b, h, s, n, d)
    return g.permute(0, 2, 1, 3, 4).reshape(b * s, h, n, d)


def _repack(y: Tensor, valid: Tensor, b: int) -> Tensor:
    """(b·s, h, L_max, d) -> (b, h, T, d): the real entries, sequence after sequence."""
    y = y.view(b, valid.shape[0], *y.shape[1:]).permute(0, 2, 1, 3, 4)  # (b, h, s, L_max, d)
    y = y.reshape(*y.shape[:2], -1, y.shape[-1])  # (b, h, s·L_max, d)
    return y.index_select(2, valid.reshape(-1).nonzero().squeeze(1))


def _packed_positions(positions, q, k, cu_q, cu_k):
    """``positions.attend`` on packed sequences, positions restarting at 0 in each.

    One call over the sequences laid out side by side (b·s, h, L_max, d) (position encodings
    act per position, so the entries past a sequence's end are computed and dropped; no score
    is); a position bias (ALiBi, a function of i - j) gives each sequence its top-left block,
    placed block-diagonally (-inf across sequences, blocks the packed kernels never visit).
    """
    q_segs = _packed.check_cu_seqlens(cu_q, q.shape[2])
    k_segs = _packed.check_cu_seqlens(cu_q if cu_k is None else cu_k, k.shape[2], "cu_seqlens_k")
    qi, qv = _pad_layout(q_segs, q.device)
    ki, kv = _pad_layout(k_segs, k.device)
    b = q.shape[0]
    pq, pk, bias = positions.attend(_unpack(q, qi), _unpack(k, ki))
    q, k = _repack(pq, qv, b), _repack(pk, kv, b)
    if bias is None:
        return q, k, None
    dense = bias.new_full((*bias.shape[:2], q.shape[2], k.shape[2]), float("-inf"))
    for (q0, q1), (k0, k1) in zip(q_segs, k_segs, strict=True):
        dense[:, :, q0:q1, k0:k1] = bias[:, :, : q1 - q0, : k1 - k0]
    return q, k, dense


class SelfAttention(nn.Module):
    """Multi-head (self- or cross-) attention, batch-first.

    Args:
        dim: model width e of the input x (b, i, e) and the output.
        heads: number of heads h.
        head_dim: d per head; default dim // heads (then heads must divide dim).
        bias: biases in the four projections.
        positions: a module with ``attend(q, k) -> (q, k, bias | None)`` applied after the
            projections (``RotaryPositions``, ``ALiBi``); see ``positions.AttentionPositions``.
            Additive encodings (``SinusoidalPositions``) belong on the input instead.
        normalize: "softmax" | "sum" | "relu" | callable(scores, allowed) -> weights.
        window: w or (left, right): query i sees keys i-left .. i+right.
        causal: query i sees keys j <= i.
        dropout: dropout on the attention weights, in training only.
        kv_dim: width of the context for cross-attention (default dim).
        backend: "auto" or a name from ``selfattention.functional.backends.REGISTRY``.
        scale: score scale, default 1/√d.
        kv_heads: key/value heads h_kv for grouped-query attention (default ``heads``); must
            divide ``heads``: query head i reads key/value head i // (heads / kv_heads), and
            ``key_proj``/``value_proj`` are e -> h_kv·d (no k/v copy per query head).

    Submodules ``query_proj``, ``key_proj``, ``value_proj`` (e -> h·d) and ``out_proj``
    (h·d -> e) are ``torch.nn.Linear``.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 1,
        head_dim: int | None = None,
        bias: bool = True,
        positions: nn.Module | None = None,
        normalize: str | _norm.Normalize = "softmax",
        window: int | tuple[int | None, int | None] | None = None,
        causal: bool = False,
        dropout: float = 0.0,
        kv_dim: int | None = None,
        backend: str = "auto",
        scale: float | None = None,
        *,
        kv_heads: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.heads = check_positive_int("heads", heads)
        if head_dim is None:
            if dim % heads:
                raise ValueError(
                    f"heads must divide dim when head_dim is not given: dim={dim}, heads={heads} "
                    f"(dim % heads = {dim % heads}); pick another heads or pass head_dim"
                )
            head_dim = dim // heads
        self.head_dim = check_positive_int("head_dim", head_dim)
        self.kv_heads = heads if kv_heads is None else check_positive_int("kv_heads", kv_heads)
        if heads % self.kv_heads:
            raise ValueError(
                f"kv_heads must divide heads (grouped-query attention), got heads={heads}, "
                f"kv_heads={kv_heads}"
            )
        self.kv_dim = dim if kv_dim is None else check_positive_int("kv_dim", kv_dim)
        check_positions(positions, heads, self.head_dim)
        check_normalize(normalize)
        check_flag("causal", causal)
        check_backend(backend)
        self.window = _masks.resolve_window(window)
        self.causal = causal
        self.normalize = normalize
        self.dropout = check_probability("dropout", dropout)
        self.backend = backend
        check_scale(scale)
        self.scale = scale
        self.positions = positions
        inner = self.heads * self.head_dim
        kw = dict(device=device, dtype=dtype)
        self.query_proj = nn.Linear(dim, inner, bias=bias, **kw)
        kv_inner = self.kv_heads * self.head_dim
        self.key_proj = nn.Linear(self.kv_dim, kv_inner, bias=bias, **kw)
        self.value_proj = nn.Linear(self.kv_dim, kv_inner, bias=bias, **kw)
        self.out_proj = nn.Linear(inner, dim, bias=bias, **kw)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        bias: Tensor | None = None,
        return_weights: bool = False,
        cache: KVCache | None = None,
        cu_seqlens: Sequence[int] | Tensor | None = None,
        cu_seqlens_k: Sequence[int] | Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend from x to itself, or to ``context`` (cross-attention).

        Args:
            x: (b, i, dim).
            context: (b, j, kv_dim), or None for self-attention (j = i).
            mask: bool, broadcastable to (b, h, i, j), True = may attend; a key-padding mask is
                ``sa.masks.padding(lengths)`` of shape (b, 1, 1, j).
            bias: float, broadcastable to (b, h, i, j), added to the scores.
            return_weights: also return the weights (b, h, i, j), per head.
            cache: a ``KVCache`` for causal self-attention step by step: x holds the next i
                positions (a prefill, then one token at a time); they sit at ``cache.length``
                onwards, see every cached key allowed by causal/window, and are appended.
                Then j = the keys held, and mask/bias broadcast to (b, h, i, j).
            cu_seqlens: packed sequences: x (b, T, dim) holds sequences end to end along T,
                (0, c_1, ..., T) their boundaries (``sa.functional.packed.cu_seqlens(lengths)``);
                each attends only inside itself (causal, window and positions restart at 0),
                no score across sequences. ``cu_seqlens_k``: the context's, default the same.

        Returns:
            out (b, i, dim), or (out, weights) with ``return_weights=True``.
        """
        context = self_attention_inputs(
            x, context, mask, return_weights, dim=self.dim, kv_dim=self.kv_dim
        )
        if cache is not None:
            if cu_seqlens is not None:
                raise ValueError("cache= and cu_seqlens= cannot be combined")
            return self._forward_cached(x, context, cache, mask, bias, return_weights)
        # 1. Project and split heads.
        q, k, v = self._project(x, context)  # (b, h, i, d), (b, h, j, d), (b, h, j, d)
        # 2. Positions after the projections: rotary turns q and k, ALiBi adds a bias.
        if self.positions is not None:
            if cu_seqlens is not None:
                q, k, pos_bias = _packed_positions(self.positions, q, k, cu_seqlens, cu_seqlens_k)
            else:
                q, k, pos_bias = self.positions.attend(q, k)
            if pos_bias is not None:
                bias = pos_bias if bias is None else bias + pos_bias
        # 3. O_h = normalize(Q_h K_hᵀ · scale + bias) V_h, per head.
        result = attention(
            q,
            k,
            v,
            mask=mask,
            bias=bias,
            causal=self.causal,
            window=self.window,
            scale=self.scale,
            normalize=self.normalize,
            dropout_p=self.dropout if self.training else 0.0,
            return_weights=return_weights,
            backend=self.backend,
            cu_seqlens=cu_seqlens,
            cu_seqlens_k=cu_seqlens_k,
        )
        out, weights = result if return_weights else (result, None)
        # 4. Concatenate the heads and project out.
        out = self.out_proj(merge_heads(out))  # (b, i, h·d) -> (b, i, dim)
        return (out, weights) if return_weights else out

    def _project(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Q from x, K and V from context, heads split: (b, h, i, d), (b, h_kv, j, d) twice."""
        q = split_heads(self.query_proj(x), self.heads)
        k = split_heads(self.key_proj(context), self.kv_heads)
        v = split_heads(self.value_proj(context), self.kv_heads)
        return q, k, v

    def attend_kwargs(self, return_weights: bool = False) -> dict:
        """The ``attention`` arguments this module adds besides masks (for caches and streams)."""
        return dict(
            scale=self.scale,
            normalize=self.normalize,
            dropout_p=self.dropout if self.training else 0.0,
            return_weights=return_weights,
            backend=self.backend,
        )

    def _forward_cached(self, x, context, cache, mask, bias, return_weights):
        """``forward`` with ``cache=``: the new positions at cache.length …, keys from the cache."""
        if not isinstance(cache, KVCache):
            raise TypeError(f"cache must be a KVCache or None, got {type(cache).__name__}")
        if context is not x:
            raise ValueError("cache= is for self-attention; got context= as well")
        left, right = self.window if self.window is not None else (None, None)
        if not (self.causal or right == 0):
            raise ValueError(
                f"cache= needs causal attention (causal=True or window=(left, 0)), this module "
                f"has causal={self.causal}, window={self.window}; a look-ahead window streams "
                "with .stream() instead"
            )
        check_positions_at_offset(self.positions, "cache=")
        p = cache.length
        # 1. Project; rotary turns q and the new keys at their absolute positions p, p+1, …
        q, k, v = self._project(x, x)  # (b, h, c, d) each
        if self.positions is not None:
            q, k = self.positions.encode(q, p), self.positions.encode(k, p)
        # 2. Append to the cache; attend to every held key that causal/window allow.
        keys, values = cache.append(k, v, owner=self)  # (b, h, m, d), m = held
        result = attend_at(
            q,
            keys,
            values,
            q_start=p,
            k_start=cache.start,
            window=self.window,
            causal=self.causal,
            positions=self.positions,
            mask=mask,
            bias=bias,
            **self.attend_kwargs(return_weights),
        )
        # 3. A window needs only the last `left` keys for the next position.
        if left is not None:
            cache.keep_last(left)
        out, weights = result if return_weights else (result, None)
        out = self.out_proj(merge_heads(out))  # (b, c, dim)
        return (out, weights) if return_weights else out

    def stream(self) -> WindowStream:
        """A ``WindowStream`` over this module: push chunks (b, c, dim) as they arrive, get the
        outputs of the offline window attention ``right`` frames later; ``flush()`` at the end."""
        from selfattention.nn.stream import WindowStream

        return WindowStream(self)

    def extra_repr(self) -> str:
        parts = [f"dim={self.dim}", f"heads={self.heads}", f"head_dim={self.head_dim}"]
        if self.kv_heads != self.heads:
            parts.append(f"kv_heads={self.kv_heads}")
        if self.kv_dim != self.dim:
            parts.append(f"kv_dim={self.kv_dim}")
        if self.causal:
            parts.append("causal=True")
        if self.window is not None:
            parts.append(f"window={self.window}")
        if self.normalize != "softmax":
            parts.append(f"normalize={self.normalize!r}")
        if self.dropout:
            parts.append(f"dropout={self.dropout}")
        return ", ".join(parts)
