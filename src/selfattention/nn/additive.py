"""Additive ("Bahdanau", "concat") attention: a small MLP scores each query-key pair.

    s_ij = vᵀ tanh(W_q q_i + W_k k_j (+ b)),   w_i = softmax_j(s_ij),   out_i = Σ_j w_ij v_j

(Bahdanau, Cho & Bengio, 2015). Unlike dot-product attention, query and key may have different
widths, and the score costs O(i·j·hidden) time and memory.
"""

from __future__ import annotations

from torch import Tensor, nn

from selfattention.functional import normalize as _norm
from selfattention.nn._checks import check_float_tensor, check_mask, check_positive_int

__all__ = ["AdditiveAttention"]


class AdditiveAttention(nn.Module):
    """Bahdanau attention.

    Args:
        query_dim: width of the queries (e.g. a decoder state).
        key_dim: width of the keys (e.g. encoder states).
        hidden_dim: width of the scoring MLP.
        bias: a bias b inside the tanh (in ``key_proj``); the paper's formula has none.
        normalize: "softmax" | "sum" | "relu" | callable(scores, allowed) -> weights.

    Parameters: ``query_proj`` (W_q: hidden × query_dim), ``key_proj`` (W_k: hidden × key_dim),
    ``score_proj`` (vᵀ: 1 × hidden), all ``torch.nn.Linear``.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        hidden_dim: int,
        bias: bool = False,
        normalize: str | _norm.Normalize = "softmax",
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.query_dim = check_positive_int("query_dim", query_dim)
        self.key_dim = check_positive_int("key_dim", key_dim)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.normalize = normalize
        self._normalize = _norm.resolve(normalize)  # raises on unknown names
        kw = dict(device=device, dtype=dtype)
        self.query_proj = nn.Linear(query_dim, hidden_dim, bias=False, **kw)
        self.key_proj = nn.Linear(key_dim, hidden_dim, bias=bias, **kw)
        self.score_proj = nn.Linear(hidden_dim, 1, bias=False, **kw)

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        """s (b, i, j) = vᵀ tanh(W_q q_i + W_k k_j); query (b, i, d_q), keys (b, j, d_k)."""
        hq = self.query_proj(query)  # (b, i, hidden)
        hk = self.key_proj(keys)  # (b, j, hidden)
        return self.score_proj((hq[:, :, None, :] + hk[:, None, :, :]).tanh()).squeeze(-1)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        return_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend from each query to the keys and mix the values.

        Args:
            query: (b, i, query_dim), or (b, query_dim) for one query per sequence (a decoder step).
            keys: (b, j, key_dim).
            values: (b, j, e); defaults to the keys.
            mask: bool, broadcastable to (b, i, j), True = may attend; padding: (b, 1, j)
                (or (b, j) with a single query).
            return_weights: also return the weights (b, i, j) (or (b, j) for a single query).

        Returns:
            out (b, i, e) (or (b, e)), and the weights with ``return_weights=True``.
        """
        check_float_tensor("query", query)
        check_float_tensor("keys", keys)
        single = query.ndim == 2
        if single:
            query = query[:, None, :]
        if query.ndim != 3 or query.shape[-1] != self.query_dim:
            raise ValueError(
                f"query must have shape (batch, seq, {self.query_dim}) or (batch, "
                f"{self.query_dim}), got {tuple(query.shape)}"
            )
        if keys.ndim != 3 or keys.shape[-1] != self.key_dim or keys.shape[0] != query.shape[0]:
            raise ValueError(
                f"keys must have shape ({query.shape[0]}, seq, {self.key_dim}) (batch from query), "
                f"got {tuple(keys.shape)}"
            )
        if values is None:
            values = keys
        check_float_tensor("values", values)
        if values.ndim != 3 or values.shape[:2] != keys.shape[:2]:
            raise ValueError(
                f"values must have shape {tuple(keys.shape[:2])} + (e,) to match keys, got "
                f"{tuple(values.shape)}"
            )
        check_mask("mask", mask)
        if single and mask is not None and mask.ndim == 2:
            mask = mask[:, None, :]  # (b, j) -> (b, 1, j)
        allowed = None
        target = (query.shape[0], query.shape[1], keys.shape[1])
        if mask is not None:
            try:
                allowed = mask.expand(target) if mask.shape != target else mask
            except RuntimeError:
                raise ValueError(
                    f"mask of shape {tuple(mask.shape)} cannot broadcast to (batch, i, j) "
                    f"= {target}"
                ) from None
        s = self.scores(query, keys)  # (b, i, j)
        w = self._normalize(s, allowed)
        out = w.to(values.dtype) @ values  # (b, i, e)
        if single:
            out, w = out[:, 0], w[:, 0]
        return (out, w) if return_weights else out

    def extra_repr(self) -> str:
        return f"query_dim={self.query_dim}, key_dim={self.key_dim}, hidden_dim={self.hidden_dim}"
