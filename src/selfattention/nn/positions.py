"""Position information, in the two ways attention can receive it.

1. Added to the input, before the first layer (the model does this, not the attention):
   ``SinusoidalPositions``, ``LearnedPositions``, ``SinusoidalPositions2D`` (image patch grids).
   ``forward(x)`` returns ``x + P[:n]`` for x (b, n, dim).
2. Inside attention, after the Q/K projections (``SelfAttention(positions=...)``):
   ``RotaryPositions`` (RoPE rotates q and k) and ``ALiBi`` (a per-head linear distance bias).
   These follow the ``AttentionPositions`` protocol below.

Streams and caches (``SelfAttention.stream()``, ``cache=``) see a sequence a piece at a time, so
every encoding also takes the absolute position of the piece's first element: ``offset=`` on the
additive ones, ``encode(x, start)`` and ``bias(..., q_start, k_start)`` on the attention ones
(the ``PositionsAtOffset`` protocol).

Legend: b batch, h heads, i query position, j key position, d head_dim, n sequence length.
Tables are computed in float64 on the fly and cast to the input's dtype, so a float64 model is
exact to the last digit and nothing position-shaped lands in a ``state_dict``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from selfattention.nn._checks import check_float_tensor, check_positive_int

__all__ = [
    "ALiBi",
    "AttentionPositions",
    "LearnedPositions",
    "PositionsAtOffset",
    "RotaryPositions",
    "SinusoidalPositions",
    "SinusoidalPositions2D",
    "alibi_slopes",
    "sinusoidal_table",
]


@runtime_checkable
class AttentionPositions(Protocol):
    """What ``SelfAttention(positions=...)`` accepts.

    ``attend(q, k)`` is called after the projections and the head split with q (b, h, i, d) and
    k (b, h, j, d); it returns (q', k', bias) where q', k' have the same shapes (e.g. rotated) and
    bias is None or a float tensor broadcastable to (b, h, i, j), added to the scores.
    """

    def attend(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor, Tensor | None]: ...


@runtime_checkable
class PositionsAtOffset(Protocol):
    """What ``SelfAttention(positions=...)`` must also offer to be used with ``cache=`` or
    ``stream()``: ``attend`` split into its two halves, each at absolute positions.

    ``encode(x, start)`` turns q or k (b, h, n, d) as if it sat at positions start … start+n-1
    (rotary) or returns it unchanged (ALiBi); ``bias(q_len, k_len, q_start=, k_start=, dtype=,
    device=)`` is the score bias (1, h, q_len, k_len) between queries at q_start … and keys at
    k_start …, or None. Then ``attend(q, k) == (encode(q, 0), encode(k, 0), bias(i, j))``.
    """

    def encode(self, x: Tensor, start: int = 0) -> Tensor: ...

    def bias(
        self, q_len: int, k_len: int, *, q_start: int = 0, k_start: int = 0, dtype=..., device=...
    ) -> Tensor | None: ...


def _check_offset(offset) -> int:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative int, got {offset!r}")
    return offset


def sinusoidal_table(
    n: int,
    dim: int,
    *,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """The Transformer's fixed encoding, (n, dim), interleaved sin/cos:

        P[pos, 2t] = sin(pos / base^(2t/dim)),   P[pos, 2t+1] = cos(pos / base^(2t/dim))

    An odd ``dim`` keeps the last sine column and drops its cosine partner.
    """
    check_positive_int("n", n)
    check_positive_int("dim", dim)
    pos = torch.arange(n, dtype=torch.float64, device=device)[:, None]  # (n, 1)
    two_t = torch.arange(0, dim, 2, dtype=torch.float64, device=device)
    angle = pos / base ** (two_t / dim)  # (n, ceil(dim/2))
    table = torch.empty(n, dim, dtype=torch.float64, device=device)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : dim // 2])
    return table.to(dtype)


def _check_input(name: str, x: Tensor, dim: int, max_len: int | None) -> None:
    check_float_tensor(name, x)
    if x.ndim != 3 or x.shape[-1] != dim:
        raise ValueError(f"{name} must have shape (batch, seq, {dim}), got {tuple(x.shape)}")
    if max_len is not None and x.shape[1] > max_len:
        raise ValueError(
            f"{name} has {x.shape[1]} positions but this encoding was built for max_len={max_len}"
        )


class SinusoidalPositions(nn.Module):
    """Add the fixed sinusoidal encoding (``sinusoidal_table``) to x (b, n, dim), n <= max_len.

    No parameters and nothing in the ``state_dict``; ``table(n)`` returns P (n, dim).
    """

    def __init__(self, dim: int, max_len: int = 4096, base: float = 10000.0) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.max_len = check_positive_int("max_len", max_len)
        if not (isinstance(base, int | float) and base > 1):
            raise ValueError(f"base must be a number > 1, got {base!r}")
        self.base = float(base)

    def table(self, n: int, *, dtype=torch.float32, device=None) -> Tensor:
        """P (n, dim) in ``dtype``."""
        return sinusoidal_table(n, self.dim, base=self.base, dtype=dtype, device=device)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x (b, n, dim) -> x + P[offset : offset + n] (``offset``: x's first absolute position,
        for a stream or a cache)."""
        _check_input("x", x, self.dim, None)
        end = _check_offset(offset) + x.shape[1]
        if end > self.max_len:
            raise ValueError(
                f"x reaches position {end - 1} (offset={offset}, {x.shape[1]} positions) but this "
                f"encoding was built for max_len={self.max_len}"
            )
        return x + self.table(end, dtype=x.dtype, device=x.device)[offset:]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_len={self.max_len}, base={self.base:g}"


class LearnedPositions(nn.Module):
    """A learned table ``weight`` (max_len, dim), N(0, 0.02²) at init; forward adds weight[:n]."""

    def __init__(self, max_len: int, dim: int, *, device=None, dtype=None) -> None:
        super().__init__()
        self.max_len = check_positive_int("max_len", max_len)
        self.dim = check_positive_int("dim", dim)
        self.weight = nn.Parameter(torch.empty(max_len, dim, device=device, dtype=dtype))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x (b, n, dim) -> x + weight[offset : offset + n]."""
        _check_input("x", x, self.dim, None)
        end = _check_offset(offset) + x.shape[1]
        if end > self.max_len:
            raise ValueError(
                f"x reaches position {end - 1} (offset={offset}, {x.shape[1]} positions) but this "
                f"table was built for max_len={self.max_len}"
            )
        return x + self.weight[offset:end].to(x.dtype)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, dim={self.dim}"


class SinusoidalPositions2D(nn.Module):
    """Fixed encoding of a (height, width) grid of image patches, flattened row-major.

    The first dim/2 channels are ``sinusoidal_table`` of the row index, the last dim/2 of the
    column index: P[r·width + c] = [S_{dim/2}(r) | S_{dim/2}(c)]. dim must be divisible by 4.
    ``forward(x)`` takes x (b, height·width, dim) or (b, height, width, dim); a class token is
    the caller's business (add P to ``x[:, 1:]``).
    """

    def __init__(self, dim: int, height: int, width: int, base: float = 10000.0) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        if dim % 4:
            raise ValueError(f"dim must be divisible by 4 (sin/cos of rows and columns), got {dim}")
        self.height = check_positive_int("height", height)
        self.width = check_positive_int("width", width)
        self.base = float(base)

    def table(self, *, dtype=torch.float32, device=None) -> Tensor:
        """P (height·width, dim), row-major over the grid."""
        half = self.dim // 2
        kw = dict(base=self.base, dtype=torch.float64, device=device)
        rows = sinusoidal_table(self.height, half, **kw)  # (height, dim/2)
        cols = sinusoidal_table(self.width, half, **kw)  # (width, dim/2)
        grid = torch.cat(
            [
                rows[:, None, :].expand(self.height, self.width, half),
                cols[None, :, :].expand(self.height, self.width, half),
            ],
            dim=-1,
        )  # (height, width, dim)
        return grid.reshape(self.height * self.width, self.dim).to(dtype)

    def forward(self, x: Tensor) -> Tensor:
        check_float_tensor("x", x)
        n = self.height * self.width
        grid = (self.height, self.width, self.dim)
        if x.ndim == 4 and tuple(x.shape[1:]) == grid:
            return x + self.table(dtype=x.dtype, device=x.device).view(grid)
        if x.ndim == 3 and tuple(x.shape[1:]) == (n, self.dim):
            return x + self.table(dtype=x.dtype, device=x.device)
        raise ValueError(
            f"x must have shape (batch, {n}, {self.dim}) or (batch, {self.height}, {self.width}, "
            f"{self.dim}), got {tuple(x.shape)}"
        )

    def extra_repr(self) -> str:
        return f"dim={self.dim}, height={self.height}, width={self.width}"


class RotaryPositions(nn.Module):
    """RoPE (Su et al., 2021): rotate each pair of channels of q and k by an angle ∝ position.

    For pair t of head_dim d and position p, θ_t = base^(-2t/d) and

        (x₁, x₂) -> (x₁ cos pθ_t - x₂ sin pθ_t,  x₁ sin pθ_t + x₂ cos pθ_t)

    so q_i · k_j depends on positions only through i - j. ``interleaved=False`` pairs channel t
    with t + d/2 (GPT-NeoX / Llama "rotate half"); ``interleaved=True`` pairs 2t with 2t+1 (the
    paper's layout). Query i and key j sit at positions i and j (top-left aligned, as the masks).
    """

    def __init__(self, head_dim: int, base: float = 10000.0, *, interleaved: bool = False) -> None:
        super().__init__()
        self.head_dim = check_positive_int("head_dim", head_dim)
        if head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary positions, got {head_dim}")
        if not (isinstance(base, int | float) and base > 1):
            raise ValueError(f"base must be a number > 1, got {base!r}")
        self.base = float(base)
        self.interleaved = bool(interleaved)

    def angles(self, n: int, *, start: int = 0, device=None) -> Tensor:
        """p·θ_t for p = start … start+n-1, (n, head_dim/2), float64."""
        theta = self.base ** (
            -torch.arange(0, self.head_dim, 2, dtype=torch.float64, device=device) / self.head_dim
        )
        pos = torch.arange(start, start + n, dtype=torch.float64, device=device)
        return pos[:, None] * theta

    def rotate(self, x: Tensor, start: int = 0) -> Tensor:
        """x (..., n, head_dim) rotated by its positions start … start+n-1."""
        if x.shape[-1] != self.head_dim:
            raise ValueError(
                f"rotary positions were built for head_dim={self.head_dim}, got input with "
                f"last dimension {x.shape[-1]} (shape {tuple(x.shape)})"
            )
        ang = self.angles(x.shape[-2], start=_check_offset(start), device=x.device)
        cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)  # (n, d/2)
        if self.interleaved:
            x1, x2 = x[..., 0::2], x[..., 1::2]
            out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
            return out.flatten(-2)
        half = self.head_dim // 2
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)

    def attend(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor, None]:
        """q (b, h, i, d), k (b, h, j, d) -> rotated (q, k), no bias."""
        return self.rotate(q), self.rotate(k), None

    def encode(self, x: Tensor, start: int = 0) -> Tensor:
        """q or k (b, h, n, d) at positions start … start+n-1 (``PositionsAtOffset``)."""
        return self.rotate(x, start)

    def bias(self, q_len: int, k_len: int, **_) -> None:
        """Rotary positions add no score bias (``PositionsAtOffset``)."""
        return None

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base:g}, interleaved={self.interleaved}"


def alibi_slopes(heads: int) -> Tensor:
    """ALiBi's head slopes (float64): for a power of two h, m_k = 2^(-8k/h), k = 1..h.

    Otherwise the slopes of the nearest lower power of two p, followed by every other slope
    of 2p (the paper's recipe), so that the slopes stay spread out.
    """
    check_positive_int("heads", heads)

    def power_of_two(h: int) -> list[float]:
        return [2.0 ** (-8.0 * k / h) for k in range(1, h + 1)]

    p = 1 << (heads.bit_length() - 1)  # largest power of two <= heads
    slopes = power_of_two(p)
    if p < heads:
        slopes += power_of_two(2 * p)[0::2][: heads - p]
    return torch.tensor(slopes, dtype=torch.float64)


class ALiBi(nn.Module):
    """Attention with Linear Biases (Press et al., 2022): bias (1, h, i, j) = -m_h · |i - j|.

    With ``causal=True`` attention this equals the paper's m_h · (j - i) on every allowed key;
    without it the symmetric distance keeps both directions penalised (bidirectional encoders).
    ``heads`` must equal the attention's number of heads.
    """

    def __init__(self, heads: int) -> None:
        super().__init__()
        self.heads = check_positive_int("heads", heads)

    def bias(
        self,
        q_len: int,
        k_len: int,
        *,
        q_start: int = 0,
        k_start: int = 0,
        dtype=torch.float32,
        device=None,
    ) -> Tensor:
        """-m_h · |i - j| for queries i = q_start … and keys j = k_start …, (1, h, q_len, k_len)."""
        i = torch.arange(q_start, q_start + q_len, dtype=torch.float64, device=device)[:, None]
        j = torch.arange(k_start, k_start + k_len, dtype=torch.float64, device=device)[None, :]
        slopes = alibi_slopes(self.heads).to(device)[:, None, None]  # (h, 1, 1)
        return (-slopes * (i - j).abs())[None].to(dtype)

    def attend(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q (b, h, i, d), k (b, h, j, d) -> (q, k, bias (1, h, i, j))."""
        if q.shape[1] != self.heads:
            raise ValueError(f"ALiBi was built for heads={self.heads}, got q with {q.shape[1]}")
        return q, k, self.bias(q.shape[2], k.shape[2], dtype=q.dtype, device=q.device)

    def encode(self, x: Tensor, start: int = 0) -> Tensor:
        """ALiBi leaves q and k unchanged (``PositionsAtOffset``)."""
        return x

    def extra_repr(self) -> str:
        return f"heads={self.heads}"
