"""Truncated (sliding-window) attention that computes only the key blocks inside the band.

Query i sees keys i - left ... i + right (top-left aligned; causal sets right = 0). Queries are cut
into blocks of B rows; block t can only reach key blocks t + lo ... t + hi, a span of m·B keys
that is the same for every block. Each group of query blocks therefore becomes one batched
matmul against a strided *view* of the keys (b, h, G, m·B, d), no Python loop over blocks:

    S_t = scale · Q_t K_span(t)ᵀ + bias_t      (b, h, G, B, m·B)
    O_t = normalize(S_t on band ∧ mask) V_span(t)

Inside a span the band is one fixed (B, m·B) pattern; only the first and last blocks also drop
keys outside 0 ... n_k - 1. Exact: equal to the math path with the window mask.
Time O(b·h·n_q·(left + right + 2B)·d), memory O(b·h·n·d) plus one group of tiles;
backward recomputes the tiles (no stored weights) and adds each span's dK, dV back in m slices.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from selfattention.functional.backends import Backend, register
from selfattention.functional.backends import _blocks as blk
from selfattention.functional.call import AttentionCall

TILE_BYTES = 8 * 2**20  # scores of one group of blocks; a few MiB keeps them in cache


def pad_axis(x: Tensor, axis: int, before: int, after: int, fill) -> Tensor:
    """Pad (positive) or crop (negative) ``x`` along ``axis``; bool tensors too."""
    n = x.shape[axis]
    start, stop = max(0, -before), n - max(0, -after)
    x = x.narrow(axis, start, max(0, stop - start))
    before, after = max(0, before), max(0, after)
    if before == 0 and after == 0:
        return x
    shape = list(x.shape)
    shape[axis] = before + x.shape[axis] + after
    out = torch.full(shape, fill, dtype=x.dtype, device=x.device)
    out.narrow(axis, before, x.shape[axis]).copy_(x)
    return out


def choose_block(left: int, right: int) -> int:
    """Query block size: about the window's reach, a power of two in 16 ... 128."""
    reach = max(left, right, 1)
    return int(min(128, max(16, 2 ** math.floor(math.log2(reach)))))


class WindowPlan:
    """Everything but the tensors with gradients: band, blocks, masks, normalisation."""

    def __init__(self, call: AttentionCall, block: int | None = None):
        left, right = call.band()
        assert left is not None and right is not None, "window backend needs a finite band"
        self.kind = call.normalize
        self.scale = call.scale
        self.left, self.right = left, right
        self.nq, self.nk = call.q_len, call.k_len
        b = self.block = block or choose_block(left, right)
        self.lo = -((left + b - 1) // b)  # first key block of query block t is t + lo
        hi = (b - 1 + right) // b
        self.m = hi - self.lo + 1
        self.span = self.m * b
        self.nqb = -(-self.nq // b)
        self.front = -self.lo * b  # keys padded in front
        self.kpad_len = (self.nqb + self.m - 1) * b
        r = torch.arange(b, device=call.q.device)[:, None]
        c = torch.arange(self.span, device=call.q.device)[None, :]
        diff = self.lo * b + c - r  # key - query inside every span
        self.band = (diff >= -left) & (diff <= right)  # (B, span)
        # Blocks whose span runs over the ends of the keys need a validity mask.
        t = torch.arange(self.nqb, device=call.q.device)[:, None]
        kpos = (t + self.lo) * b + torch.arange(self.span, device=call.q.device)[None, :]
        valid = (kpos >= 0) & (kpos < self.nk)  # (nqb, span)
        self.edge = ~valid.all(-1)
        self.valid = valid[:, None, :]  # (nqb, 1, span)
        self.mask_tiles = None if call.mask is None else self.tiles(call.mask, False)
        tile = call.q.shape[0] * call.q.shape[1] * b * self.span * 4
        self.group = max(1, min(self.nqb, TILE_BYTES // tile))

    # -- views -------------------------------------------------------------------------------
    def tiles(self, x: Tensor, fill) -> Tensor:
        """(…, n_q, n_k)-broadcastable x -> view (B?, H?, nqb, block, span) of each block's span."""
        x = x.reshape((1,) * (4 - x.ndim) + tuple(x.shape))
        b = self.block
        if x.shape[2] != 1:
            x = pad_axis(x, 2, 0, self.nqb * b - self.nq, fill)
        if x.shape[3] != 1:
            x = pad_axis(x, 3, self.front, self.kpad_len - self.front - self.nk, fill)
        s0, s1, sr, sc = x.stride()
        sr = sr if x.shape[2] != 1 else 0
        sc = sc if x.shape[3] != 1 else 0
        size = (x.shape[0], x.shape[1], self.nqb, b, self.span)
        return x.as_strided(size, (s0, s1, b * (sr + sc), sr, sc), x.storage_offset())

    def keys(self, k: Tensor) -> Tensor:
        """Keys (or values) padded/cropped to the spans' coordinates: (b, h, kpad_len, d)."""
        return pad_axis(k, 2, self.front, self.kpad_len - self.front - self.nk, 0.0).contiguous()

    def span_view(self, kp: Tensor, g0: int, g1: int) -> Tensor:
        """Spans of query blocks g0 ... g1-1: a view (b, h, G, span, d), no copy."""
        bb, h, _, d = kp.shape
        s = kp.stride()
        return kp.as_strided(
            (bb, h, g1 - g0, self.span, d),
            (s[0], s[1], self.block * s[2], s[2], s[3]),
            kp.storage_offset() + g0 * self.block * s[2],
        )

    def queries(self, x: Tensor) -> Tensor:
        """(b, h, n_q, d) -> (b, h, nqb, block, d), zero rows past the end."""
        x = pad_axis(x, 2, 0, self.nqb * self.block - self.nq, 0.0)
        return x.reshape(x.shape[0], x.shape[1], self.nqb, self.block, x.shape[-1])

    def allowed(self, g0: int, g1: int, bias_g: Tensor | None) -> Tensor:
        allowed = self.band
        if bool(self.edge[g0:g1].any()):
            allowed = allowed & self.valid[g0:g1]
        if self.mask_tiles is not None:
            allowed = allowed & self.mask_tiles[:, :, g0:g1]
        if bias_g is not None:
            allowed = allowed & ~torch.isneginf(bias_g)
        return allowed

    def scores(self, qs_g: Tensor, ks: Tensor, bias: Tensor | None, g0: int, g1: int):
        s = qs_g @ ks.transpose(-1, -2)
        bias_g = None
        if bias is not None:
            bias_g = bias[:, :, g0:g1]
            s.add_(bias_g)
        return s, self.allowed(g0, g1, bias_g)

    def groups(self):
        for g0 in range(0, self.nqb, self.group):
            yield g0, min(self.nqb, g0 + self.group)

    # -- forward / backward ------------------------------------------------------------------
    def forward(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None):
        bb, h = q.shape[:2]
        qs = self.queries(q * self.scale)
        kp, vp = self.keys(k), self.keys(v)
        out = q.new_empty(bb, h, self.nqb, self.block, v.shape[-1])
        stat = q.new_empty(bb, h, self.nqb, self.block, 1)
        for g0, g1 in self.groups():
            s, allowed = self.scores(qs[:, :, g0:g1], self.span_view(kp, g0, g1), bias, g0, g1)
            state = blk.RowState(self.kind)
            blk.fold(state, s, allowed, self.span_view(vp, g0, g1))
            if self.kind == "sum":
                rows = min((g1 - g0) * self.block, self.nq - g0 * self.block)
                blk.check_sum(
                    state.l.reshape(bb, h, -1)[:, :, :rows],
                    state.count.reshape(bb, h, -1)[:, :, :rows],
                )
            out[:, :, g0:g1], stat[:, :, g0:g1] = blk.finish(state)
        n = self.nqb * self.block
        out = out.reshape(bb, h, n, -1)[:, :, : self.nq]
        stat = stat.reshape(bb, h, n, 1)[:, :, : self.nq]
        return out.contiguous(), stat.contiguous()

    def backward(self, q, k, v, bias, out, stat, dout, need_bias):
        bb, h, _, d = q.shape
        e = v.shape[-1]
        b, m = self.block, self.m
        qs = self.queries(q * self.scale)
        kp, vp = self.keys(k), self.keys(v)
        do = self.queries(dout)
        # Rows past the end get a stat that zeroes their recomputed weights.
        st = pad_axis(stat, 2, 0, self.nqb * b - self.nq, blk.empty_stat(self.kind))
        st = st.view(bb, h, self.nqb, b, 1)
        delta = self.queries((dout * out).sum(-1, keepdim=True))
        dq = torch.empty_like(qs)
        dk_pad = torch.zeros_like(kp).view(bb, h, -1, b, d)
        dv_pad = torch.zeros_like(vp).view(bb, h, -1, b, e)
        dbias = torch.zeros_like(bias) if need_bias else None
        for g0, g1 in self.groups():
            G = g1 - g0
            ks, vs = self.span_view(kp, g0, g1), self.span_view(vp, g0, g1)
            qs_g, do_g = qs[:, :, g0:g1], do[:, :, g0:g1]
            s, allowed = self.scores(qs_g, ks, bias, g0, g1)
            p, ds = blk.tile_grads(
                self.kind, s, allowed, st[:, :, g0:g1], delta[:, :, g0:g1], do_g, vs
            )
            dv_c = (p.transpose(-1, -2) @ do_g).view(bb, h, G, m, b, e)
            dk_c = (ds.transpose(-1, -2) @ qs_g).view(bb, h, G, m, b, d)
            dq[:, :, g0:g1] = (ds @ ks).mul_(self.scale)
            for j in range(m):  # span slice j of block t is key block t + j (padded coords)
                dv_pad[:, :, g0 + j : g1 + j] += dv_c[:, :, :, j]
                dk_pad[:, :, g0 + j : g1 + j] += dk_c[:, :, :, j]
            if dbias is not None:
                dbias[:, :, g0:g1] = blk.reduce_to(ds, dbias[:, :, g0:g1].shape)
        n = self.nqb * b
        dq = dq.reshape(bb, h, n, d)[:, :, : self.nq]
        dk = pad_axis(
            dk_pad.reshape(bb, h, -1, d), 2, -self.front, self.nk - self.kpad_len + self.front, 0.0
        )
        dv = pad_axis(
            dv_pad.reshape(bb, h, -1, e), 2, -self.front, self.nk - self.kpad_len + self.front, 0.0
        )
        return dq, dk, dv, dbias


def refuse(call: AttentionCall) -> str | None:
    reason = common_refusal(call, "window")
    if reason:
        return reason
    left, right = call.band()
    if left is None or right is None:
        return (
            f"needs a window bounded on both sides, got (left, right) = ({left}, {right}) "
            "after causal; use backend='chunked', which skips the blocks outside the band"
        )
    return None


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


def auto_skip(call: AttentionCall) -> str | None:
    left, right = call.band()
    reach = left + right + 2 * choose_block(left, right)
    if reach * 2 > call.k_len:
        return (
            f"the window (left={left}, right={right}) covers most of the {call.k_len} keys; "
            "a dense kernel is faster"
        )
    return None


def forward(call: AttentionCall) -> tuple[Tensor, None]:
    q, k, v, bias = call.q, call.k, call.v, call.bias
    dtype = blk.compute_dtype(q.dtype)
    plan = WindowPlan(call)
    bias_tiles = None if bias is None else plan.tiles(bias.to(dtype), 0.0)
    out = blk.run(plan, q.to(dtype), k.to(dtype), v.to(dtype), bias_tiles)
    return out.to(v.dtype), None


register(
    Backend(
        "window",
        forward,
        refuse,
        auto_skip,
        cost=(
            "time O(b·h·n_q·(left+right+2B)·d), memory O(b·h·(n_q+n_k)·d) + one group of "
            "tiles; forward and backward, softmax/sum/relu, any mask and bias"
        ),
    ),
    auto_rank=0,
)
