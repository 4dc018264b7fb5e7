"""A drop-in for ``torch.nn.MultiheadAttention`` that runs on ``selfattention.functional``.

Same constructor, same parameter names (``load_state_dict`` works in both directions), same
``forward`` signature, defaults, shapes and outputs (within float tolerance).

    !!! MASK POLARITY: here, as in torch, a bool True in ``attn_mask`` or ``key_padding_mask``
    !!! means IGNORE this key. Everywhere else in selfattention True means MAY ATTEND.
    !!! The conversion happens once, at this module's boundary.

Legend (torch's): N batch, L target (query) length, S source (key) length, E embed_dim,
H num_heads, d = E / H. Inside: (N, H, L, d), as every module in this package.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfattention.functional import attention
from selfattention.functional import masks as _masks
from selfattention.functional import packed as _packed
from selfattention.nn._checks import (
    ShapeError,
    check_positive_int,
    check_probability,
    check_torch_mask,
    multihead_inputs,
)
from selfattention.nn.attention import merge_heads, split_heads

__all__ = ["MultiheadAttention"]


class MultiheadAttention(nn.Module):
    """Drop-in replacement for ``torch.nn.MultiheadAttention``.

    **Mask polarity is torch's, not ours: a bool ``True`` means "ignore this position".**
    Float masks are added to the scores (``-inf`` = ignore). Where torch returns NaN (a query
    whose keys are all ignored), this module returns zeros.

    Args:
        embed_dim: E, width of the query and the output.
        num_heads: H; must divide E.
        dropout: dropout on the attention weights, in training only.
        bias: biases in the input and output projections (``in_proj_bias``, ``out_proj.bias``).
        add_bias_kv: learn one extra key and value (``bias_k``, ``bias_v`` (1, 1, E)) appended
            to every sequence, visible to every query.
        add_zero_attn: append a zero key and value (after the head split).
        kdim, vdim: widths of key and value (default E). If either differs from E the weights are
            ``q_proj_weight`` (E, E), ``k_proj_weight`` (E, kdim), ``v_proj_weight`` (E, vdim);
            otherwise one ``in_proj_weight`` (3E, E) holds [W_q; W_k; W_v].
        batch_first: inputs and outputs (N, L, E) instead of torch's default (L, N, E).

    Shapes: query (L, N, E) / (N, L, E) / unbatched (L, E); key (S, N, kdim); value (S, N, vdim).
    Nested tensors (batch_first, sequences of their own lengths; no masks) are packed end to end
    and attend sequence by sequence (``cu_seqlens``): outputs nested, weights None, as torch's
    fast path. Shape errors are ``ShapeError``, both a ValueError and torch's AssertionError.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_positive_int("embed_dim", embed_dim)
        check_positive_int("num_heads", num_heads)
        if embed_dim % num_heads:
            raise ValueError(
                f"num_heads must divide embed_dim: embed_dim={embed_dim}, num_heads={num_heads}"
            )
        self.embed_dim = embed_dim
        self.kdim = embed_dim if kdim is None else check_positive_int("kdim", kdim)
        self.vdim = embed_dim if vdim is None else check_positive_int("vdim", vdim)
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = check_probability("dropout", dropout)
        self.batch_first = bool(batch_first)
        self.head_dim = embed_dim // num_heads
        kw = dict(device=device, dtype=dtype)
        if self._qkv_same_embed_dim:
            self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim, **kw))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = nn.Parameter(torch.empty(embed_dim, embed_dim, **kw))
            self.k_proj_weight = nn.Parameter(torch.empty(embed_dim, self.kdim, **kw))
            self.v_proj_weight = nn.Parameter(torch.empty(embed_dim, self.vdim, **kw))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim, **kw))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **kw)
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, embed_dim, **kw))
            self.bias_v = nn.Parameter(torch.empty(1, 1, embed_dim, **kw))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = bool(add_zero_attn)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """torch's init: Xavier-uniform projections, zero biases, Xavier-normal bias_k/bias_v."""
        if self._qkv_same_embed_dim:
            nn.init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                nn.init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)
        if self.bias_k is not None:
            nn.init.xavier_normal_(self.bias_k)
            nn.init.xavier_normal_(self.bias_v)

    # -- projections -------------------------------------------------------------------------

    def _project(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(N, L, E), (N, S, kdim), (N, S, vdim) -> q (N, L, E), k (N, S, E), v (N, S, E)."""
        bias = self.in_proj_bias
        if bias is not None and bias.dtype != query.dtype:
            # torch adds a bias of another precision (e.g. half with double inputs) as it is:
            # its values, in the inputs' dtype
            bias = bias.to(query.dtype)
        b = bias.chunk(3) if bias is not None else (None,) * 3
        if self._qkv_same_embed_dim:
            if query is key and key is value:  # self-attention: one matmul
                return F.linear(query, self.in_proj_weight, bias).chunk(3, dim=-1)
            w = self.in_proj_weight.chunk(3)
        else:
            w = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
        return F.linear(query, w[0], b[0]), F.linear(key, w[1], b[1]), F.linear(value, w[2], b[2])

    # -- masks (torch polarity in, ours out) -------------------------------------------------

    def _convert_masks(
        self,
        attn_mask: Tensor | None,
        key_padding_mask: Tensor | None,
        n: int,
        q_len: int,
        k_len: int,
        dtype: torch.dtype,
    ) -> tuple[Tensor | None, Tensor | None]:
        """torch's masks -> (allowed (True = may attend), bias), each broadcastable to (N,H,L,S)."""
        allowed: Tensor | None = None
        bias: Tensor | None = None
        if attn_mask is not None:
            check_torch_mask("attn_mask", attn_mask)
            three = (n * self.num_heads, q_len, k_len)
            if attn_mask.ndim not in (2, 3):
                raise ShapeError(
                    f"expected `attn_mask` to be `None`, 2-D or 3-D but found {attn_mask.ndim}-D "
                    f"tensor instead: attn_mask must have shape (L, S) = {(q_len, k_len)} or "
                    f"(N·num_heads, L, S) = {three}, got {tuple(attn_mask.shape)}"
                )
            if attn_mask.shape == (q_len, k_len):
                m = attn_mask.view(1, 1, q_len, k_len)
            elif attn_mask.shape == three:
                m = attn_mask.view(n, self.num_heads, q_len, k_len)
            else:
                want = (q_len, k_len) if attn_mask.ndim == 2 else three
                raise ShapeError(
                    f"Expected `attn_mask` shape to be {want} but got {tuple(attn_mask.shape)}: "
                    f"attn_mask must have shape (L, S) = {(q_len, k_len)} or "
                    f"(N·num_heads, L, S) = {three}"
                )
            if m.dtype == torch.bool:
                allowed = ~m  # torch: True = ignore; ours: True = may attend
            else:
                bias = m.to(dtype)
        if key_padding_mask is not None:
            check_torch_mask("key_padding_mask", key_padding_mask)
            if key_padding_mask.shape != (n, k_len):
                raise ShapeError(
                    f"key_padding_mask must have shape (N, S) = {(n, k_len)} (or (S,) unbatched), "
                    f"got {tuple(key_padding_mask.shape)}"
                )
            m = key_padding_mask.view(n, 1, 1, k_len)
            if m.dtype == torch.bool:
                allowed = _masks.combine(allowed, ~m)
            else:
                bias = m.to(dtype) if bias is None else bias + m.to(dtype)
        return allowed, bias

    # -- forward -----------------------------------------------------------------------------

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attention from query to (key, value), exactly as ``torch.nn.MultiheadAttention``.

        Args:
            query: (L, N, E), or (N, L, E) with batch_first, or (L, E) unbatched.
            key: (S, N, kdim) likewise. value: (S, N, vdim) likewise.
            key_padding_mask: (N, S) or (S,) unbatched. **bool True = IGNORE that key**
                (torch's polarity); a float mask is added to the scores.
            need_weights: also return the attention weights.
            attn_mask: (L, S) or (N·num_heads, L, S). **bool True = IGNORE** (torch's polarity);
                a float mask is added to the scores.
            average_attn_weights: average the returned weights over heads.
            is_causal: query i sees keys j <= i. torch treats it as a hint that ``attn_mask`` is
                causal and refuses it without one; here it also works alone.

        Returns:
            (attn_output (L, N, E) / (N, L, E) / (L, E), weights or None), weights (N, L, S) when
            averaged, (N, H, L, S) per head, without N when unbatched. With add_bias_kv /
            add_zero_attn, S counts the extra keys, as in torch.
        """
        if any(isinstance(t, Tensor) and t.is_nested for t in (query, key, value)):
            out = self._forward_nested(query, key, value, key_padding_mask, attn_mask, is_causal)
            return out, None
        query, key, value, key_padding_mask, batched = multihead_inputs(
            query,
            key,
            value,
            key_padding_mask,
            is_causal,
            batch_first=self.batch_first,
            embed_dim=self.embed_dim,
            kdim=self.kdim,
            vdim=self.vdim,
        )  # (N, L, E), (N, S, kdim), (N, S, vdim)
        n, q_len, k_len = query.shape[0], query.shape[1], key.shape[1]
        # 1. torch's masks (True = ignore, float = add) -> ours (True = may attend) and a bias.
        allowed, bias = self._convert_masks(
            attn_mask, key_padding_mask, n, q_len, k_len, query.dtype
        )
        # 2. Project; append bias_k/bias_v and a zero key if asked; split heads.
        q, k, v = self._project(query, key, value)  # (N, L, E), (N, S, E), (N, S, E)
        extra = 0
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.expand(n, 1, -1)], dim=1)  # (N, S+1, E)
            v = torch.cat([v, self.bias_v.expand(n, 1, -1)], dim=1)
            extra += 1
        q, k, v = (split_heads(t, self.num_heads) for t in (q, k, v))  # (N, H, ·, d)
        if self.add_zero_attn:
            zeros = k.new_zeros(n, self.num_heads, 1, self.head_dim)
            k, v = torch.cat([k, zeros], dim=2), torch.cat([v, zeros], dim=2)
            extra += 1
        causal = is_causal
        if extra:
            # The appended keys stay visible to every query, also under is_causal.
            if is_causal:
                allowed = _masks.combine(allowed, _masks.causal(q_len, k_len, device=q.device))
                causal = False
            if allowed is not None:
                allowed = F.pad(allowed, (0, extra), value=True)
            if bias is not None:
                bias = F.pad(bias, (0, extra), value=0.0)

        # 3. Attention per head.
        result = attention(
            q,
            k,
            v,
            mask=allowed,
            bias=bias,
            causal=causal,
            dropout_p=self.dropout if self.training else 0.0,
            return_weights=bool(need_weights),
        )
        out, weights = result if need_weights else (result, None)
        # 4. Merge heads, project out, and give torch's layout back.
        out = self.out_proj(merge_heads(out))  # (N, L, E)
        if weights is not None and average_attn_weights:
            weights = weights.mean(dim=1)  # (N, L, S)
        if not batched:
            out = out[0]
            weights = None if weights is None else weights[0]
        elif not self.batch_first:
            out = out.transpose(0, 1)  # (L, N, E)
        return out, weights

    def _forward_nested(self, query, key, value, key_padding_mask, attn_mask, is_causal) -> Tensor:
        """Nested tensors (batch_first, sequences of their own lengths) through the packed path.

        The sequences are packed end to end (T, E) and attend with ``cu_seqlens``: no padding, no
        score across sequences. Weights are not returned (None), as torch's fast path does.
        """
        if not all(isinstance(t, Tensor) and t.is_nested for t in (query, key, value)):
            raise ShapeError("query, key and value must all be nested tensors, or none of them")
        if query.dim() != 3:
            raise ShapeError(
                f"query should be unbatched 2D or batched 3D tensor but received {query.dim()}-D "
                "query tensor (a nested query must hold 2-D sequences (L_i, E))"
            )
        if not self.batch_first:
            raise ShapeError("nested tensors need batch_first=True, as in torch")
        if key_padding_mask is not None or attn_mask is not None:
            raise ValueError(
                "key_padding_mask and attn_mask must be None with nested tensors: each sequence "
                "has its own length already"
            )
        extra = (self.bias_k is not None) + self.add_zero_attn
        if is_causal and extra:
            raise ValueError(
                "is_causal with add_bias_kv/add_zero_attn is not served for nested input"
            )
        same = (query is key, key is value)
        qs, ks, vs = query.unbind(), key.unbind(), value.unbind()
        if len(ks) != len(qs) or len(vs) != len(qs):
            raise ShapeError(
                f"query, key and value must hold as many sequences, got {len(qs)}, {len(ks)}, "
                f"{len(vs)}"
            )
        if any(a.shape[0] != b.shape[0] for a, b in zip(ks, vs, strict=True)):
            raise ShapeError("key and value must have the same length in every sequence")
        q_lens = [t.shape[0] for t in qs]
        k_lens = [t.shape[0] for t in ks]
        q_in = torch.cat(qs)[None]  # (1, T, E)
        k_in = q_in if same[0] else torch.cat(ks)[None]
        v_in = k_in if same[1] else torch.cat(vs)[None]
        q, k, v = self._project(q_in, k_in, v_in)  # (1, T, E), (1, T_k, E), (1, T_k, E)
        if extra:  # bias_k/bias_v and a zero key after each sequence's own keys
            ks_, vs_ = list(k[0].split(k_lens)), list(v[0].split(k_lens))
            tails_k, tails_v = [], []
            if self.bias_k is not None:
                tails_k.append(self.bias_k[0])
                tails_v.append(self.bias_v[0])
            if self.add_zero_attn:
                tails_k.append(k.new_zeros(1, self.embed_dim))
                tails_v.append(v.new_zeros(1, self.embed_dim))
            k = torch.cat([x for t in ks_ for x in (t, *tails_k)])[None]
            v = torch.cat([x for t in vs_ for x in (t, *tails_v)])[None]
            k_lens = [n + extra for n in k_lens]
        q, k, v = (split_heads(t, self.num_heads) for t in (q, k, v))  # (1, H, ·, d)
        out = attention(
            q,
            k,
            v,
            causal=bool(is_causal),
            dropout_p=self.dropout if self.training else 0.0,
            cu_seqlens=_packed.cu_seqlens(q_lens),
            cu_seqlens_k=_packed.cu_seqlens(k_lens),
        )
        out = self.out_proj(merge_heads(out))[0]  # (T, E)
        return torch.nested.as_nested_tensor(list(out.split(q_lens)), layout=query.layout)

    def extra_repr(self) -> str:
        parts = [f"embed_dim={self.embed_dim}", f"num_heads={self.num_heads}"]
        if not self._qkv_same_embed_dim:
            parts += [f"kdim={self.kdim}", f"vdim={self.vdim}"]
        if self.dropout:
            parts.append(f"dropout={self.dropout}")
        if self.batch_first:
            parts.append("batch_first=True")
        return ", ".join(parts)
