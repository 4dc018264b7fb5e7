"""Boolean attention masks, built from index predicates. Polarity everywhere: True = may attend.

Legend: i = query position, j = key position; a mask is broadcastable to (b, h, i, j).
Query i and key j are aligned top-left (position i of the queries is position i of the keys),
as in ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import torch
from torch import Tensor

__all__ = [
    "Neighborhood",
    "build",
    "causal",
    "check_grid",
    "combine",
    "neighborhood",
    "neighborhood_start",
    "padding",
    "resolve_window",
    "window",
]


def _positions(q_len: int, k_len: int, device: torch.device | str | None) -> tuple[Tensor, Tensor]:
    for name, n in (("q_len", q_len), ("k_len", k_len)):
        if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
            raise ValueError(f"{name} must be a positive int, got {n!r}")
    i = torch.arange(q_len, device=device).unsqueeze(-1)  # (i, 1)
    j = torch.arange(k_len, device=device).unsqueeze(0)  # (1, j)
    return i, j


def causal(q_len: int, k_len: int | None = None, *, device=None) -> Tensor:
    """(i, j) mask of ``j <= i``: no query sees the future."""
    k_len = q_len if k_len is None else k_len
    i, j = _positions(q_len, k_len, device)
    return j <= i


def window(
    q_len: int,
    k_len: int | None = None,
    left: int | None = None,
    right: int | None = None,
    *,
    device=None,
) -> Tensor:
    """(i, j) band mask of ``i - left <= j <= i + right``; None means unbounded on that side.

    ``window(n, n, left=w, right=0)`` is causal truncated attention over the last w positions.
    A side wider than the sequence sees nothing more: left is clamped to q_len - 1 and right to
    k_len - 1 (so any int, even >= 2**63, is fine).
    """
    k_len = q_len if k_len is None else k_len
    for name, val in (("left", left), ("right", right)):
        if val is not None and (isinstance(val, bool) or not isinstance(val, Integral) or val < 0):
            raise ValueError(f"{name} must be a non-negative int or None, got {val!r}")
    i, j = _positions(q_len, k_len, device)
    left, right = clamp_window((left, right), q_len, k_len)
    allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=device)
    if left is not None:
        allowed &= j >= i - left
    if right is not None:
        allowed &= j <= i + right
    return allowed


def padding(lengths: Tensor | list[int], max_len: int | None = None, *, device=None) -> Tensor:
    """(b, 1, 1, j) key-padding mask from sequence lengths: key j is real iff ``j < lengths[b]``."""
    lengths = torch.as_tensor(lengths, device=device)
    if lengths.ndim != 1 or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be a 1-D integer tensor or list, got {lengths!r}")
    if (lengths < 0).any():
        raise ValueError(f"lengths must be non-negative, got {lengths.tolist()}")
    max_len = int(lengths.max()) if max_len is None else max_len
    if (lengths > max_len).any():
        raise ValueError(f"lengths must be <= max_len={max_len}, got {lengths.tolist()}")
    j = torch.arange(max_len, device=lengths.device)
    return (j < lengths[:, None])[:, None, None, :]


def combine(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of masks (None = no restriction); the result broadcasts over all inputs."""
    out: Tensor | None = None
    for m in masks:
        if m is None:
            continue
        if m.dtype != torch.bool:
            raise TypeError(f"masks must be bool (True = may attend), got {m.dtype}")
        out = m if out is None else out & m
    return out


def resolve_window(window_arg) -> tuple[int | None, int | None] | None:
    """Normalise ``window=``: None, w (symmetric) or (left, right) -> (left, right) or None.

    Any non-negative int is accepted; each call clamps the sides to its lengths
    (``clamp_window``: left <= q_len - 1, right <= k_len - 1), where a wider side sees nothing more.
    """
    if window_arg is None:
        return None
    if isinstance(window_arg, bool) or not isinstance(window_arg, Integral | tuple | list):
        raise ValueError(f"window must be an int or a (left, right) pair, got {window_arg!r}")
    if isinstance(window_arg, Integral):
        left = right = window_arg
    else:
        if len(window_arg) != 2:
            raise ValueError(f"window must be an int or a (left, right) pair, got {window_arg!r}")
        left, right = window_arg
    for name, val in (("left", left), ("right", right)):
        if val is not None and (isinstance(val, bool) or not isinstance(val, Integral) or val < 0):
            raise ValueError(
                f"window {name} must be a non-negative int or None, got {val!r} (in {window_arg!r})"
            )
    return (None if left is None else int(left)), (None if right is None else int(right))


def clamp_window(
    window_: tuple[int | None, int | None], q_len: int, k_len: int
) -> tuple[int | None, int | None]:
    """(left, right) with left <= q_len - 1 and right <= k_len - 1: a wider side sees nothing more
    (query i >= 0 already sees key 0 with left = q_len - 1, and key k_len - 1 with right =
    k_len - 1), so a window >= n on both sides is full attention at full attention's cost."""
    left, right = window_
    left = None if left is None else min(int(left), max(q_len - 1, 0))
    right = None if right is None else min(int(right), max(k_len - 1, 0))
    return left, right


# -- 2-D neighbourhoods over a grid of patches ---------------------------------------------------


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


@dataclass(frozen=True)
class Neighborhood:
    """Patch p = r·W + c of an H × W grid (row-major) sees the k × k patches around it, shifted
    inward at the borders so that every patch sees exactly k × k keys:

        rows  r0(r) = clamp(r - k // 2, 0, H - k) ... r0(r) + k - 1      (columns likewise)

    ``tile`` is the query tile side of the kernel that skips work (None = its default).
    """

    height: int
    width: int
    kernel_size: int
    tile: int | None = None

    @property
    def size(self) -> int:
        return self.height * self.width

    def sees(self, qpos: Tensor, kpos: Tensor) -> Tensor:
        """Bool (..., Rq, Rk): may the flattened query positions see the key positions?"""
        k, width = self.kernel_size, self.width
        r0 = neighborhood_start(qpos // width, self.height, k)[..., :, None]
        c0 = neighborhood_start(qpos % width, width, k)[..., :, None]
        kr, kc = (kpos // width)[..., None, :], (kpos % width)[..., None, :]
        return (kr >= r0) & (kr < r0 + k) & (kc >= c0) & (kc < c0 + k)

    def mask(self, device=None) -> Tensor:
        """(H·W, H·W) bool mask, True where patch i may attend to patch j."""
        pos = torch.arange(self.size, device=device)
        return self.sees(pos, pos)


def neighborhood(height: int, width: int, kernel_size: int, *, device=None) -> Tensor:
    """(H·W, H·W) bool mask of 2-D neighbourhood attention (see ``Neighborhood``)."""
    height, width = check_grid((height, width), kernel_size)
    return Neighborhood(height, width, kernel_size).mask(device)


def build(
    mask: Tensor | None,
    causal_: bool,
    window_: tuple[int | None, int | None] | None,
    q_len: int,
    k_len: int,
    device=None,
    grid: Neighborhood | None = None,
) -> Tensor | None:
    """The one bool mask a call means: user mask AND causal AND window AND 2-D neighbourhood
    (None if unrestricted)."""
    left, right = window_ if window_ is not None else (None, None)
    if causal_:
        right = 0 if right is None else min(right, 0)
    band = None
    if left is not None or right is not None:
        band = window(q_len, k_len, left, right, device=device)
    return combine(mask, band, None if grid is None else grid.mask(device))
