"""``SequenceParallel``: run a model's ``sa.nn.SelfAttention`` layers over a sharded sequence.

    model = sa.nn.TransformerEncoder(...)               # unchanged model code
    sa.distributed.sequence_parallel(model, group, layout="zigzag")
    y_r = model(sa.distributed.shard(x, group, "zigzag", dim=1))   # x (b, n, dim) -> (b, n_r, dim)

Every ``SelfAttention`` inside is replaced by a ``SequenceParallel`` that shares its projection
modules (same parameters, same ``state_dict`` keys) and calls ``ring_attention`` instead of
``sa.attention``. Everything else of a transformer acts on one token at a time (norms,
feed-forward), so it runs on the shard as it is. Positions inside attention that follow the
``PositionsAtOffset`` protocol (rotary, ALiBi) are applied at the tokens' global positions;
positions added to the input (sinusoidal, learned) must be added before sharding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from selfattention.distributed.attention import ring_attention
from selfattention.distributed.shard import check_layout, global_segments
from selfattention.nn.attention import SelfAttention, merge_heads, split_heads
from selfattention.nn.positions import PositionsAtOffset

__all__ = ["SequenceParallel", "sequence_parallel"]


class SequenceParallel(nn.Module):
    """A ``SelfAttention`` whose input is this rank's shard (b, n_r, dim) of a longer sequence.

    Shares ``query_proj``, ``key_proj``, ``value_proj``, ``out_proj`` and ``positions`` with the
    wrapped module; ``forward(x, *, mask=None, bias=None)`` takes ``mask``/``bias`` as
    ``ring_attention`` does (this rank's query rows against all n keys). Self-attention only:
    no ``context``, no weights, no cache, no attention dropout in training.
    """

    def __init__(self, attention: SelfAttention, group=None, layout: str = "contiguous") -> None:
        super().__init__()
        if not isinstance(attention, SelfAttention):
            raise TypeError(
                f"attention must be a sa.nn.SelfAttention, got {type(attention).__name__}"
            )
        if not isinstance(attention.normalize, str):
            raise ValueError(
                "sequence parallel attention needs normalize 'softmax', 'sum' or 'relu'"
            )
        if attention.positions is not None and not isinstance(
            attention.positions, PositionsAtOffset
        ):
            raise ValueError(
                f"positions {type(attention.positions).__name__} cannot be placed at global "
                "positions (it lacks encode/bias at an offset); use RotaryPositions or ALiBi"
            )
        self.query_proj, self.key_proj = attention.query_proj, attention.key_proj
        self.value_proj, self.out_proj = attention.value_proj, attention.out_proj
        self.positions = attention.positions
        self.heads, self.causal, self.window = attention.heads, attention.causal, attention.window
        self.normalize, self.scale, self.dropout = (
            attention.normalize,
            attention.scale,
            attention.dropout,
        )
        self.group, self.layout = group, check_layout(layout)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        bias: Tensor | None = None,
        return_weights: bool = False,
    ) -> Tensor:
        """x (b, n_r, dim), this rank's tokens in ``layout`` order -> (b, n_r, dim)."""
        if context is not None or return_weights:
            raise ValueError(
                "SequenceParallel serves self-attention without weights: context and "
                "return_weights=True are not supported"
            )
        if self.training and self.dropout > 0:
            raise ValueError(
                f"attention dropout ({self.dropout}) is not supported sequence-parallel; "
                "build the model with dropout=0.0 in attention"
            )
        # 1. Project and split heads: (b, h, n_r, d).
        q = split_heads(self.query_proj(x), self.heads)
        k = split_heads(self.key_proj(x), self.heads)
        v = split_heads(self.value_proj(x), self.heads)
        # 2. Positions at the tokens' global positions.
        if self.positions is not None:
            q, k, bias = self._place(q, k, bias)
        # 3. Attention over the whole sequence, this rank's rows.
        out = ring_attention(
            q,
            k,
            v,
            group=self.group,
            causal=self.causal,
            window=self.window,
            mask=mask,
            bias=bias,
            normalize=self.normalize,
            layout=self.layout,
            scale=self.scale,
        )
        # 4. Concatenate the heads and project out.
        return self.out_proj(merge_heads(out))

    def _place(self, q: Tensor, k: Tensor, bias):
        _, segments = global_segments(q.shape[2], self.group, self.layout, device=q.device)
        pos = self.positions
        parts_q, parts_k, col = [], [], 0
        for a, b in segments:
            parts_q.append(pos.encode(q[:, :, col : col + b - a], a))
            parts_k.append(pos.encode(k[:, :, col : col + b - a], a))
            col += b - a
        q, k = torch.cat(parts_q, dim=2), torch.cat(parts_k, dim=2)
        dtype, device = q.dtype, q.device
        probe = pos.bias(1, 1, dtype=dtype, device=device)
        if probe is None:
            return q, k, bias
        if bias is not None:
            raise ValueError("pass either bias= or positions with a bias (ALiBi), not both")

        def position_bias(i: Tensor, j: Tensor) -> Tensor:  # contiguous ranges of positions
            return pos.bias(
                len(i), len(j), q_start=int(i[0]), k_start=int(j[0]), dtype=dtype, device=device
            )

        return q, k, position_bias

    def extra_repr(self) -> str:
        return (
            f"heads={self.heads}, causal={self.causal}, window={self.window}, "
            f"layout={self.layout!r}"
        )


def sequence_parallel(model: nn.Module, group=None, layout: str = "contiguous") -> nn.Module:
    """Replace every ``SelfAttention`` in ``model`` (or model itself) by a ``SequenceParallel``.

    Parameters are shared, so optimisers and ``state_dict`` keys are unchanged. Returns the
    model (a new ``SequenceParallel`` when ``model`` is itself a ``SelfAttention``).
    """
    if isinstance(model, SelfAttention):
        return SequenceParallel(model, group, layout)
    for name, child in list(model.named_children()):
        setattr(model, name, sequence_parallel(child, group, layout))
    return model
