"""Tensor helpers of the window backend: crop/pad along an axis, and the reusable buffer for
the weights training keeps."""

from __future__ import annotations

import math
import threading

import torch
from torch import Tensor

__all__ = ["KEEP_FACTOR", "Workspace", "pad_axis"]

# Training keeps the softmax weights for backward when they fit in KEEP_FACTOR × the bytes of
# q, k, v and out (both paths of the window backend); otherwise backward recomputes them.
KEEP_FACTOR = 2


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


class Workspace:
    """One spare buffer for the kept weights, reused by the next training call.

    A fresh buffer of that size (150 MB at n = 16384, 8 heads, ±128) costs tens of thousands
    of page faults on first touch, measured at ~10 % of a training step; training asks for the
    same size at every step. Holds at most one buffer (the largest handed back);
    ``Workspace.clear()`` frees it.
    """

    _spare: Tensor | None = None
    _lock = threading.Lock()

    @classmethod
    def take(cls, shape: tuple[int, ...], like: Tensor) -> Tensor:
        numel = math.prod(shape)
        with cls._lock:
            spare = cls._spare
            fits = (
                spare is not None
                and spare.numel() >= numel
                and spare.dtype == like.dtype
                and spare.device == like.device
            )
            if fits:
                cls._spare = None
                return spare[:numel].view(shape)
        return like.new_empty(shape)

    @classmethod
    def give(cls, buffer: Tensor) -> None:
        base = (buffer if buffer._base is None else buffer._base).view(-1)  # the whole buffer
        with cls._lock:
            if cls._spare is None or cls._spare.numel() < base.numel():
                cls._spare = base

    @classmethod
    def clear(cls) -> None:
        with cls._lock:
            cls._spare = None
