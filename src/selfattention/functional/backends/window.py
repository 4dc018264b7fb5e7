"""Truncated (sliding-window) attention that computes only the key blocks inside the band.

Query i sees keys i - left ... i + right (top-left aligned; causal sets right = 0). Queries are cut
into blocks of B rows; block t can only reach key blocks t + lo ... t + hi, a span of m·B keys
that is the same for every block. Each group of query blocks therefore becomes one batched
matmul against a strided *view* of the keys (b, h, G, m·B, d), no Python loop over blocks:

    S_t = scale · Q_t K_span(t)ᵀ + bias_t      (b, h, G, B, m·B)
    O_t = normalize(S_t on band ∧ mask) V_span(t)

Inside a span the band is one fixed (B, m·B) pattern; only the first and last blocks also drop
keys outside 0 ... n_k - 1. Exact: equal to the math path with the window mask.
Time O(b·h·n_q·(left + right + 2B)·d), memory O(b·h·n·d) plus one group of tiles per thread.
Each thread writes its tiles into one preallocated buffer and softmax runs in place over it.
Backward adds each span's dK, dV back in m slices; for softmax over a plain band it uses the
weights the training forward kept (O(b·h·n·span), taken only when that is at most
KEEP_FACTOR × the bytes of q, k, v and out, in a buffer reused from call to call), otherwise it
recomputes them from the row statistic.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from selfattention.functional.backends import _blocks as blk
from selfattention.functional.backends import _window_native as _native
from selfattention.functional.backends import _window_ops as ops
from selfattention.functional.backends._window_ops import Workspace, pad_axis
from selfattention.functional.backends.base import Backend, Result
from selfattention.functional.call import AttentionCall
from selfattention.functional.normalize import Softmax

TILE_BYTES = 2**20  # scores of one group of blocks (measured best among 256 KB ... 4 MB)
SLICES = 4  # parts per thread: threads take them in turn, so a core lost to load costs less


def choose_block(left: int, right: int) -> int:
    """Query block size B: about an eighth of the window, a power of two in 16 ... 64.

    Smaller blocks waste fewer scores (a block computes left + right + 2B keys per query for
    the left + right + 1 it needs) but make smaller matmuls.
    """
    reach = max(left + right, 1)
    return int(min(64, max(16, 2 ** math.floor(math.log2(max(reach / 8, 1))))))


class WindowPlan:
    """Everything but the tensors with gradients: band, blocks, masks, normalisation.

    Layout: the (b, h) heads are laid end to end, each over ``nb`` blocks of B rows, so that
    block u of the flat sequence (U = b·h·nb blocks) has its key span at rows
    u·B - front ... u·B - front + span - 1 of the flat keys. The spans of many blocks, across
    heads, are then one strided view (G, span, d) that ``torch.bmm`` reads in place. A head's
    first and last spans run into its neighbour heads; those keys are outside 0 ... n_k - 1
    and masked. When n_q = n_k is a multiple of B, the inputs themselves are that flat layout
    ("direct": no copies; only the very first and last spans read from small padded buffers);
    otherwise q, k, v are copied once into padded flat buffers.
    """

    def __init__(self, call: AttentionCall, block: int | None = None):
        left, right = call.band()
        assert left is not None and right is not None, "window backend needs a finite band"
        self.norm = call.normalize
        self.scale = call.scale
        self.nq, self.nk = call.q_len, call.k_len
        self.b, self.h = call.q.shape[:2]
        dev = call.q.device
        B = self.block = block or choose_block(left, right)
        self.lo = -((left + B - 1) // B)  # first key block of query block t is t + lo
        self.m = (B - 1 + right) // B - self.lo + 1
        self.span = self.m * B
        self.front = -self.lo * B  # key slots in front of key 0
        nqb = -(-self.nq // B)
        self.nk_used = min(self.nk, (nqb + self.m - 1) * B - self.front)  # keys any span reaches
        self.nb = max(nqb, -(-(self.front + self.nk_used) // B))  # blocks per head
        self.units = self.b * self.h * self.nb
        # Direct layout: blocks [e0, U - e1) read their spans straight from the inputs.
        self.e0, self.e1 = -self.lo, self.m + self.lo
        direct_units = self.b * self.h * nqb
        self.direct = self.nq == self.nk and self.nq % B == 0 and direct_units > self.e0 + self.e1
        if self.direct:
            self.nb = nqb
            self.units = self.b * self.h * self.nb
        r = torch.arange(B, device=dev)[:, None]
        c = torch.arange(self.span, device=dev)[None, :]
        diff = self.lo * B + c - r  # key - query inside every span
        self.band = (diff >= -left) & (diff <= right)  # (B, span)
        t = torch.arange(self.nb, device=dev)[:, None]
        kpos = (t + self.lo) * B + c
        self.valid = (kpos >= 0) & (kpos < self.nk_used)  # (nb, span)
        self.edge = (~self.valid.all(-1)).tolist()
        self.rows_valid = (t * B + r.T < self.nq)[..., None]  # (nb, B, 1) real query rows
        # Without a user mask or bias, the band and the key range go into the matmul as an
        # additive 0/-inf term (baddbmm, free) instead of a masked_fill pass over the scores.
        norm = self.norm
        self.additive = call.mask is None and call.bias is None and norm.neg_inf_is_nothing
        dtype = blk.compute_dtype(call.q.dtype)
        neg = torch.tensor(float("-inf"), dtype=dtype, device=dev)
        zero = torch.zeros((), dtype=dtype, device=dev)
        self.zero = zero
        self.add_band = torch.where(self.band, zero, neg)  # (B, span)
        self.add_valid = torch.where(self.valid, zero, neg)[:, None, :]  # (nb, 1, span)
        if self.additive and norm.needs_count:  # keys allowed per row, (nb, B, 1)
            allowed = self.band & self.valid[:, None, :]
            self.count = allowed.sum(-1, keepdim=True, dtype=torch.int32).to(dtype)
        self.maybe_empty = not self.additive or self.nq > self.nk_used + left
        self.mask_tiles = None if call.mask is None else self.tiles(call.mask, False)
        self.group = max(1, min(self.units, TILE_BYTES // (B * self.span * 4)))
        # Softmax over an additive band (no mask, no bias tensor): one fused in-place pass.
        self.fast_softmax = self.additive and type(norm) is Softmax
        # Training keeps those weights (U, B, span) for backward instead of recomputing them
        # (one matmul and one exp pass fewer) when they take at most twice the bytes of q, k,
        # v and out together. Rows without keys (and padding rows past n_q, which may have
        # none) would keep NaN weights, so not then.
        weights = self.units * B * self.span
        self.can_keep = (
            self.fast_softmax
            and not self.maybe_empty
            and self.nb * B == self.nq
            and weights <= ops.KEEP_FACTOR * 4 * self.units * B * call.q.shape[-1]
        )
        self.kept: Tensor | None = None
        self.want_stat = call.need_stat  # the caller's; need_stat also covers backward's
        self.training = False  # set by ``forward`` below when a backward will follow
        self.need_stat = True

    # -- layout ------------------------------------------------------------------------------
    def tiles(self, x: Tensor, fill) -> Tensor:
        """(…, n_q, n_k)-broadcastable x -> view (B?, H?, nb, block, span) of each block's span."""
        x = x.reshape((1,) * (4 - x.ndim) + tuple(x.shape))
        B = self.block
        if x.shape[2] != 1:
            x = pad_axis(x, 2, 0, self.nb * B - self.nq, fill)
        if x.shape[3] != 1:
            x = pad_axis(x, 3, self.front, (self.nb + self.m) * B - self.front - self.nk, fill)
        s0, s1, sr, sc = x.stride()
        sr = sr if x.shape[2] != 1 else 0
        sc = sc if x.shape[3] != 1 else 0
        size = (x.shape[0], x.shape[1], self.nb, B, self.span)
        return x.as_strided(size, (s0, s1, B * (sr + sc), sr, sc), x.storage_offset())

    def key_source(self, k: Tensor) -> list[tuple[int, int, Tensor, int]]:
        """Buffers the spans are read from: [(u_start, u_stop, buffer (rows, d), row of u_start)].

        Block u's span is buffer rows row0 + (u - u_start)·B ... + span - 1.
        """
        B, U, d = self.block, self.units, k.shape[-1]
        if not self.direct:
            flat = k.new_zeros((U + self.m - 1) * B, d)
            heads = flat[: U * B].view(self.b, self.h, self.nb * B, d)
            heads[:, :, self.front : self.front + self.nk_used] = k[:, :, : self.nk_used]
            return [(0, U, flat, 0)]
        flat = k.contiguous().view(U * B, d)
        e0, e1 = self.e0, self.e1
        head = torch.cat(
            [flat.new_zeros(self.front, d), flat[: (e0 - 1) * B + self.span - self.front]]
        )
        tail_rows = flat[(U - e1) * B - self.front :]
        tail = torch.cat([tail_rows, flat.new_zeros(e1 * B + self.m * B - tail_rows.shape[0], d)])
        return [
            (0, e0, head, 0),
            (e0, U - e1, flat, e0 * B - self.front),
            (U - e1, U, tail, 0),
        ]

    def spans(self, source, u0: int, u1: int) -> Tensor:
        """Key spans of blocks u0 ... u1-1: a strided view (G, span, d), no copy."""
        for start, stop, buf, row0 in source:
            if start <= u0 < stop:
                assert u1 <= stop
                d = buf.shape[-1]
                offset = buf.storage_offset() + (row0 + (u0 - start) * self.block) * d
                return buf.as_strided((u1 - u0, self.span, d), (self.block * d, d, 1), offset)
        raise AssertionError("block outside the layout")  # pragma: no cover

    def unflat_keys(self, flat: Tensor) -> Tensor:
        """Gradient rows ((U + m - 1)·B, block u's span at u·B ...) -> (b, h, n_k, d)."""
        B = self.block
        if self.direct:
            rows = flat.view(-1, flat.shape[-1])[self.front : self.front + self.units * B]
            return rows.view(self.b, self.h, self.nk, -1)
        heads = flat[: self.units].reshape(self.b, self.h, self.nb * B, -1)
        out = heads[:, :, self.front : self.front + self.nk_used]
        return pad_axis(out, 2, 0, self.nk - self.nk_used, 0.0)

    def flat_queries(self, x: Tensor, fill=0.0) -> Tensor:
        """(b, h, n_q, d) -> flat (U, block, d), ``fill`` in rows past n_q."""
        if self.direct:
            return x.contiguous().view(self.units, self.block, -1)
        flat = x.new_empty((self.units * self.block, x.shape[-1]))
        heads = flat.view(self.b, self.h, self.nb * self.block, -1)
        heads[:, :, self.nq :] = fill
        heads[:, :, : self.nq] = x
        return flat.view(self.units, self.block, -1)

    def unflat_queries(self, flat: Tensor) -> Tensor:
        return flat.view(self.b, self.h, self.nb * self.block, -1)[:, :, : self.nq]

    def index(self, u0: int, u1: int, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(b, h, t) indices of blocks u0 ... u1-1 into a (B?, H?, nb, ...) tensor ``x``."""
        u = torch.arange(u0, u1, device=x.device)
        bi = u // (self.h * self.nb) if x.shape[0] != 1 else torch.zeros_like(u)
        hi = (u // self.nb) % self.h if x.shape[1] != 1 else torch.zeros_like(u)
        return bi, hi, u % self.nb

    def groups(self, start: int, stop: int):
        """Groups of at most ``group`` blocks that never straddle two key buffers."""
        cuts = sorted(
            {start, stop} | {c for c in (self.e0, self.units - self.e1) if start < c < stop}
        )
        if not self.direct:
            cuts = [start, stop]
        for a, b in itertools.pairwise(cuts):
            for u0 in range(a, b, self.group):
                yield u0, min(b, u0 + self.group)

    def edge_rows(self, u0: int, u1: int) -> Tensor | None:
        """Block-in-head index t of blocks u0 ... u1-1 if any of them meets the key ends."""
        t0, t1 = u0 % self.nb, (u1 - 1) % self.nb
        if u1 - u0 >= self.nb or t1 < t0 or any(self.edge[t0 : t1 + 1]):
            return torch.arange(u0, u1, device=self.band.device) % self.nb
        return None

    def scratch(self, q: Tensor) -> Tensor:
        """One thread's score buffer (group, B, span): every group's tile is written into it, so
        the scores are never reallocated and stay in the core's cache between the ops."""
        return q.new_empty(self.group, self.block, self.span)

    def scores(self, qs: Tensor, ks: Tensor, bias: Tensor | None, u0: int, u1: int, buf: Tensor):
        """Scaled scores (G, B, span) of blocks u0 ... u1-1 (written into ``buf``), what they
        may attend to, key counts.

        In the additive case the disallowed scores are already -inf and ``allowed`` is None.
        """
        edge = self.edge_rows(u0, u1)
        kt = ks.transpose(1, 2)
        s = buf[: u1 - u0]
        if self.additive:
            add = self.add_band if edge is None else self.add_band + self.add_valid[edge]
            torch.baddbmm(add, qs[u0:u1], kt, alpha=self.scale, out=s)
            count = None
            if self.norm.needs_count:
                count = self.count[torch.arange(u0, u1, device=s.device) % self.nb]
            return s, None, count
        allowed = self.band if edge is None else self.band & self.valid[edge, None]
        if self.mask_tiles is not None:
            allowed = allowed & self.mask_tiles[self.index(u0, u1, self.mask_tiles)]
        if bias is None:
            torch.baddbmm(self.zero, qs[u0:u1], kt, beta=0.0, alpha=self.scale, out=s)
        else:
            bias_g = bias[self.index(u0, u1, bias)]
            torch.baddbmm(bias_g, qs[u0:u1], kt, alpha=self.scale, out=s)
            allowed = allowed & ~torch.isneginf(bias_g)
        return s, allowed, None

    # -- forward / backward ------------------------------------------------------------------
    def forward(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None):
        qs = self.flat_queries(q)
        kf, vf = self.key_source(k), self.key_source(v)
        out = q.new_empty(self.units, self.block, v.shape[-1])
        stat = q.new_empty(self.units, self.block, 1)
        norm = self.norm
        keep = self.can_keep and self.training
        # Kept weights make the statistic needless for backward: computed only when asked.
        need_stat = self.want_stat or (self.need_stat and not keep)
        self.kept = Workspace.take((self.units, self.block, self.span), q) if keep else None

        def part(bounds: tuple[int, int]) -> None:  # blocks write disjoint rows: no race
            buf = self.scratch(q)
            for u0, u1 in self.groups(*bounds):
                tile = buf if self.kept is None else self.kept[u0:u1]
                s, allowed, count = self.scores(qs, self.spans(kf, u0, u1), bias, u0, u1, tile)
                vs = self.spans(vf, u0, u1)
                st = stat[u0:u1] if need_stat else None
                if self.fast_softmax:
                    norm.whole_in_place(s, vs, out[u0:u1], st, self.maybe_empty)
                    continue
                rows = None
                if norm.needs_rows:  # rows past n_q are padding, not rows to check
                    rows = self.rows_valid[torch.arange(u0, u1, device=q.device) % self.nb]
                norm.whole(
                    s, allowed, vs, out[u0:u1], st,
                    maybe_empty=self.maybe_empty, count=count, rows=rows,
                )  # fmt: skip

        workers = blk.workers()
        blk.parallel(part, blk.split(0, self.units, SLICES * workers), workers)
        return self.unflat_queries(out), self.unflat_queries(stat)

    def backward(self, q, k, v, bias, out, stat, dout, need_bias, delta):
        B, m = self.block, self.m
        qs = self.flat_queries(q)
        kf, vf = self.key_source(k), self.key_source(v)
        do = self.flat_queries(dout)
        # Rows past the end get a stat that zeroes their recomputed weights.
        st = self.flat_queries(stat, self.norm.empty_stat)
        delta = self.flat_queries(delta)
        dq = torch.empty_like(qs)
        rows = (self.units + m - 1) * B
        dk = q.new_zeros(rows, k.shape[-1]).view(-1, B, k.shape[-1])
        dv = q.new_zeros(rows, v.shape[-1]).view(-1, B, v.shape[-1])
        dbias = torch.zeros(bias.shape, dtype=bias.dtype, device=bias.device) if need_bias else None
        kept, self.kept = self.kept, None  # backward runs once: hand them back after it

        def part(bounds: tuple[int, int]) -> None:
            buf = self.scratch(q)
            # each span's dK, dV before they are added back in m slices
            dk_buf = q.new_empty(self.group, self.span, k.shape[-1])
            dv_buf = q.new_empty(self.group, self.span, v.shape[-1])
            for u0, u1 in self.groups(*bounds):
                G = u1 - u0
                ks, vs = self.spans(kf, u0, u1), self.spans(vf, u0, u1)
                if kept is None:
                    s, allowed, _ = self.scores(qs, ks, bias, u0, u1, buf)
                    p, ds = self.norm.grads(s, allowed, st[u0:u1], delta[u0:u1], do[u0:u1], vs)
                else:  # softmax: ds = p ∘ (dO Vᵀ - δ)
                    p = kept[u0:u1]
                    ds = torch.bmm(do[u0:u1], vs.transpose(1, 2), out=buf[:G])
                    ds.sub_(delta[u0:u1]).mul_(p)
                dv_c = torch.bmm(p.transpose(1, 2), do[u0:u1], out=dv_buf[:G]).view(G, m, B, -1)
                dk_c = torch.bmm(ds.transpose(1, 2), qs[u0:u1], out=dk_buf[:G]).view(G, m, B, -1)
                torch.baddbmm(dq[u0:u1], ds, ks, beta=0.0, alpha=self.scale, out=dq[u0:u1])
                for j in range(m):  # slice j of block u's span is key block u + j
                    dv[u0 + j : u1 + j] += dv_c[:, j]
                    dk[u0 + j : u1 + j].add_(dk_c[:, j], alpha=self.scale)
                if dbias is not None:
                    dbias.index_put_(self.index(u0, u1, dbias), ds, accumulate=True)

        # Part i adds into key blocks [start_i, stop_i + m - 1): parts of the same parity never
        # overlap when each part has at least m blocks, so evens run together, then odds.
        workers = blk.workers()
        n_parts = 1 if dbias is not None else 2 * SLICES * workers
        parts = blk.split(0, self.units, n_parts)
        if any(b - a < m for a, b in parts):
            parts = [(0, self.units)]
        blk.parallel(part, parts[0::2], workers)
        blk.parallel(part, parts[1::2], workers)
        if kept is not None:
            Workspace.give(kept)
        return self.unflat_queries(dq), self.unflat_keys(dk), self.unflat_keys(dv), dbias


def refuse(call: AttentionCall) -> str | None:
    if call.grid is not None:
        return "a 2-D neighbourhood is not a 1-D band (backend='tiles' serves it)"
    reason = blk.common_refusal(call, "window")
    if reason:
        return reason
    left, right = call.band()
    if left is None or right is None:
        return (
            f"needs a window bounded on both sides, got (left, right) = ({left}, {right}) "
            "after causal; use backend='chunked', which skips the blocks outside the band"
        )
    return None


def auto_skip(call: AttentionCall) -> str | None:
    if _native.refuse(call) is None:
        return None  # the compiled kernel beats chunked on any bounded band (2.5-3x at n/2)
    left, right = call.band()
    reach = left + right + 2 * choose_block(left, right)
    if reach * 2 > call.k_len:
        return (
            f"the window (left={left}, right={right}) covers most of the {call.k_len} keys; "
            "a dense kernel is faster"
        )
    return None


def path(call: AttentionCall) -> str:
    """Which implementation serves ``call``: the compiled kernel, or pure torch and why."""
    why = _native.refuse(call)
    return "compiled kernel (native/window.cpp)" if why is None else f"pure torch: {why}"


def forward(call: AttentionCall) -> Result:
    q, k, v, bias = call.q, call.k, call.v, call.bias
    dtype = blk.compute_dtype(q.dtype)
    lib = _native.kernel_for(call)
    plan = _native.NativeWindow(call, lib) if lib is not None else WindowPlan(call)
    plan.training = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (q, k, v, bias)
    )
    bias_tiles = None if bias is None or lib is not None else plan.tiles(bias.to(dtype), 0.0)
    out, stat = blk.run(plan, q.to(dtype), k.to(dtype), v.to(dtype), bias_tiles, call.need_stat)
    return Result(out.to(v.dtype), None, stat)


BACKEND = Backend(
    "window",
    forward,
    refuse,
    auto_skip,
    path=path,
    cost=(
        "time O(b·h·n_q·(left+right+2B)·d), memory O(b·h·(n_q+n_k)·d) + one group of "
        "tiles; forward and backward, softmax/sum/relu, any mask and bias"
    ),
)
