"""``ring_attention``: exact attention over a sequence sharded across the ranks of a group."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from selfattention.distributed import blocks
from selfattention.distributed.checks import make_options
from selfattention.distributed.group import resolve
from selfattention.distributed.halo import HaloExchange, halo_pieces
from selfattention.distributed.plan import BiasFn
from selfattention.distributed.ring import RingAttention

__all__ = ["ring_attention"]


def ring_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    group: dist.ProcessGroup | None = None,
    causal: bool = False,
    window: int | tuple[int | None, int | None] | None = None,
    mask: Tensor | None = None,
    bias: Tensor | BiasFn | None = None,
    normalize: str = "softmax",
    layout: str = "contiguous",
    scale: float | None = None,
) -> Tensor:
    """Self-attention over a sequence of n tokens split across the P ranks of ``group``.

    Every rank calls it with its own shard (``shard(x, group, layout)``); the result on each
    rank is its rows of ``sa.attention`` over the whole sequence, forward and backward:

        O_r = normalize(Q_r Kᵀ · scale + bias, allowed) V       (K, V: all n tokens)

    Without a window (or with one unbounded side) the key/value blocks go round the ring
    (``ring.py``); with both window sides bounded only the halo is exchanged (``halo.py``).

    Args:
        q, k: this rank's shard (b, h, n_r, d); v (b, h, n_r, e). n_r follows ``layout``.
        group: a ``torch.distributed`` process group (default: the world). Without an
            initialised group it runs as world size 1, unless ``WORLD_SIZE`` > 1 says this
            process is one of several (then ``NoProcessGroupError`` says how to start one).
        causal, window: as in ``sa.attention``, in global positions (window w or (left, right)).
        mask: bool, broadcastable to (b, h, n_r, n): this rank's query rows (shard order)
            against all n keys (sequence order); True = may attend. A padding mask is
            ``sa.masks.padding(lengths, n)`` (b, 1, 1, n), the same on every rank.
        bias: float tensor shaped like ``mask``, or a callable ``bias(q_pos, k_pos)`` of global
            positions (int64 (i,), (j,)) -> broadcastable to (b, h, i, j) (e.g. ALiBi). It
            carries no gradient.
        normalize: "softmax" | "sum" | "relu" (each merges exactly across ranks).
        layout: "contiguous" | "zigzag" (balances causal work; see ``shard``).
        scale: defaults to 1/√d.

    Returns:
        O_r (b, h, n_r, e). Ranks that disagree on shapes, dtype, layout or options all raise
        ``ShardMismatchError``; a rank that fails makes the others fail within the group's
        timeout (``init_process_group(timeout=...)``).
    """
    ring = resolve(group)
    opts = make_options(
        ring,
        q,
        k,
        v,
        causal=causal,
        window=window,
        mask=mask,
        bias=bias,
        normalize=normalize,
        layout=layout,
        scale=scale,
    )
    if not opts.halo:
        return RingAttention.apply(opts, q, k, v)
    d = k.shape[-1]
    halos = HaloExchange.apply(opts, torch.cat([k, v], -1))
    outs = [
        blocks.piece_forward(opts, p, q, h[..., :d], h[..., d:], with_stat=False)
        for p, h in zip(halo_pieces(opts), halos, strict=True)
    ]
    return torch.cat(outs, dim=2)
