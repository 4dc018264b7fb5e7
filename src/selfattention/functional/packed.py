"""Packed variable-length batches: sequences end to end along the sequence axis, no padding.

    q (b, h, T, d), k (b, h_kv, T_k, d), v (b, h_kv, T_k, e) hold s sequences packed end to end;
    cu_seqlens = (0, c_1, ..., c_s = T) are the query boundaries (flash-attention's varlen
    convention), cu_seqlens_k those of the keys (default: the same, self-attention).

Sequence t attends only to its own keys: rows c_t ... c_(t+1) - 1 against keys
c^k_t ... c^k_(t+1) - 1, with causal, window, mask and bias applied inside the sequence (positions
restart at 0 in each). No score is computed across sequences or on padding, on any backend:
sequences of equal (query, key) lengths are gathered into one batch (one backend call per
distinct length pair), a lone sequence is a view. Each sequence's result depends on its own
rows only, so changing one sequence leaves the others' outputs and gradients untouched.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from torch import Tensor

from selfattention.functional import masks as _masks
from selfattention.functional.backends.base import Result
from selfattention.functional.call import AttentionCall

__all__ = ["Segments", "check_cu_seqlens", "cu_seqlens", "first", "serve"]

Serve = Callable[[AttentionCall], Result]
Segments = list[tuple[int, int]]


def cu_seqlens(lengths: Sequence[int] | Tensor) -> list[int]:
    """Boundaries (0, l_1, l_1 + l_2, ...) of sequences of these lengths packed end to end."""
    out = [0]
    for n in lengths.tolist() if isinstance(lengths, Tensor) else lengths:
        out.append(out[-1] + int(n))
    return out


def check_cu_seqlens(value, total: int, name: str = "cu_seqlens") -> Segments:
    """0 = c_0 <= c_1 <= ... <= c_s = total (ints, list or 1-D integer tensor) -> [(c_t, c_t+1)]."""
    if isinstance(value, Tensor):
        if value.ndim != 1 or value.dtype.is_floating_point or value.dtype == torch.bool:
            raise TypeError(
                f"{name} must be a 1-D integer tensor or a list of ints, got dtype {value.dtype} "
                f"with shape {tuple(value.shape)}"
            )
        value = value.tolist()
    if not isinstance(value, list | tuple) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in value
    ):
        raise TypeError(f"{name} must be a 1-D integer tensor or a list of ints, got {value!r}")
    if len(value) < 2 or value[0] != 0 or value[-1] != total:
        raise ValueError(
            f"{name} must run from 0 to the packed length {total} (at least 2 entries), "
            f"got {list(value)[:8]}{' ...' if len(value) > 8 else ''}"
        )
    if any(b < a for a, b in itertools.pairwise(value)):
        raise ValueError(f"{name} must be non-decreasing, got {list(value)[:8]} ...")
    return list(itertools.pairwise(value))


def _block(t: Tensor | None, q: tuple[int, int], k: tuple[int, int]) -> Tensor | None:
    """The (query, key) block of one sequence in a mask or bias (broadcast axes stay size 1)."""
    if t is None:
        return None
    if t.shape[2] > 1:
        t = t[:, :, q[0] : q[1]]
    if t.shape[3] > 1:
        t = t[:, :, :, k[0] : k[1]]
    return t


class _Layout:
    """Sequences reordered so that each (query length, key length) bucket is one contiguous run:
    one gather of q, k, v before (``sort``), one of the outputs after (``unsort``), and every
    bucket a view of the sorted tensors (a copy per bucket would cost O(buckets · T))."""

    def __init__(self, segs: Segments, order: list[int], total: int, device) -> None:
        self.offsets: dict[int, int] = {}
        pos = 0
        for t in order:
            self.offsets[t] = pos
            pos += segs[t][1] - segs[t][0]
        perm = torch.cat([torch.arange(*segs[t], device=device) for t in order])
        identity = perm.numel() == total and bool(
            (perm == torch.arange(total, device=device)).all()
        )
        self.perm = None if identity else perm
        if not identity:
            self.inverse = torch.empty_like(perm)
            self.inverse[perm] = torch.arange(perm.numel(), device=device)

    def sort(self, x: Tensor) -> Tensor:
        return x if self.perm is None else x.index_select(2, self.perm)

    def unsort(self, x: Tensor) -> Tensor:
        return x if self.perm is None else x.index_select(2, self.inverse)


def _batch(x: Tensor, start: int, n: int, length: int) -> Tensor:
    """n sequences of ``length`` from ``start`` of x (b, h, T, d) as (n·b, h, length, d)."""
    b, h, _, d = x.shape
    g = x[:, :, start : start + n * length].reshape(b, h, n, length, d)
    return g.permute(2, 0, 1, 3, 4).reshape(n * b, h, length, d)


def _unbatch(y: Tensor, n: int, b: int) -> Tensor:
    """(n·b, h, L, d) -> (b, h, n·L, d), the inverse of ``_batch``."""
    _, h, length, d = y.shape
    return y.reshape(n, b, h, length, d).permute(1, 2, 0, 3, 4).reshape(b, h, n * length, d)


def _gather_blocks(t: Tensor | None, qs: Segments, ks: Segments, b: int) -> Tensor | None:
    """The per-sequence blocks of a mask or bias, batched like ``_gather``."""
    if t is None:
        return None
    blocks = [_block(t, q, k) for q, k in zip(qs, ks, strict=True)]
    if len(blocks) == 1 or (t.shape[2] == 1 and t.shape[3] == 1):
        return blocks[0]
    return torch.cat([x.expand(b, *x.shape[1:]) for x in blocks])


def first(call: AttentionCall, q: tuple[int, int], k: tuple[int, int]) -> AttentionCall:
    """The call of one sequence (rows q[0]:q[1], keys k[0]:k[1]), for ``explain_dispatch``."""
    nq, nk = q[1] - q[0], k[1] - k[0]
    return replace(
        call,
        q=call.q[:, :, q[0] : q[1]],
        k=call.k[:, :, k[0] : k[1]],
        v=call.v[:, :, k[0] : k[1]],
        mask=_block(call.mask, q, k),
        bias=_block(call.bias, q, k),
        window=None if call.window is None else _masks.clamp_window(call.window, nq, nk),
    )


def serve(call: AttentionCall, q_segs: Segments, k_segs: Segments, serve_one: Serve) -> Result:
    """``serve_one`` applied sequence by sequence (grouped by length), reassembled along T.

    Weights are block-diagonal (b, h, T, T_k): zeros across sequences.
    """
    if call.weights_rows is not None:
        raise ValueError("weights_rows cannot be combined with cu_seqlens (packed sequences)")
    b = call.q.shape[0]
    buckets: dict[tuple[int, int], list[int]] = {}
    for t, ((q0, q1), (k0, k1)) in enumerate(zip(q_segs, k_segs, strict=True)):
        if q1 > q0 and k1 == k0:
            raise ValueError(
                f"cu_seqlens_k gives sequence {t} no keys while it has {q1 - q0} queries"
            )
        if q1 > q0:
            buckets.setdefault((q1 - q0, k1 - k0), []).append(t)
    order = [t for members in buckets.values() for t in members]
    q_layout = _Layout(q_segs, order, call.q_len, call.q.device)
    k_layout = _Layout(k_segs, order, call.k_len, call.q.device)
    q, k, v = q_layout.sort(call.q), k_layout.sort(call.k), k_layout.sort(call.v)
    outs: list[Tensor] = []
    stats: list[Tensor] = []
    weights = None
    if call.return_weights:
        weights = call.q.new_zeros(b, call.q.shape[1], call.q_len, call.k_len)
    for (nq, nk), members in buckets.items():
        n, q0, k0 = len(members), q_layout.offsets[members[0]], k_layout.offsets[members[0]]
        qs = [q_segs[t] for t in members]
        ks = [k_segs[t] for t in members]
        window = None if call.window is None else _masks.clamp_window(call.window, nq, nk)
        sub = replace(
            call,
            q=_batch(q, q0, n, nq),
            k=_batch(k, k0, n, nk),
            v=_batch(v, k0, n, nk),
            mask=_gather_blocks(call.mask, qs, ks, b),
            bias=_gather_blocks(call.bias, qs, ks, b),
            window=window,
        )
        r = serve_one(sub)
        outs.append(_unbatch(r.out, n, b))
        if r.stat is not None:
            stats.append(_unbatch(r.stat, n, b))
        if weights is not None:
            w = r.weights.reshape(n, b, *r.weights.shape[1:])
            for s, t in enumerate(members):
                (a, e), (c, f) = q_segs[t], k_segs[t]
                weights[:, :, a:e, c:f] = w[s]
    out = q_layout.unsort(torch.cat(outs, dim=2))
    stat = q_layout.unsort(torch.cat(stats, dim=2)) if stats else None
    return Result(out, weights, stat)
