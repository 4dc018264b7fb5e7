"""Tile arithmetic shared by the blocked backends (``chunked``, ``window``, 2-D neighbourhoods).

A tile is a block of scores ``s`` (..., R, C): R query rows against C keys, already scaled and
biased, with ``allowed`` (bool, broadcastable, or None) saying which entries count. Rows are
folded tile by tile into running statistics, so no row of the n_q × n_k matrix is ever stored:

    softmax  running max m, sum l = Σ exp(s - m), acc = Σ exp(s - m) v      (online softmax)
             out = acc / l,  stat = lse = m + log l
    sum      z = Σ s,  acc = Σ s v;            out = acc / z,   stat = z
    relu     c = #allowed keys, acc = Σ relu(s) v;  out = acc / c,  stat = c

Backward (FlashAttention-2 style) recomputes each tile's weights from ``stat`` and the row term
δ = Σ_e dO ∘ O, so it never stores the weights either:

    softmax  p = exp(s - lse)      ds = p ∘ (dO Vᵀ - δ)
    sum      p = s / z             ds = (dO Vᵀ - δ) / z        on allowed entries
    relu     p = relu(s) / c       ds = 1[s > 0] ∘ dO Vᵀ / c

then dV += pᵀ dO, dQ += ds K, dK += dsᵀ Q, dBias = ds. A row with no allowed key ends with
out = 0 and a stat that makes every recomputed p zero (lse = +inf, z = c = 1).
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import Tensor

from selfattention.functional.call import AttentionCall

KINDS = ("softmax", "sum", "relu")
NEG_INF = float("-inf")


@dataclass
class RowState:
    """Running statistics of a block of query rows: (..., R, 1) each, acc (..., R, e)."""

    kind: str
    acc: Tensor | None = None
    m: Tensor | None = None  # softmax: running max (finite; 0 where no key seen yet)
    l: Tensor | None = None  # softmax: Σ exp(s - m); sum: Σ s
    count: Tensor | None = None  # number of allowed keys (sum, relu)


def mm(a: Tensor, b: Tensor) -> Tensor:
    """Batched a @ b; 3-D operands go straight to bmm, which reads strided views in place."""
    return torch.bmm(a, b) if a.dim() == 3 and b.dim() == 3 else a @ b


def mask_fill(s: Tensor, allowed: Tensor | None, kind: str) -> Tensor:
    """Fill disallowed scores in place: -inf for softmax (exp -> 0), 0 for sum and relu."""
    if allowed is not None:
        s.masked_fill_(~allowed, NEG_INF if kind == "softmax" else 0.0)
    return s


def _count(allowed: Tensor | None, s: Tensor) -> Tensor:
    if allowed is None:
        return torch.full((*s.shape[:-1], 1), float(s.shape[-1]), dtype=s.dtype, device=s.device)
    return allowed.sum(-1, keepdim=True, dtype=s.dtype).expand((*s.shape[:-1], 1))


def fold(
    state: RowState, s: Tensor, allowed: Tensor | None, v: Tensor, count: Tensor | None = None
) -> None:
    """Fold one tile of scores s (..., R, C) (overwritten) with values v (..., C, e) into state.

    ``count`` (..., R, 1), the allowed keys per row, may be given when the caller has already
    put -inf on the disallowed scores and passes ``allowed=None`` (softmax and relu only).
    """
    kind = state.kind
    mask_fill(s, allowed, kind)
    if kind == "softmax":
        m_tile = s.amax(-1, keepdim=True)
        m_new = m_tile if state.m is None else torch.maximum(state.m, m_tile)
        m_new = m_new.masked_fill(torch.isneginf(m_new), 0.0)  # rows without keys stay finite
        p = s.sub_(m_new).exp_()
        l_tile = p.sum(-1, keepdim=True)
        pv = mm(p, v)
        if state.acc is None:
            state.acc, state.l = pv, l_tile
        else:
            alpha = torch.exp(state.m - m_new)
            state.acc = state.acc.mul_(alpha).add_(pv)
            state.l = state.l.mul_(alpha).add_(l_tile)
        state.m = m_new
        return
    if kind == "relu":
        s.relu_()
    pv = mm(s, v)
    row = s.sum(-1, keepdim=True) if kind == "sum" else None
    c = _count(allowed, s) if count is None else count
    if state.acc is None:
        state.acc, state.l, state.count = pv, row, c.clone()
    else:
        state.acc.add_(pv)
        state.count = state.count + c
        if row is not None:
            state.l.add_(row)


def softmax_tile(s: Tensor, v: Tensor, out: Tensor, stat: Tensor | None, maybe_empty: bool):
    """One tile that holds every key its rows may see: out = softmax(s) v, stat = lse.

    s (..., R, C) has -inf on the disallowed scores. torch's fused softmax does max, exp, sum
    and divide in one kernel; lse = max_j s - log max_j p costs two cheap reads more, and only
    when backward needs it. Rows with no key (all -inf) are zeroed when ``maybe_empty``.
    """
    p = torch.softmax(s, -1)
    torch.bmm(p, v, out=out) if p.dim() == 3 else torch.matmul(p, v, out=out)
    if stat is None and not maybe_empty:
        return
    m = s.amax(-1, keepdim=True)
    if stat is not None:
        torch.sub(m, torch.log(p.amax(-1, keepdim=True)), out=stat)
    if maybe_empty:
        empty = torch.isneginf(m)
        out.masked_fill_(empty, 0.0)
        if stat is not None:
            stat.masked_fill_(empty, float("inf"))


def finish(state: RowState, out: Tensor, stat: Tensor) -> None:
    """Write out (..., R, e) and stat (..., R, 1) of the folded state; see the module docstring."""
    kind = state.kind
    if kind == "softmax":
        empty = state.l == 0
        l_safe = state.l.masked_fill(empty, 1.0)
        torch.div(state.acc, l_safe, out=out)
        torch.add(state.m, torch.log(l_safe), out=stat)
        stat.masked_fill_(empty, float("inf"))
        return
    has_key = state.count > 0
    if kind == "sum":
        torch.where(has_key, state.l, torch.ones_like(state.l), out=stat)
    else:
        torch.clamp_min(state.count, 1.0, out=stat)
    torch.div(state.acc, stat, out=out)


def empty_stat(kind: str) -> float:
    """The stat of a row without keys: every recomputed weight of it is 0."""
    return float("inf") if kind == "softmax" else 1.0


def check_sum(stat: Tensor, count: Tensor | None) -> None:
    """normalize='sum' raises, as the math path does, when a row with keys sums to <= 0."""
    bad = stat <= 0
    if count is not None:
        bad = bad & (count > 0)
    if bool(bad.any()):
        raise ValueError(
            f'normalize="sum" needs every row of scores to sum to > 0, but {int(bad.sum())} '
            "row(s) sum to <= 0 (dot products can be negative); use softmax or relu, or make "
            "the scores positive"
        )


def tile_grads(
    kind: str, s: Tensor, allowed: Tensor | None, stat: Tensor, delta: Tensor, do: Tensor, v: Tensor
) -> tuple[Tensor, Tensor]:
    """Recomputed weights p and score gradient ds of one tile (s is overwritten).

    s (..., R, C) scaled+biased scores; stat, delta (..., R, 1); do (..., R, e); v (..., C, e).
    """
    mask_fill(s, allowed, kind)
    dp = mm(do, v.transpose(-1, -2))
    if kind == "softmax":
        p = s.sub_(stat).exp_()
        ds = dp.sub_(delta).mul_(p)
    elif kind == "sum":
        p = s.div_(stat)
        ds = dp.sub_(delta).div_(stat)
        if allowed is not None:
            ds.masked_fill_(~allowed, 0.0)
    else:
        positive = s > 0
        p = s.relu_().div_(stat)
        ds = dp.mul_(positive).div_(stat)
    return p, ds


def reduce_to(x: Tensor, shape) -> Tensor:
    """Sum x over the dims where ``shape`` has size 1 (the gradient of a broadcast operand)."""
    dims = [i for i, (a, s) in enumerate(zip(x.shape, shape, strict=True)) if s == 1 and a != 1]
    return x.sum(dims, keepdim=True) if dims else x


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half precisions are computed in float32; float32 and float64 as they are."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class BlockedAttention(torch.autograd.Function):
    """Autograd wrapper: ``engine.forward`` keeps (out, stat); ``engine.backward`` recomputes.

    The engine (a ``chunked`` or ``window`` plan) holds everything that is not a tensor with a
    gradient: scale, kind, masks, block sizes. ``bias`` may be None or carry a gradient.
    """

    @staticmethod
    def forward(ctx, engine, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None):
        out, stat = engine.forward(q, k, v, bias)
        ctx.engine = engine
        ctx.save_for_backward(q, k, v, bias, out, stat)
        return out

    @staticmethod
    def backward(ctx, dout: Tensor):
        q, k, v, bias, out, stat = ctx.saved_tensors
        need_bias = bias is not None and ctx.needs_input_grad[4]
        dq, dk, dv, dbias = ctx.engine.backward(
            q, k, v, bias, out, stat, dout.contiguous(), need_bias
        )
        return None, dq, dk, dv, dbias


def run(engine, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
    """Forward through ``engine``; with autograd only when some input needs a gradient."""
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (q, k, v, bias)
    )
    engine.need_stat = needs_grad
    if not needs_grad:
        return engine.forward(q, k, v, bias)[0]
    return BlockedAttention.apply(engine, q, k, v, bias)


def workers() -> int:
    """How many Python threads the blocked kernels split their groups over (torch's setting)."""
    return max(1, torch.get_num_threads())


def parallel(fn, parts: list) -> list:
    """Run ``fn(part)`` for each part on its own thread, each op single-threaded inside.

    Many small batched ops inside torch's own thread pool pay one barrier per op, and the
    barriers stall when the cores are shared; coarse parts per thread pay none. torch releases
    the GIL inside its ops, so the threads run in parallel.
    """
    if len(parts) <= 1:
        return [fn(p) for p in parts]

    def task(part):
        with torch.no_grad():  # grad mode is per thread; the engines never need autograd
            return fn(part)

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            return list(pool.map(task, parts))
    finally:
        torch.set_num_threads(before)


def split(start: int, stop: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) cut into ``parts`` contiguous near-equal ranges (empty ones dropped)."""
    bounds = [start + (stop - start) * i // parts for i in range(parts + 1)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def common_refusal(call: AttentionCall, name: str) -> str | None:
    """Reasons shared by the blocked backends."""
    if call.return_weights:
        return f"{name} never materialises the weights (use backend='math' to get them)"
    if not isinstance(call.normalize, str):
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
