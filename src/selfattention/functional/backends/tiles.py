"""2-D neighbourhood attention over an H × W grid: only the patches around each query tile.

Serves calls that carry a ``grid`` (``masks.Neighborhood``, from ``neighborhood_attention``):
patch p sees the k × k patches around it. The kernel never forms the (n, n) mask: the grid is
cut into t × t tiles of queries, and a tile can only reach the (t + k - 1) × (t + k - 1) patches
around it, so each tile is one small batched matmul against those keys. Exact (equal to the math
path with the neighbourhood mask), with the same normalisation objects (fold, finish, tile
gradients) and recomputing backward as ``chunked`` and ``window``.

Time O(b·h·n·(t + k - 1)²·d) instead of O(b·h·n²·d), memory O(b·h·n·d) plus one group of tiles.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from selfattention.functional.backends import _blocks as blk
from selfattention.functional.backends.base import Backend, Result
from selfattention.functional.call import AttentionCall
from selfattention.functional.masks import neighborhood_start as _start
from selfattention.functional.normalize import RowState

TILE_BYTES = 8 * 2**20


def default_tile(kernel_size: int) -> int:
    """Query tile side t: k + 1, at least 4."""
    return max(4, kernel_size + 1)


class NeighborhoodPlan:
    """Tiles of queries, the keys each tile may reach, and which pairs are allowed."""

    def __init__(self, call: AttentionCall):
        grid = call.grid
        height, width, kernel_size, tile = grid.height, grid.width, grid.kernel_size, grid.tile
        self.norm, self.scale, self.n = call.normalize, call.scale, grid.size
        bh = call.q.shape[0] * call.q.shape[1]
        device = call.q.device
        t_r = min(height, tile or default_tile(kernel_size))
        t_c = min(width, tile or default_tile(kernel_size))
        s_r, s_c = min(height, t_r + kernel_size - 1), min(width, t_c + kernel_size - 1)
        qidx, kidx = [], []
        for r in range(0, height, t_r):
            for c in range(0, width, t_c):
                rows = torch.arange(r, min(r + t_r, height), device=device)
                cols = torch.arange(c, min(c + t_c, width), device=device)
                q = (rows[:, None] * width + cols[None, :]).flatten()
                # Keys: the s_r × s_c patch window that covers every query's neighbourhood.
                kr = min(int(_start(torch.tensor(r), height, kernel_size)), height - s_r)
                kc = min(int(_start(torch.tensor(c), width, kernel_size)), width - s_c)
                k = (
                    torch.arange(kr, kr + s_r, device=device)[:, None] * width
                    + torch.arange(kc, kc + s_c, device=device)[None, :]
                ).flatten()
                qidx.append(torch.cat([q, q.new_full((t_r * t_c - q.numel(),), self.n)]))
                kidx.append(k)
        self.qidx = torch.stack(qidx)  # (T, Rq); index n = a dummy row past the end
        self.kidx = torch.stack(kidx)  # (T, Rk)
        self.allowed = grid.sees(self.qidx, self.kidx)
        self.allowed &= (self.qidx < self.n)[..., None]
        tiles = self.qidx.shape[0]
        per_tile = bh * self.qidx.shape[1] * self.kidx.shape[1] * 4
        self.group = max(1, min(tiles, TILE_BYTES // per_tile))

    def groups(self):
        for t0 in range(0, self.qidx.shape[0], self.group):
            yield t0, min(self.qidx.shape[0], t0 + self.group)

    def gather_q(self, x: Tensor, t0: int, t1: int) -> Tensor:
        """(b, h, n + 1, d) -> (b, h, G, Rq, d)."""
        return x[:, :, self.qidx[t0:t1]]

    def forward(self, q: Tensor, k: Tensor, v: Tensor, bias: None):
        b, h, n, _ = q.shape
        qs = torch.nn.functional.pad(q * self.scale, (0, 0, 0, 1))  # row n: dummy query
        out = q.new_zeros(b, h, n + 1, v.shape[-1])
        stat = q.new_full((b, h, n + 1, 1), self.norm.empty_stat)
        for t0, t1 in self.groups():
            kidx = self.kidx[t0:t1]
            s = self.gather_q(qs, t0, t1) @ k[:, :, kidx].transpose(-1, -2)
            state = RowState()  # fold + finish (not ``whole``): the dummy rows have no key
            self.norm.fold(state, s, self.allowed[t0:t1], v[:, :, kidx])
            o = torch.empty_like(state.acc)
            st = o.new_empty((*o.shape[:-1], 1))
            self.norm.finish(state, o, st)
            flat = self.qidx[t0:t1].flatten()
            out[:, :, flat] = o.flatten(2, 3)
            stat[:, :, flat] = st.flatten(2, 3)
        return out[:, :, :n], stat[:, :, :n]

    def backward(self, q, k, v, bias, out, stat, dout, need_bias, delta):
        n = q.shape[2]
        pad = (0, 0, 0, 1)
        qs = torch.nn.functional.pad(q * self.scale, pad)
        do = torch.nn.functional.pad(dout, pad)
        st = torch.nn.functional.pad(stat, pad, value=self.norm.empty_stat)
        delta = torch.nn.functional.pad(delta, pad)
        dq = torch.zeros_like(qs)
        dk, dv = torch.zeros_like(k), torch.zeros_like(v)
        for t0, t1 in self.groups():
            qi, ki = self.qidx[t0:t1], self.kidx[t0:t1]
            qg, dog, kg, vg = qs[:, :, qi], do[:, :, qi], k[:, :, ki], v[:, :, ki]
            s = qg @ kg.transpose(-1, -2)
            p, ds = self.norm.grads(s, self.allowed[t0:t1], st[:, :, qi], delta[:, :, qi], dog, vg)
            flat_k = ki.flatten()
            dv.index_add_(2, flat_k, (p.transpose(-1, -2) @ dog).flatten(2, 3))
            dk.index_add_(2, flat_k, (ds.transpose(-1, -2) @ qg).flatten(2, 3))
            dq.index_add_(2, qi.flatten(), (ds @ kg).flatten(2, 3))
        return dq[:, :, :n].mul_(self.scale), dk, dv, None


def refuse(call: AttentionCall) -> str | None:
    if call.grid is None:
        return "serves 2-D neighbourhoods only (neighborhood_attention), not a 1-D call"
    if not call.normalize.blockwise:
        return (
            "tiles supports normalize 'softmax', 'sum', 'relu' only; a user normalize callable "
            "needs whole rows (use backend='math')"
        )
    if call.mask is not None or call.bias is not None or call.causal or call.window is not None:
        return "tiles serves the neighbourhood alone, without a mask, bias, causal or window"
    if call.dropout_p > 0.0:
        return "tiles does not implement dropout on the weights (use backend='math')"
    return None


def auto_skip(call: AttentionCall) -> str | None:
    k, n = call.grid.kernel_size, call.grid.size
    if k * k * 4 >= n:
        return (
            f"the {k}×{k} neighbourhood covers a quarter or more of the {n} "
            "patches; the dense math path is faster"
        )
    return None


def forward(call: AttentionCall) -> Result:
    q, k, v = call.q, call.k, call.v
    dtype = blk.compute_dtype(q.dtype)
    plan = NeighborhoodPlan(call)
    out, stat = blk.run(plan, q.to(dtype), k.to(dtype), v.to(dtype), None, call.need_stat)
    return Result(out.to(v.dtype), None, stat)


def tile_cost(grid: tuple[int, int], kernel_size: int, tile: int | None = None) -> float:
    """Keys scored per query by the tile kernel, relative to the k² it needs."""
    t = tile or default_tile(kernel_size)
    span = [min(g, min(g, t) + kernel_size - 1) for g in grid]
    return math.prod(span) / kernel_size**2


BACKEND = Backend(
    "tiles",
    forward,
    refuse,
    auto_skip,
    cost=(
        "2-D neighbourhoods: time O(b·h·n·(t+k-1)²·d), memory O(b·h·n·d) + one group of "
        "tiles; forward and backward, softmax/sum/relu"
    ),
)
