"""Ring attention: key/value blocks travel around the ring of ranks, one step per rank.

Legend: b batch, h heads, n_r tokens on this rank, d head_dim, e value dim, P ranks.

Forward, on every rank r, for step s = 0 … P-1: the block of rank (r - s) mod P is here; post
its send to r+1 and the receive of the next block from r-1 (one ``batch_isend_irecv``), compute
this rank's queries against the block while the transfer is in flight, merge the partial result
exactly, wait. Keys and values travel as one (b, h, n_src, d+e) buffer.

Backward: the blocks go round again, each with its accumulator of dK|dV; every rank adds its
queries' contribution and passes both on, so after P steps (one more send of the accumulator)
every rank holds the complete gradient of its own keys and values. dQ stays local.
Communication per rank: (P-1)·n_r·(d+e) values forward, twice that plus n_r·(d+e) backward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from selfattention.distributed import blocks
from selfattention.distributed.comm import exchange
from selfattention.distributed.plan import Options, pieces_for
from selfattention.functional.stats import RowStats

__all__ = ["RingAttention"]

KV_TAG, GRAD_TAG = 1, 2


def _keys_of(opts: Options, src: int) -> list[tuple[int, tuple[int, int]]]:
    """[(buffer column, global segment)] of rank src's block."""
    out, col = [], 0
    for a, b in opts.segments[src]:
        out.append((col, (a, b)))
        col += b - a
    return out


def _block_len(opts: Options, src: int) -> int:
    return sum(b - a for a, b in opts.segments[src])


def _pass_on(opts: Options, buf: Tensor, src_next: int, tag: int):
    """Send buf to rank+1, receive rank src_next's block (same trailing dims) from rank-1."""
    ring = opts.ring
    shape = (*buf.shape[:2], _block_len(opts, src_next), buf.shape[-1])
    recv = buf.new_empty(shape)
    nxt, prev = (ring.rank + 1) % ring.size, (ring.rank - 1) % ring.size
    return recv, exchange(ring, [(nxt, buf)], [(prev, recv)], tag)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half precisions travel as they are but are computed and merged in float32."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def ring_forward(opts: Options, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, RowStats]:
    """out (b, h, n_r, e) in the compute dtype and the merged row statistic (b, h, n_r)."""
    ring, d, cd = opts.ring, k.shape[-1], _compute_dtype(q.dtype)
    q = q.to(cd)
    buf = torch.cat([k, v], -1).contiguous()  # (b, h, n_r, d + e)
    merged: dict[int, tuple[Tensor, RowStats]] = {}  # query segment row offset -> (out, stats)
    for step in range(ring.size):
        src = (ring.rank - step) % ring.size
        pending = None
        if step < ring.size - 1:  # the next block travels while this one is computed
            recv, pending = _pass_on(opts, buf, (src - 1) % ring.size, KV_TAG)
        kb, vb = buf[..., :d].to(cd), buf[..., d:].to(cd)
        for p in pieces_for(opts, _keys_of(opts, src)):
            part = blocks.piece_forward(opts, p, q, kb, vb)
            merged[p.r0] = part if p.r0 not in merged else blocks.merge(merged[p.r0], part)
        if pending is not None:
            pending.wait()
            buf = recv
    # every query segment sees at least its own diagonal piece, so each has an entry
    outs, stats = zip(*(merged[r0] for r0, _ in opts.local_segments()), strict=True)
    value = torch.cat([s.value for s in stats], dim=2)
    return torch.cat(outs, dim=2), RowStats(opts.normalize, value)


def ring_backward(opts, q, k, v, out, stat, dout) -> tuple[Tensor, Tensor, Tensor]:
    ring, d, cd = opts.ring, k.shape[-1], out.dtype
    q, dout = q.to(cd), dout.to(cd)
    gstat = blocks.grad_stat(opts, RowStats(opts.normalize, stat))  # (b, h, n_r, 1)
    delta = (dout * out).sum(-1, keepdim=True)
    dq = torch.zeros_like(q)
    buf = torch.cat([k, v], -1).contiguous()
    grad = torch.zeros_like(buf, dtype=cd)  # dK | dV of the block that is here
    for step in range(ring.size):
        src = (ring.rank - step) % ring.size
        last = step == ring.size - 1
        pending = None
        if not last:
            recv, pending = _pass_on(opts, buf, (src - 1) % ring.size, KV_TAG)
        kb, vb = buf[..., :d].to(cd), buf[..., d:].to(cd)
        dkb, dvb = grad[..., :d], grad[..., d:]
        for p in pieces_for(opts, _keys_of(opts, src)):
            blocks.piece_backward(opts, p, q, kb, vb, gstat, delta, dout, dq, dkb, dvb)
        if ring.size == 1:
            break
        # the accumulator follows its block; after the last step it reaches the block's owner
        grad_next, grad_pending = _pass_on(opts, grad, (src - 1) % ring.size, GRAD_TAG)
        if pending is not None:
            pending.wait()
            buf = recv
        grad_pending.wait()
        grad = grad_next
    return dq, grad[..., :d].contiguous(), grad[..., d:].contiguous()


class RingAttention(torch.autograd.Function):
    """Autograd wrapper: forward keeps only this rank's q, k, v, out and statistic."""

    @staticmethod
    def forward(ctx, opts: Options, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        out, stat = ring_forward(opts, q, k, v)
        ctx.opts = opts
        ctx.save_for_backward(q, k, v, out, stat.value)
        return out.to(v.dtype)

    @staticmethod
    def backward(ctx, dout: Tensor):
        q, k, v, out, stat = ctx.saved_tensors
        dq, dk, dv = ring_backward(ctx.opts, q, k, v, out, stat, dout.contiguous())
        return None, dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)
