"""2-D neighbourhood attention over an H × W grid of patches (images as many vectors).

Patch (r, c) attends to the k × k patches around it. As in neighbourhood attention (NATTEN),
the neighbourhood is shifted inward at the borders so that every patch sees exactly k × k keys:

    rows    r0(r) = clamp(r - k // 2, 0, H - k) ... r0(r) + k - 1      (columns likewise)

Positions are flattened row-major (p = r·W + c), as a ViT flattens patches.
``neighborhood_mask`` builds this as a bool (n, n) mask for the math path; the kernel behind
``neighborhood_attention`` never forms it: the grid is cut into t × t tiles of queries, and a tile
can only reach the (t + k - 1) × (t + k - 1) patches around it, so each tile is one small
batched matmul against those keys. Time O(b·h·n·(t + k - 1)²·d) instead of O(b·h·n²·d), memory
O(b·h·n·d) plus one group of tiles; exact (equal to the math path with the mask), with the same
online row statistics and recomputing backward as the ``chunked`` and ``window`` backends.

Dispatch works like the 1-D registry, with two paths: "tiles" (the kernel above) and "math" (dense
with the mask, the ground truth). ``tiles`` refuses ``return_weights`` and user normalize
callables; ``backend="auto"`` also passes it over when a k × k neighbourhood covers a quarter of
the grid or more (the dense matmul is then faster). ``explain_neighborhood_dispatch`` returns the
choice and every refusal as a ``Dispatch``, as ``explain_dispatch`` does for ``attention``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from selfattention.functional.backends import REGISTRY, Dispatch
from selfattention.functional.backends import _blocks as blk
from selfattention.functional.call import check_backend, make_call

__all__ = [
    "BACKENDS",
    "check_grid",
    "choose_neighborhood_backend",
    "explain_neighborhood_dispatch",
    "neighborhood_attention",
    "neighborhood_mask",
    "neighborhood_start",
]

TILE_BYTES = 8 * 2**20


def check_grid(grid, kernel_size: int) -> tuple[int, int]:
    """(H, W) as positive ints with 1 <= kernel_size <= min(H, W); raises ValueError otherwise."""
    if (
        not isinstance(grid, tuple | list)
        or len(grid) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in grid)
    ):
        raise ValueError(f"grid must be a pair of positive ints (height, width), got {grid!r}")
    height, width = grid
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive int, got {kernel_size!r}")
    if kernel_size > min(height, width):
        raise ValueError(
            f"kernel_size={kernel_size} must be <= both grid sides, got grid=({height}, {width})"
        )
    return height, width


def neighborhood_start(pos: Tensor, size: int, kernel_size: int) -> Tensor:
    """First row (or column) of each position's neighbourhood: clamp(p - k//2, 0, size - k)."""
    return (pos - kernel_size // 2).clamp(0, size - kernel_size)


def _sees(qpos: Tensor, kpos: Tensor, width: int, grid, kernel_size: int) -> Tensor:
    """Bool (..., Rq, Rk): may the flattened query positions see the key positions?"""
    height, width = grid
    qr, qc = qpos // width, qpos % width
    kr, kc = kpos // width, kpos % width
    r0 = neighborhood_start(qr, height, kernel_size)[..., :, None]
    c0 = neighborhood_start(qc, width, kernel_size)[..., :, None]
    kr, kc = kr[..., None, :], kc[..., None, :]
    return (kr >= r0) & (kr < r0 + kernel_size) & (kc >= c0) & (kc < c0 + kernel_size)


def neighborhood_mask(height: int, width: int, kernel_size: int, *, device=None) -> Tensor:
    """(H·W, H·W) bool mask, True where patch i (row-major) may attend to patch j."""
    height, width = check_grid((height, width), kernel_size)
    pos = torch.arange(height * width, device=device)
    return _sees(pos, pos, width, (height, width), kernel_size)


class NeighborhoodPlan:
    """Tiles of queries, the keys each tile may reach, and which pairs are allowed."""

    def __init__(self, grid, kernel_size: int, kind: str, scale: float, bh: int, device, tile=None):
        height, width = grid
        self.kind, self.scale, self.n = kind, scale, height * width
        t_r = min(height, tile or max(4, kernel_size + 1))
        t_c = min(width, tile or max(4, kernel_size + 1))
        s_r, s_c = min(height, t_r + kernel_size - 1), min(width, t_c + kernel_size - 1)
        qidx, kidx = [], []
        for r in range(0, height, t_r):
            for c in range(0, width, t_c):
                rows = torch.arange(r, min(r + t_r, height), device=device)
                cols = torch.arange(c, min(c + t_c, width), device=device)
                q = (rows[:, None] * width + cols[None, :]).flatten()
                # Keys: the s_r × s_c patch window that covers every query's neighbourhood.
                kr = min(
                    int(neighborhood_start(torch.tensor(r), height, kernel_size)), height - s_r
                )
                kc = min(int(neighborhood_start(torch.tensor(c), width, kernel_size)), width - s_c)
                k = (
                    torch.arange(kr, kr + s_r, device=device)[:, None] * width
                    + torch.arange(kc, kc + s_c, device=device)[None, :]
                ).flatten()
                qidx.append(torch.cat([q, q.new_full((t_r * t_c - q.numel(),), self.n)]))
                kidx.append(k)
        self.qidx = torch.stack(qidx)  # (T, Rq); index n = a dummy row past the end
        self.kidx = torch.stack(kidx)  # (T, Rk)
        self.allowed = _sees(self.qidx, self.kidx, width, grid, kernel_size)
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
        stat = q.new_full((b, h, n + 1, 1), blk.empty_stat(self.kind))
        for t0, t1 in self.groups():
            kidx = self.kidx[t0:t1]
            s = self.gather_q(qs, t0, t1) @ k[:, :, kidx].transpose(-1, -2)
            state = blk.RowState(self.kind)
            allowed = self.allowed[t0:t1]
            blk.fold(state, s, allowed, v[:, :, kidx])
            if self.kind == "sum":
                blk.check_sum(state.l, state.count)
            o = torch.empty_like(state.acc)
            st = o.new_empty((*o.shape[:-1], 1))
            blk.finish(state, o, st)
            flat = self.qidx[t0:t1].flatten()
            out[:, :, flat] = o.flatten(2, 3)
            stat[:, :, flat] = st.flatten(2, 3)
        return out[:, :, :n], stat[:, :, :n]

    def backward(self, q, k, v, bias, out, stat, dout, need_bias):
        n = q.shape[2]
        pad = (0, 0, 0, 1)
        qs = torch.nn.functional.pad(q * self.scale, pad)
        do = torch.nn.functional.pad(dout, pad)
        st = torch.nn.functional.pad(stat, pad, value=blk.empty_stat(self.kind))
        delta = torch.nn.functional.pad((dout * out).sum(-1, keepdim=True), pad)
        dq = torch.zeros_like(qs)
        dk, dv = torch.zeros_like(k), torch.zeros_like(v)
        for t0, t1 in self.groups():
            qi, ki = self.qidx[t0:t1], self.kidx[t0:t1]
            qg, dog, kg, vg = qs[:, :, qi], do[:, :, qi], k[:, :, ki], v[:, :, ki]
            s = qg @ kg.transpose(-1, -2)
            p, ds = blk.tile_grads(
                self.kind, s, self.allowed[t0:t1], st[:, :, qi], delta[:, :, qi], dog, vg
            )
            flat_k = ki.flatten()
            dv.index_add_(2, flat_k, (p.transpose(-1, -2) @ dog).flatten(2, 3))
            dk.index_add_(2, flat_k, (ds.transpose(-1, -2) @ qg).flatten(2, 3))
            dq.index_add_(2, qi.flatten(), (ds @ kg).flatten(2, 3))
        return dq[:, :, :n].mul_(self.scale), dk, dv, None


BACKENDS = ("tiles", "math")  # auto tries them in this order; math serves every call


def _tiles_refusal(normalize, return_weights: bool) -> str | None:
    if return_weights:
        return "tiles never forms the weights (use backend='math' to get them)"
    if not isinstance(normalize, str):
        return (
            "tiles supports normalize 'softmax', 'sum', 'relu' only; a user normalize callable "
            "needs whole rows (use backend='math')"
        )
    return None


def _tiles_auto_skip(n: int, kernel_size: int) -> str | None:
    if kernel_size * kernel_size * 4 >= n:
        return (
            f"the {kernel_size}×{kernel_size} neighbourhood covers a quarter or more of the {n} "
            "patches; the dense math path is faster"
        )
    return None


def choose_neighborhood_backend(
    n: int, kernel_size: int, normalize, return_weights: bool, backend: str = "auto"
) -> Dispatch:
    """Pick "tiles" or "math" for a grid of n patches; an explicit name that cannot serve raises.

    Same rules as ``backends.choose``: refusals rule a path out, auto-skips only steer "auto".
    """
    check_backend(backend, BACKENDS)
    if backend != "auto":
        why = _tiles_refusal(normalize, return_weights) if backend == "tiles" else None
        if why is not None:
            raise ValueError(f"backend={backend!r} cannot serve this call: {why}")
        return Dispatch(backend)
    why = _tiles_refusal(normalize, return_weights) or _tiles_auto_skip(n, kernel_size)
    return Dispatch("math", {"tiles": why}) if why is not None else Dispatch("tiles")


def _check_qk(q: Tensor, k: Tensor, grid: tuple[int, int]) -> int:
    n = grid[0] * grid[1]
    if q.ndim != 4 or q.shape[-2] != n or k.ndim != 4 or k.shape[-2] != n:
        raise ValueError(
            f"q and k must be (batch, heads, H·W={n}, head_dim) for grid {tuple(grid)}, got "
            f"{tuple(q.shape)} and {tuple(k.shape)}"
        )
    return n


def explain_neighborhood_dispatch(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    grid: tuple[int, int],
    kernel_size: int,
    *,
    scale: float | None = None,
    normalize: str = "softmax",
    return_weights: bool = False,
    backend: str = "auto",
    tile: int | None = None,
) -> Dispatch:
    """Which path ``neighborhood_attention`` with these arguments takes, and why tiles was refused.

    ``print(explain_neighborhood_dispatch(q, k, v, (H, W), k))`` gives e.g.
    ``backend: math`` / ``  not tiles: the 7×7 neighbourhood covers a quarter or more ...``.
    Validates the arguments as ``neighborhood_attention`` does, without computing anything
    (``tile`` is accepted so that the same keyword arguments can be passed to both).
    """
    n = _check_qk(q, k, check_grid(grid, kernel_size))
    dispatch = choose_neighborhood_backend(n, kernel_size, normalize, return_weights, backend)
    make_call(
        q,
        k,
        v,
        mask=None,
        bias=None,
        causal=False,
        window=None,
        scale=scale,
        normalize=normalize,
        dropout_p=0.0,
        return_weights=return_weights,
    )
    return dispatch


def neighborhood_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    grid: tuple[int, int],
    kernel_size: int,
    *,
    scale: float | None = None,
    normalize: str = "softmax",
    return_weights: bool = False,
    backend: str = "auto",
    tile: int | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Each patch of an H × W grid attends to its k × k neighbourhood.

        O_p = normalize( scale · q_p K_N(p)ᵀ ) V_N(p),   N(p) = the k × k patches around p

    Args:
        q, k, v: (b, h, H·W, d), (b, h, H·W, d), (b, h, H·W, e), patches flattened row-major.
        grid: (H, W). kernel_size: k (≤ H and ≤ W); neighbourhoods shift inward at the borders.
        scale: default 1/√d. normalize: "softmax" | "sum" | "relu".
        return_weights: also return the (b, h, n, n) weights (takes the math path).
        backend: "auto" / "tiles" (the kernel that skips work) / "math" (dense with the mask);
            ``explain_neighborhood_dispatch`` says which one auto takes and why.
        tile: query tile side t (default k + 1, at least 4).

    Returns:
        O (b, h, H·W, e), or (O, W) with ``return_weights=True``.
    """
    height, width = check_grid(grid, kernel_size)
    n = _check_qk(q, k, (height, width))
    dispatch = choose_neighborhood_backend(n, kernel_size, normalize, return_weights, backend)
    use_math = dispatch.chosen == "math"
    mask = neighborhood_mask(height, width, kernel_size, device=q.device) if use_math else None
    call = make_call(
        q,
        k,
        v,
        mask=mask,
        bias=None,
        causal=False,
        window=None,
        scale=scale,
        normalize=normalize,
        dropout_p=0.0,
        return_weights=return_weights,
    )
    if use_math:
        out, weights = REGISTRY["math"].forward(call)
        return (out, weights) if return_weights else out
    dtype = blk.compute_dtype(q.dtype)
    b, h = q.shape[:2]
    plan = NeighborhoodPlan(
        (height, width), kernel_size, normalize, call.scale, b * h, q.device, tile
    )
    out = blk.run(plan, q.to(dtype), k.to(dtype), v.to(dtype), None)
    return out.to(v.dtype)


def tile_cost(grid: tuple[int, int], kernel_size: int, tile: int | None = None) -> float:
    """Keys scored per query by the tile kernel, relative to the k² it needs."""
    t = tile or max(4, kernel_size + 1)
    span = [min(g, min(g, t) + kernel_size - 1) for g in grid]
    return math.prod(span) / kernel_size**2
