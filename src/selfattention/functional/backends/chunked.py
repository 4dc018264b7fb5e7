"""Exact attention over query × key blocks with an online softmax: no n_q × n_k matrix.

For each block of queries the keys are visited block by block and folded into running row
statistics by the call's normalisation object (``Normalization.fold``: running max and sum for
softmax, row sums for sum, allowed-key counts for relu). Tiles entirely outside the band
(causal, window) are skipped; tiles entirely inside it need no mask. Backward recomputes every
tile from the stored output and one statistic per row (log-sum-exp for softmax),
FlashAttention-2 style.

Time O(b·h·n_q·n_k·d) (less the skipped tiles), memory O(b·h·(n_q + n_k)·d) plus one tile of
b·h·B_q·B_k scores, for every normalisation (softmax, sum, relu), mask and bias.
"""

from __future__ import annotations

import torch
from torch import Tensor

from selfattention.functional.backends import _blocks as blk
from selfattention.functional.backends.base import Backend, Result
from selfattention.functional.call import AttentionCall
from selfattention.functional.normalize import RowState

TILE_BYTES = 2 * 2**20  # one tile of scores across (b, h): 2 MiB, the L2 of one core
Q_BLOCK = 256


class ChunkedPlan:
    """Block sizes, band, mask and normalisation of one call (everything without a gradient)."""

    def __init__(self, call: AttentionCall, q_block: int | None = None, k_block: int | None = None):
        self.norm = call.normalize
        self.scale = call.scale
        self.left, self.right = call.band()
        self.nq, self.nk = call.q_len, call.k_len
        bh = call.q.shape[0] * call.q.shape[1]
        self.q_block = q_block or min(self.nq, Q_BLOCK)
        per_key = bh * self.q_block * 4
        self.k_block = k_block or max(256, min(self.nk, TILE_BYTES // per_key))
        self.mask = None if call.mask is None else _as4d(call.mask)
        self.device = call.q.device
        self.need_stat = True

    def tiles(self, start: int, stop: int):
        """(i0, i1, [(j0, j1, band_mask | None), ...]) for query rows start ... stop - 1."""
        left, right = self.left, self.right
        for i0 in range(start, stop, self.q_block):
            i1 = min(self.nq, i0 + self.q_block)
            keys = []
            for j0 in range(0, self.nk, self.k_block):
                j1 = min(self.nk, j0 + self.k_block)
                if right is not None and j0 > i1 - 1 + right:
                    break
                if left is not None and j1 - 1 < i0 - left:
                    continue
                inside = (left is None or j0 >= i1 - 1 - left) and (
                    right is None or j1 - 1 <= i0 + right
                )
                band = None
                if not inside:
                    i = torch.arange(i0, i1, device=self.device)[:, None]
                    j = torch.arange(j0, j1, device=self.device)[None, :]
                    band = torch.ones(i1 - i0, j1 - j0, dtype=torch.bool, device=self.device)
                    if left is not None:
                        band &= j >= i - left
                    if right is not None:
                        band &= j <= i + right
                keys.append((j0, j1, band))
            yield i0, i1, keys

    def scores(self, q: Tensor, k: Tensor, bias: Tensor | None, i0, i1, j0, j1, band):
        """Scaled scores (b·h, rows, keys) of one tile and what they may attend to (or None)."""
        qt, kt = q[:, i0:i1], k[:, j0:j1].transpose(1, 2)
        allowed = band
        if self.mask is not None:
            allowed = blk_and(allowed, self._heads(_slice(self.mask, i0, i1, j0, j1)))
        if bias is None:
            s = torch.baddbmm(self.zero, qt, kt, beta=0.0, alpha=self.scale)
        else:
            bias_t = self._heads(_slice(bias, i0, i1, j0, j1))
            s = torch.baddbmm(bias_t, qt, kt, alpha=self.scale)
            allowed = blk_and(allowed, ~torch.isneginf(bias_t))
        return s, allowed

    def _heads(self, x: Tensor) -> Tensor:
        """(B?, H?, r, c) -> (b·h, r, c), or (r, c) when it is the same for every head."""
        if x.shape[0] == 1 and x.shape[1] == 1:
            return x[0, 0]
        return x.expand(self.b, self.h, -1, -1).reshape(self.b * self.h, *x.shape[2:])

    def parts(self, n_parts: int) -> list[tuple[int, int]]:
        """Query rows cut at block boundaries into ``n_parts`` ranges, one per thread."""
        blocks = blk.split(0, -(-self.nq // self.q_block), n_parts)
        return [(a * self.q_block, min(self.nq, b * self.q_block)) for a, b in blocks]

    def forward(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None):
        b, h = q.shape[:2]
        self.b, self.h = b, h
        self.zero = torch.zeros((), dtype=q.dtype, device=q.device)
        q3, k3, v3 = (t.reshape(b * h, t.shape[2], t.shape[3]) for t in (q, k, v))
        out = q.new_zeros(b * h, self.nq, v.shape[-1])
        stat = q.new_full((b * h, self.nq, 1), self.norm.empty_stat)
        norm = self.norm

        def part(rows: tuple[int, int]) -> None:  # query blocks write disjoint rows
            for i0, i1, keys in self.tiles(*rows):
                if len(keys) == 1:  # whole rows in one tile
                    j0, j1, band = keys[0]
                    s, allowed = self.scores(q3, k3, bias, i0, i1, j0, j1, band)
                    st = stat[:, i0:i1] if self.need_stat else None
                    norm.whole(
                        s, allowed, v3[:, j0:j1], out[:, i0:i1], st, maybe_empty=allowed is not None
                    )
                    continue
                state = RowState()
                for j0, j1, band in keys:
                    s, allowed = self.scores(q3, k3, bias, i0, i1, j0, j1, band)
                    norm.fold(state, s, allowed, v3[:, j0:j1])
                if state.acc is None:  # no key block meets the band: zeros
                    continue
                norm.finish(state, out[:, i0:i1], stat[:, i0:i1])

        blk.parallel(part, self.parts(blk.workers()))
        return out.view(b, h, self.nq, -1), stat.view(b, h, self.nq, 1)

    def backward(self, q, k, v, bias, out, stat, dout, need_bias, delta):
        b, h = q.shape[:2]
        self.b, self.h = b, h
        self.zero = torch.zeros((), dtype=q.dtype, device=q.device)
        q3, k3, v3, do3 = (t.reshape(b * h, t.shape[2], t.shape[3]) for t in (q, k, v, dout))
        st3 = stat.reshape(b * h, self.nq, 1)
        delta = delta.reshape(b * h, self.nq, 1)
        dq = torch.zeros_like(q3)
        dbias = torch.zeros_like(bias) if need_bias else None

        def part(rows: tuple[int, int]) -> tuple[Tensor, Tensor]:
            dk, dv = torch.zeros_like(k3), torch.zeros_like(v3)  # per thread: keys overlap
            for i0, i1, keys in self.tiles(*rows):
                do = do3[:, i0:i1]
                for j0, j1, band in keys:
                    s, allowed = self.scores(q3, k3, bias, i0, i1, j0, j1, band)
                    p, ds = self.norm.grads(
                        s, allowed, st3[:, i0:i1], delta[:, i0:i1], do, v3[:, j0:j1]
                    )
                    dv[:, j0:j1].baddbmm_(p.transpose(1, 2), do)
                    dk[:, j0:j1].baddbmm_(ds.transpose(1, 2), q3[:, i0:i1], alpha=self.scale)
                    dq[:, i0:i1].baddbmm_(ds, k3[:, j0:j1])
                    if dbias is not None:
                        target = _slice(dbias, i0, i1, j0, j1)
                        target += blk.reduce_to(ds.view(b, h, *ds.shape[1:]), target.shape)
            return dk, dv

        results = blk.parallel(part, self.parts(1 if need_bias else blk.workers()))
        dk, dv = results[0]
        for dk_w, dv_w in results[1:]:
            dk += dk_w
            dv += dv_w
        shape = (b, h, -1)
        return (
            dq.mul_(self.scale).view(*shape, q.shape[-1]),
            dk.view(*shape, k.shape[-1]),
            dv.view(*shape, v.shape[-1]),
            dbias,
        )


def blk_and(a: Tensor | None, b: Tensor) -> Tensor:
    return b if a is None else a & b


def _as4d(x: Tensor) -> Tensor:
    return x.reshape((1,) * (4 - x.ndim) + tuple(x.shape))


def _slice(x: Tensor, i0: int, i1: int, j0: int, j1: int) -> Tensor:
    """The (i0:i1, j0:j1) tile of a broadcastable 4-D tensor (size-1 dims stay size 1)."""
    if x.shape[2] != 1:
        x = x[:, :, i0:i1]
    if x.shape[3] != 1:
        x = x[:, :, :, j0:j1]
    return x


def refuse(call: AttentionCall) -> str | None:
    if call.grid is not None:
        return "a 2-D neighbourhood is not a 1-D band (backend='tiles' serves it)"
    return blk.common_refusal(call, "chunked")


SMALL_WEIGHTS = 32 * 2**20  # bytes of weights below which the materialised path is as fast


def auto_skip(call: AttentionCall) -> str | None:
    b, h = call.q.shape[:2]
    size = b * h * call.q_len * call.k_len * 4
    if size <= SMALL_WEIGHTS and not call.windowed and not call.causal:
        return f"the weights are small ({size / 2**20:.1f} MiB); the math path is as fast"
    return None


def forward(call: AttentionCall) -> Result:
    dtype = blk.compute_dtype(call.q.dtype)
    plan = ChunkedPlan(call)
    bias = None if call.bias is None else _as4d(call.bias.to(dtype))
    q, k, v = call.q.to(dtype), call.k.to(dtype), call.v.to(dtype)
    out, stat = blk.run(plan, q, k, v, bias, stat=call.need_stat)
    return Result(out.to(call.v.dtype), None, stat)


BACKEND = Backend(
    "chunked",
    forward,
    refuse,
    auto_skip,
    cost=(
        "time O(b·h·n_q·n_k·d) minus tiles outside the band, memory O(b·h·(n_q+n_k)·d) + "
        "one B_q×B_k tile; forward and backward, softmax/sum/relu, any mask and bias"
    ),
)
