"""``NeighborhoodAttention2D``: each patch of an H × W grid attends to its k × k neighbours.

Legend: b batch, n = H·W patches (row-major), h heads, d head_dim, e = dim.

    Q, K, V = X W_qᵀ, X W_kᵀ, X W_vᵀ        (b, n, h·d) -> (b, h, n, d)
    O_p = normalize(q_p K_N(p)ᵀ / √d) V_N(p)  N(p) = the k × k patches around p
    out = concat_h(O) W_oᵀ
"""

from __future__ import annotations

from torch import Tensor, nn

from selfattention.functional.call import check_backend, check_normalize
from selfattention.functional.neighborhood import BACKENDS, check_grid, neighborhood_attention
from selfattention.nn._checks import check_patches
from selfattention.nn.attention import merge_heads, split_heads

__all__ = ["NeighborhoodAttention2D"]


class NeighborhoodAttention2D(nn.Module):
    """Multi-head 2-D neighbourhood attention on a fixed grid of patches, batch-first.

    Args:
        dim: width e of the input x (b, H·W, e) and of the output.
        heads: number of heads h (must divide dim unless head_dim is given).
        kernel_size: k; each patch sees k × k patches, shifted inward at the borders.
        grid: (H, W); x holds the patches row-major.
        head_dim: d per head, default dim // heads.
        bias: biases in the four projections.
        normalize: "softmax" | "sum" | "relu".
        backend: "auto" | "tiles" (skips the work outside the neighbourhoods) | "math".

    Submodules ``query_proj``, ``key_proj``, ``value_proj``, ``out_proj`` (torch.nn.Linear), as in
    ``SelfAttention``.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        kernel_size: int,
        grid: tuple[int, int],
        head_dim: int | None = None,
        bias: bool = True,
        normalize: str = "softmax",
        backend: str = "auto",
        *,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        for name, val in (("dim", dim), ("heads", heads)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if head_dim is None:
            if dim % heads:
                raise ValueError(
                    f"heads must divide dim when head_dim is not given: dim={dim}, heads={heads}"
                )
            head_dim = dim // heads
        self.grid = check_grid(tuple(grid) if isinstance(grid, list) else grid, kernel_size)
        check_normalize(normalize, allow_callable=False)
        check_backend(backend, BACKENDS)
        self.dim, self.heads, self.head_dim = dim, heads, head_dim
        self.kernel_size, self.normalize, self.backend = kernel_size, normalize, backend
        inner = heads * head_dim
        kw = dict(device=device, dtype=dtype)
        self.query_proj = nn.Linear(dim, inner, bias=bias, **kw)
        self.key_proj = nn.Linear(dim, inner, bias=bias, **kw)
        self.value_proj = nn.Linear(dim, inner, bias=bias, **kw)
        self.out_proj = nn.Linear(inner, dim, bias=bias, **kw)

    def forward(self, x: Tensor, *, return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """x (b, H·W, dim) -> out (b, H·W, dim), or (out, weights (b, h, H·W, H·W))."""
        check_patches(x, self.grid, self.dim)
        q = split_heads(self.query_proj(x), self.heads)  # (b, h, n, d)
        k = split_heads(self.key_proj(x), self.heads)
        v = split_heads(self.value_proj(x), self.heads)
        result = neighborhood_attention(
            q,
            k,
            v,
            self.grid,
            self.kernel_size,
            normalize=self.normalize,
            return_weights=return_weights,
            backend="math" if return_weights else self.backend,
        )
        if return_weights:
            out, weights = result
            return self.out_proj(merge_heads(out)), weights
        return self.out_proj(merge_heads(result))

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, heads={self.heads}, kernel_size={self.kernel_size}, "
            f"grid={self.grid}, normalize={self.normalize!r}"
        )
