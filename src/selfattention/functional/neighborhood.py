"""2-D neighbourhood attention over an H × W grid of patches (images as many vectors).

Patch (r, c) attends to the k × k patches around it. As in neighbourhood attention (NATTEN),
the neighbourhood is shifted inward at the borders so that every patch sees exactly k × k keys:

    rows    r0(r) = clamp(r - k // 2, 0, H - k) ... r0(r) + k - 1      (columns likewise)

Positions are flattened row-major (p = r·W + c), as a ViT flattens patches. The geometry lives in
``masks`` (``masks.Neighborhood``; ``neighborhood_mask`` is it as a bool (n, n) mask).

``neighborhood_attention`` makes one ``AttentionCall`` that carries the grid and hands it to the
same dispatcher as ``attention`` (``backends.choose``): the ``tiles`` backend (only the patches
around each query tile; never forms the mask) or ``math`` (dense with the mask, the ground
truth). ``tiles`` leaves asked-for weights to an exact rebuild (``functional.weights``) and
refuses user normalize callables; ``backend="auto"`` also passes it over when a k × k
neighbourhood covers a quarter of the grid or more.
``explain_neighborhood_dispatch`` returns the choice and every reason as a ``Dispatch``, as
``explain_dispatch`` does for ``attention``.
"""

from __future__ import annotations

from torch import Tensor

from selfattention.functional import backends as _backends
from selfattention.functional import grouped as _grouped
from selfattention.functional import weights as _weights
from selfattention.functional.backends.base import Dispatch, Result
from selfattention.functional.backends.tiles import tile_cost
from selfattention.functional.call import AttentionCall, check_backend, make_call
from selfattention.functional.masks import Neighborhood, check_grid, neighborhood_start
from selfattention.functional.masks import neighborhood as neighborhood_mask
from selfattention.functional.stats import from_kernel

__all__ = [
    "BACKENDS",
    "check_grid",
    "explain_neighborhood_dispatch",
    "neighborhood_attention",
    "neighborhood_mask",
    "neighborhood_start",
    "tile_cost",
]

BACKENDS = ("tiles", "math")  # the names a neighbourhood call may ask for (auto tries tiles first)


def _call(q, k, v, grid, kernel_size, scale, normalize, return_weights, backend, tile, stats=False):
    """Validate everything and build the one request; the backend name is checked here too."""
    height, width = check_grid(grid, kernel_size)
    check_backend(backend, BACKENDS)
    return make_call(
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
        grid=Neighborhood(height, width, kernel_size, tile),
        return_stats=stats,
    )


def _choose(call: AttentionCall, backend: str) -> Dispatch:
    """``backends.choose``, reporting only the 2-D paths (the 1-D ones refuse every grid)."""
    dispatch = _backends.choose(call, backend)
    dispatch.refused = {n: why for n, why in dispatch.refused.items() if n in BACKENDS}
    return dispatch


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
    Validates the arguments as ``neighborhood_attention`` does, without computing anything.
    """
    call = _call(q, k, v, grid, kernel_size, scale, normalize, return_weights, backend, tile)
    return _choose(_grouped.split(call)[0] if call.groups > 1 else call, backend)


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
    return_stats: bool = False,
    backend: str = "auto",
    tile: int | None = None,
) -> Tensor | tuple:
    """Each patch of an H × W grid attends to its k × k neighbourhood.

        O_p = normalize( scale · q_p K_N(p)ᵀ ) V_N(p),   N(p) = the k × k patches around p

    Args:
        q, k, v: (b, h, H·W, d), (b, h_kv, H·W, d), (b, h_kv, H·W, e), patches flattened
            row-major; h_kv may divide h (grouped-query: query head i reads kv head i // (h/h_kv)).
        grid: (H, W). kernel_size: k (≤ H and ≤ W); neighbourhoods shift inward at the borders.
        scale: default 1/√d. normalize: "softmax" | "sum" | "relu".
        return_weights: also return the (b, h, n, n) weights (math keeps them; tiles's are
            rebuilt exactly, row block by row block).
        return_stats: also return the per-row ``RowStats`` (softmax lse, sum z, relu c), as
            ``attention`` does; ``merge_attention`` combines results over disjoint key sets.
        backend: "auto" / "tiles" (the kernel that skips work) / "math" (dense with the mask);
            ``explain_neighborhood_dispatch`` says which one auto takes and why.
        tile: query tile side t (default k + 1, at least 4).

    Returns:
        O (b, h, H·W, e), or the tuple (O, W, RowStats) without those not asked for.
    """
    call = _call(
        q, k, v, grid, kernel_size, scale, normalize, return_weights, backend, tile, return_stats
    )

    def serve_one(c: AttentionCall) -> Result:
        result = _backends.REGISTRY[_choose(c, backend).chosen].forward(c)
        if c.return_weights and result.weights is None:
            # tiles keeps no weights: rebuild them, row block by row block
            result = result._replace(weights=_weights.rebuild(c, result.stat))
        return result

    result = _grouped.serve(call, serve_one)  # k/v with fewer heads: per group member
    extras: list = []
    if return_weights:
        extras.append(result.weights)
    if return_stats:
        extras.append(from_kernel(call.normalize, result.stat))
    return (result.out, *extras) if extras else result.out
