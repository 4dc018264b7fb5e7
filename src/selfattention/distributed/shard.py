"""Where each token lives: the contiguous and zigzag layouts, ``shard`` and ``unshard``.

A sequence of n tokens over P ranks. ``contiguous``: rank r holds the r-th of P near-equal
slices. ``zigzag``: the sequence is cut into 2P near-equal chunks and rank r holds chunks r and
2P-1-r (in that order), so under causal attention every rank has about the same number of
(query, key) pairs to compute. Sizes follow ``torch.tensor_split``: when P (or 2P) does not
divide n, the first n mod P pieces are one token longer (uneven shards are supported).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from selfattention.distributed.group import ShardMismatchError, resolve

__all__ = ["LAYOUTS", "Segment", "layout_segments", "local_length", "shard", "unshard"]

LAYOUTS = ("contiguous", "zigzag")

Segment = tuple[int, int]  # global token range [start, stop)


def _cuts(n: int, parts: int) -> list[Segment]:
    bounds = [0]
    for i in range(parts):
        bounds.append(bounds[-1] + n // parts + (1 if i < n % parts else 0))
    return [(bounds[i], bounds[i + 1]) for i in range(parts)]


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return layout


def layout_segments(n: int, size: int, layout: str) -> list[list[Segment]]:
    """The global ranges each rank holds, in local order: ``segments[r] = [(start, stop), ...]``."""
    check_layout(layout)
    pieces = size if layout == "contiguous" else 2 * size
    if n < pieces:
        raise ValueError(
            f"a sequence of n={n} tokens cannot be split over {size} rank(s) with "
            f"layout={layout!r}: it needs n >= {pieces} (one token per "
            f"{'rank' if layout == 'contiguous' else 'chunk, 2 chunks per rank'})"
        )
    cuts = _cuts(n, pieces)
    if layout == "contiguous":
        return [[cuts[r]] for r in range(size)]
    return [[cuts[r], cuts[2 * size - 1 - r]] for r in range(size)]


def local_length(n: int, size: int, rank: int, layout: str) -> int:
    """How many tokens rank ``rank`` holds."""
    return sum(b - a for a, b in layout_segments(n, size, layout)[rank])


def shard(x: Tensor, group=None, layout: str = "contiguous", dim: int = -2) -> Tensor:
    """This rank's part of a full sequence ``x`` (every rank passes the same x), along ``dim``.

    x (b, h, n, d) -> (b, h, n_r, d) for the default dim=-2. No communication.
    """
    ring = resolve(group)
    n = x.shape[dim]
    segs = layout_segments(n, ring.size, layout)[ring.rank]
    return torch.cat([x.narrow(dim, a, b - a) for a, b in segs], dim=dim)


def unshard(x: Tensor, group=None, layout: str = "contiguous", dim: int = -2) -> Tensor:
    """The full sequence from every rank's shard (an all-gather): the inverse of ``shard``.

    Shards may be uneven; every rank gets the whole (…, n, …) tensor. Not differentiable.
    """
    ring = resolve(group)
    if ring.size == 1:
        return x
    dim = dim % x.dim()
    lengths = torch.tensor([x.shape[dim]], dtype=torch.int64, device=x.device)
    table = torch.empty(ring.size, dtype=torch.int64, device=x.device)
    dist.all_gather_single(table, lengths, group=ring.group)
    sizes = table.tolist()
    n = sum(sizes)
    segs = layout_segments(n, ring.size, layout)
    expected = [sum(b - a for a, b in s) for s in segs]
    if sizes != expected:
        raise ShardMismatchError(
            f"shard lengths {sizes} (rank order) are not the {layout!r} layout of n={n}, "
            f"which is {expected}"
        )
    longest = max(sizes)
    padded = x.movedim(dim, 0)
    if padded.shape[0] < longest:  # all_gather needs equal sizes: pad, then cut
        pad = padded.new_zeros((longest - padded.shape[0], *padded.shape[1:]))
        padded = torch.cat([padded, pad])
    gathered = [torch.empty_like(padded) for _ in range(ring.size)]
    dist.all_gather(gathered, padded.contiguous(), group=ring.group)
    full = padded.new_empty((n, *padded.shape[1:]))
    for r, parts in enumerate(segs):
        offset = 0
        for a, b in parts:
            full[a:b] = gathered[r][offset : offset + b - a]
            offset += b - a
    return full.movedim(0, dim)


def global_segments(
    n_r: int, group=None, layout: str = "contiguous", device=None
) -> tuple[int, list[Segment]]:
    """(n, this rank's global ranges) from every rank's shard length n_r (one all-gather on
    ``device``: the device of the tensors, as NCCL needs GPU tensors)."""
    ring = resolve(group)
    if ring.size == 1:
        return n_r, [(0, n_r)]
    local = torch.tensor([n_r], dtype=torch.int64, device=device)
    table = torch.empty(ring.size, dtype=torch.int64, device=device)
    dist.all_gather_single(table, local, group=ring.group)
    n = int(table.sum())
    return n, layout_segments(n, ring.size, layout)[ring.rank]
