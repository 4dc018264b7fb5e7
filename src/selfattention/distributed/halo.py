"""Window attention over ranks: exchange only the halo, then attend locally.

With window (left, right) (after causal), the queries of a segment [qs, qe) can only see keys
[qs - left, qe + right) ∩ [0, n): the segment itself plus ``left`` keys before it and ``right``
after it, which may live on several other ranks when the window is wider than a shard. Every
rank computes the same transfer table from the layout, so one ``batch_isend_irecv`` with one
message per (sender, receiver) pair moves exactly those keys and values: at most
(left + right)·(d + e) values per segment, per batch element and head, independent of n and P.
Backward sends the halo's gradients back the same way, reversed, and adds them to their owner.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from selfattention.distributed.comm import exchange
from selfattention.distributed.plan import Options, Piece

__all__ = ["Chunk", "HaloExchange", "halo_ranges", "transfers"]

HALO_TAG = 3


@dataclass(frozen=True)
class Chunk:
    """Keys [start, stop) of rank ``src`` (at its column ``src_col``) that rank ``dst`` needs
    in the halo of its segment ``seg`` (at column ``dst_col``)."""

    src: int
    dst: int
    seg: int
    src_col: int
    dst_col: int
    length: int


def halo_ranges(opts: Options, rank: int) -> list[tuple[int, int]]:
    """[(hs, he)] global key range each segment of ``rank`` needs (its own keys included)."""
    return [(max(0, a - opts.left), min(opts.n, b + opts.right)) for a, b in opts.segments[rank]]


def transfers(opts: Options) -> list[Chunk]:
    """Every chunk of every halo on every rank, in one order all ranks agree on."""
    chunks = []
    size = opts.ring.size
    for dst in range(size):
        for seg, (hs, he) in enumerate(halo_ranges(opts, dst)):
            for src in range(size):
                col = 0
                for a, b in opts.segments[src]:
                    lo, hi = max(hs, a), min(he, b)
                    if lo < hi:
                        chunks.append(Chunk(src, dst, seg, col + lo - a, lo - hs, hi - lo))
                    col += b - a
    return chunks


def _move(opts: Options, chunks: list[Chunk], source, target, forward: bool) -> None:
    """Copy chunks from ``source`` to ``target`` (forward: kv -> halos; else halo grads -> dkv).

    source/target are callables (rank-side, chunk) -> the tensor view to read / to add into.
    """
    ring = opts.ring
    me = ring.rank
    sender = (lambda c: c.src) if forward else (lambda c: c.dst)
    receiver = (lambda c: c.dst) if forward else (lambda c: c.src)
    sends, recvs, places = [], [], []
    for peer in range(ring.size):
        if peer == me:
            continue
        out_chunks = [c for c in chunks if sender(c) == me and receiver(c) == peer]
        if out_chunks:
            sends.append((peer, torch.cat([source(c) for c in out_chunks], dim=2).contiguous()))
        in_chunks = [c for c in chunks if sender(c) == peer and receiver(c) == me]
        if in_chunks:
            first = target(in_chunks[0])
            shape = (*first.shape[:2], sum(c.length for c in in_chunks), first.shape[-1])
            buf = first.new_empty(shape)
            recvs.append((peer, buf))
            places.append((buf, in_chunks))
    pending = exchange(ring, sends, recvs, HALO_TAG)
    for c in chunks:  # local chunks while the messages travel
        if c.src == me and c.dst == me:
            target(c).add_(source(c))
    pending.wait()
    for buf, in_chunks in places:
        col = 0
        for c in in_chunks:
            target(c).add_(buf[:, :, col : col + c.length])
            col += c.length


class HaloExchange(torch.autograd.Function):
    """kv (b, h, n_r, d+e) -> one halo buffer (b, h, he - hs, d+e) per local segment."""

    @staticmethod
    def forward(ctx, opts: Options, kv: Tensor):
        chunks = transfers(opts)
        me = opts.ring.rank
        halos = [
            kv.new_zeros((*kv.shape[:2], he - hs, kv.shape[-1])) for hs, he in halo_ranges(opts, me)
        ]
        _move(
            opts,
            chunks,
            lambda c: kv[:, :, c.src_col : c.src_col + c.length],
            lambda c: halos[c.seg][:, :, c.dst_col : c.dst_col + c.length],
            forward=True,
        )
        ctx.opts, ctx.chunks, ctx.kv_shape = opts, chunks, kv.shape
        ctx.halo_shapes = [h.shape for h in halos]
        return tuple(halos)

    @staticmethod
    def backward(ctx, *grads):
        opts, chunks = ctx.opts, ctx.chunks
        first = next(g for g in grads if g is not None)
        grads = [
            first.new_zeros(shape) if g is None else g
            for g, shape in zip(grads, ctx.halo_shapes, strict=True)
        ]
        dkv = first.new_zeros(ctx.kv_shape)
        _move(
            opts,
            chunks,
            lambda c: grads[c.seg][:, :, c.dst_col : c.dst_col + c.length],
            lambda c: dkv[:, :, c.src_col : c.src_col + c.length],
            forward=False,
        )
        return None, dkv


def halo_pieces(opts: Options) -> list[Piece]:
    """One piece per local segment: its queries against its own halo buffer (columns from 0)."""
    out = []
    me = opts.ring.rank
    for (r0, (qs, qe)), (hs, he) in zip(opts.local_segments(), halo_ranges(opts, me), strict=True):
        d = qs - hs
        out.append(Piece(r0, r0 + qe - qs, qs, 0, he - hs, hs, d - opts.left, d + opts.right))
    return out
