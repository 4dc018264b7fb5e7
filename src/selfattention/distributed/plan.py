"""One distributed call, validated once: options, the layout, and the pieces each rank computes.

Legend: b batch, h heads, n global tokens, n_r tokens on this rank, d head_dim, e value dim.

A *piece* is one block of queries (a segment of this rank's shard) against one block of keys
(a segment of some rank's shard, or a halo). With query segment [qs, qe) and keys [ks, ke) in
global positions, D = qs - ks, a local query i may see local key t when

    t - i  in  [lo, hi],   lo = D - left,   hi = D + right        (None = unbounded side)

which is ``sa.attention(window=(-lo, hi))`` when lo <= 0 <= hi (the band crosses the piece's own
diagonal), an explicit band mask otherwise, nothing when the band misses the piece, and no
window at all when it covers it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from selfattention.distributed.group import Ring
from selfattention.distributed.shard import Segment
from selfattention.functional import normalize as _norm

__all__ = ["Options", "Piece", "band_mask", "pieces_for", "visible"]

BiasFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Piece:
    """Local query rows [r0, r1) (global start qs) against key columns [c0, c1) of a key buffer
    (global start ks), with the allowed band t - i in [lo, hi]."""

    r0: int
    r1: int
    qs: int
    c0: int
    c1: int
    ks: int
    lo: int | None
    hi: int | None

    @property
    def full(self) -> bool:
        return (self.hi is None or self.hi >= self.c1 - self.c0 - 1) and (
            self.lo is None or self.lo <= -(self.r1 - self.r0 - 1)
        )

    @property
    def window(self) -> tuple[int | None, int | None] | None:
        """``sa.attention``'s (left, right) for this piece, or None (full, or explicit band)."""
        if self.full or not self.diagonal:
            return None
        return (None if self.lo is None else -self.lo), self.hi

    @property
    def diagonal(self) -> bool:
        return (self.lo is None or self.lo <= 0) and (self.hi is None or self.hi >= 0)


def visible(lo: int | None, hi: int | None, rows: int, cols: int) -> bool:
    """Does the band t - i in [lo, hi] meet a rows × cols block at all?"""
    return not ((hi is not None and hi < -(rows - 1)) or (lo is not None and lo > cols - 1))


def band_mask(lo, hi, rows: int, cols: int, device) -> Tensor | None:
    """(rows, cols) bool, True where lo <= t - i <= hi; None when every entry is True."""
    if (hi is None or hi >= cols - 1) and (lo is None or lo <= -(rows - 1)):
        return None
    diff = torch.arange(cols, device=device)[None, :] - torch.arange(rows, device=device)[:, None]
    keep = torch.ones(rows, cols, dtype=torch.bool, device=device)
    if lo is not None:
        keep &= diff >= lo
    if hi is not None:
        keep &= diff <= hi
    return keep


@dataclass(frozen=True)
class Options:
    """Everything of a call without a gradient; ``segments[r]`` = rank r's global ranges."""

    ring: Ring
    n: int
    layout: str
    segments: list[list[Segment]]
    left: int | None  # reach of a query after causal and window (None = unbounded)
    right: int | None
    scale: float
    normalize: str
    norm: _norm.Normalization
    mask: Tensor | None  # (b|1, h|1, n_r|1, n|1) bool
    bias: Tensor | BiasFn | None  # tensor like mask, or fn(q_pos, k_pos) -> (b|1, h|1, i, j)
    device: torch.device

    @property
    def halo(self) -> bool:
        """Both sides bounded: only the band's neighbours are needed (halo exchange)."""
        return self.left is not None and self.right is not None

    def local_segments(self) -> list[tuple[int, Segment]]:
        """[(local row offset, global segment)] of this rank."""
        out, offset = [], 0
        for a, b in self.segments[self.ring.rank]:
            out.append((offset, (a, b)))
            offset += b - a
        return out

    def piece_mask(
        self, p: Piece, r0: int, r1: int, c0: int, c1: int, band: bool = True
    ) -> Tensor | None:
        """User mask (AND the band unless ``band=False``) for rows r0:r1, columns c0:c1 of p."""
        allowed = None
        if self.mask is not None:
            m = self.mask
            if m.shape[2] != 1:
                m = m[:, :, r0:r1]
            if m.shape[3] != 1:
                m = m[:, :, :, p.ks + c0 - p.c0 : p.ks + c1 - p.c0]
            allowed = m
        if not band:
            return allowed
        off = (c0 - p.c0) - (r0 - p.r0)  # tile coordinates: t' - i' = t - i - off
        lo = None if p.lo is None else p.lo - off
        hi = None if p.hi is None else p.hi - off
        keep = band_mask(lo, hi, r1 - r0, c1 - c0, self.device)
        if keep is not None:
            allowed = keep if allowed is None else allowed & keep
        return allowed

    def piece_bias(self, p: Piece, r0: int, r1: int, c0: int, c1: int, dtype) -> Tensor | None:
        if self.bias is None:
            return None
        if callable(self.bias) and not isinstance(self.bias, Tensor):
            qpos = torch.arange(p.qs + r0 - p.r0, p.qs + r1 - p.r0, device=self.device)
            kpos = torch.arange(p.ks + c0 - p.c0, p.ks + c1 - p.c0, device=self.device)
            return self.bias(qpos, kpos).to(dtype)
        bt = self.bias
        if bt.shape[2] != 1:
            bt = bt[:, :, r0:r1]
        if bt.shape[3] != 1:
            bt = bt[:, :, :, p.ks + c0 - p.c0 : p.ks + c1 - p.c0]
        return bt.to(dtype)


def pieces_for(opts: Options, keys: list[tuple[int, Segment]]) -> list[Piece]:
    """The visible pieces of this rank's queries against key segments [(buffer column, seg)]."""
    out = []
    for r0, (qs, qe) in opts.local_segments():
        for c0, (ks, ke) in keys:
            d = qs - ks
            lo = None if opts.left is None else d - opts.left
            hi = None if opts.right is None else d + opts.right
            if visible(lo, hi, qe - qs, ke - ks):
                out.append(Piece(r0, r0 + qe - qs, qs, c0, c0 + ke - ks, ks, lo, hi))
    return out
