"""Plumbing shared by the blocked backends (``chunked``, ``window``, ``tiles``).

A tile is a block of scores ``s`` (..., R, C): R query rows against C keys, already scaled and
biased, with ``allowed`` (bool, broadcastable, or None) saying which entries count. The call's
normalisation object (``functional.normalize``) folds rows tile by tile into running statistics
and finishes them into the output and one statistic per row; backward recomputes every tile's
weights from that statistic (``Normalization.grads``), so no weights are ever stored. Then
dV += pᵀ dO, dQ += ds K, dK += dsᵀ Q, dBias = ds.

This module holds what does not depend on the normalisation: the autograd wrapper, the thread
split, and the refusals every blocked backend shares.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

from selfattention.functional.call import AttentionCall


def reduce_to(x: Tensor, shape) -> Tensor:
    """Sum x over the dims where ``shape`` has size 1 (the gradient of a broadcast operand)."""
    dims = [i for i, (a, s) in enumerate(zip(x.shape, shape, strict=True)) if s == 1 and a != 1]
    return x.sum(dims, keepdim=True) if dims else x


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half precisions are computed in float32; float32 and float64 as they are."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class BlockedAttention(torch.autograd.Function):
    """Autograd wrapper: ``engine.forward`` gives (out, stat); ``engine.backward`` recomputes.

    The engine (a ``chunked``, ``window`` or ``tiles`` plan, or sdpa's flash pass) holds
    everything that is not a tensor with a gradient: scale, normalisation, masks, block sizes.
    ``bias`` may be None or carry a gradient. Both outputs are differentiable: a gradient that
    reaches the row statistic is folded into δ (``Normalization.stat_delta``).
    """

    @staticmethod
    def forward(ctx, engine, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None):
        out, stat = engine.forward(q, k, v, bias)
        ctx.engine = engine
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(q, k, v, bias, out, stat)
        return out, stat

    @staticmethod
    def backward(ctx, dout: Tensor | None, dstat: Tensor | None):
        q, k, v, bias, out, stat = ctx.saved_tensors
        need_bias = bias is not None and ctx.needs_input_grad[4]
        dout = torch.zeros_like(out) if dout is None else dout.contiguous()
        if getattr(ctx.engine, "fuses_delta", False):
            # The engine sums dO ∘ O row by row itself; it gets only the statistic's term.
            delta = None
            if dstat is not None:
                delta = ctx.engine.norm.stat_delta(torch.zeros_like(stat), stat, dstat)
        else:
            delta = (dout * out).sum(-1, keepdim=True)
            delta = ctx.engine.norm.stat_delta(delta, stat, dstat)
        dq, dk, dv, dbias = ctx.engine.backward(q, k, v, bias, out, stat, dout, need_bias, delta)
        return None, dq, dk, dv, dbias


def run(
    engine, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, stat: bool = False
) -> tuple[Tensor, Tensor | None]:
    """(out, stat (b, h, i, 1) or None) through ``engine``; autograd only when some input needs a
    gradient. ``stat=True`` asks for the row statistic even without gradients."""
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (q, k, v, bias)
    )
    engine.need_stat = needs_grad or stat
    if not needs_grad:
        out, st = engine.forward(q, k, v, bias)
        return out, st if stat else None
    out, st = BlockedAttention.apply(engine, q, k, v, bias)
    return out, st if stat else None


def workers() -> int:
    """How many Python threads the blocked kernels split their groups over (torch's setting)."""
    return max(1, torch.get_num_threads())


def parallel(fn, parts: list, threads: int | None = None) -> list:
    """Run ``fn(part)`` for each part on its own thread, each op single-threaded inside.

    Many small batched ops inside torch's own thread pool pay one barrier per op, and the
    barriers stall when the cores are shared; coarse parts per thread pay none. torch releases
    the GIL inside its ops, so the threads run in parallel. ``threads`` < len(parts): that many
    threads take the parts in turn (a thread slowed by load then takes fewer).
    """
    if len(parts) <= 1 or threads == 1:
        return [fn(p) for p in parts]

    def task(part):
        with torch.no_grad():  # grad mode is per thread; the engines never need autograd
            return fn(part)

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=min(len(parts), threads or len(parts))) as pool:
            return list(pool.map(task, parts))
    finally:
        torch.set_num_threads(before)


def split(start: int, stop: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) cut into ``parts`` contiguous near-equal ranges (empty ones dropped)."""
    bounds = [start + (stop - start) * i // parts for i in range(parts + 1)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def common_refusal(call: AttentionCall, name: str) -> str | None:
    """Reasons shared by the blocked backends."""
    if not call.normalize.blockwise:
        return (
            f"{name} folds rows block by block; a user normalize callable needs whole rows "
            "(use backend='math')"
        )
    if call.dropout_p > 0.0:
        return (
            f"{name} does not implement dropout on the weights: backward would have to replay "
            "the same random mask per block (use backend='math' or 'sdpa' for training dropout)"
        )
    return None
