"""A key/value cache for step-by-step (causal) attention, and attention at absolute positions.

Legend: b batch, h heads, c new positions, m held keys, d head_dim, e value head_dim.

A ``KVCache`` holds the keys and values of the positions seen so far, already projected and
encoded (rotary keys are stored rotated), in one preallocated buffer (b, h, capacity, d):

    held keys = positions start … length-1,   start = length - held

A windowed module keeps only its last ``left`` keys (``keep_last``), so the buffer of a rolling
cache stays within the window whatever the stream length: a full buffer is first compacted
(held keys moved to the front), and only grown (doubled) when the held keys still do not fit.
"""

from __future__ import annotations

import weakref

import torch
from torch import Tensor

from selfattention.functional import attention
from selfattention.nn._checks import check_flag, check_positive_int

__all__ = ["KVCache", "attend_at", "check_positions_at_offset"]


class KVCache:
    """Keys and values of the positions seen so far, for one attention module.

    Args:
        capacity: positions allocated at the first use (grown by doubling when needed).
        fixed: never grow; a call that would hold more than ``capacity`` keys raises ValueError.

    Attributes:
        length: positions seen so far = the absolute position of the next one.
        held: keys in memory (``length`` without a window, at most the window with one).
        start: absolute position of the first held key (``length - held``).
        keys, values: the held keys (b, h, held, d) and values (b, h, held, e), or None.

    Use under ``torch.no_grad()`` (generation, streaming): the buffer is written in place.
    ``reset()`` empties it for a new sequence (and frees it from its module).
    """

    def __init__(self, capacity: int = 256, *, fixed: bool = False) -> None:
        self.capacity = check_positive_int("capacity", capacity)
        self.fixed = check_flag("fixed", fixed)
        self.reset()

    def reset(self) -> None:
        """Forget every position: ``length`` 0, nothing held; the buffer is freed."""
        self._k: Tensor | None = None
        self._v: Tensor | None = None
        self._begin = self._end = 0  # buffer slots of the held keys: [begin, end)
        self.length = 0
        self._owner: weakref.ref | None = None

    @property
    def held(self) -> int:
        return self._end - self._begin

    @property
    def start(self) -> int:
        return self.length - self.held

    @property
    def keys(self) -> Tensor | None:
        return None if self._k is None else self._k[:, :, self._begin : self._end]

    @property
    def values(self) -> Tensor | None:
        return None if self._v is None else self._v[:, :, self._begin : self._end]

    def check(self, k: Tensor, v: Tensor, owner: object | None = None) -> None:
        """Raise ValueError (naming ``cache``) if k (b, h, c, d), v (b, h, c, e) do not fit the
        keys already held, or ``owner`` is not the module that filled this cache."""
        if owner is not None and self._owner is not None:
            first = self._owner()
            if first is not None and first is not owner:
                raise ValueError(
                    f"cache was filled by another module ({type(first).__name__} at "
                    f"{id(first):#x}); give each attention module its own KVCache, or call "
                    "cache.reset() before reusing it"
                )
        if self._k is None:
            return
        want = (self._k.shape[:2], self._k.shape[3], self._v.shape[3], self._k.dtype)
        got = (k.shape[:2], k.shape[3], v.shape[3], k.dtype)
        if want != got or k.device != self._k.device:
            raise ValueError(
                "cache holds keys of another shape: (batch, heads) "
                f"{tuple(want[0])}, head_dim {want[1]}, value dim {want[2]}, {want[3]}; this call "
                f"gives {tuple(got[0])}, {got[1]}, {got[2]}, {got[3]}; use one KVCache per "
                "module and sequence batch, or cache.reset()"
            )

    def append(self, k: Tensor, v: Tensor, owner: object | None = None) -> tuple[Tensor, Tensor]:
        """Add c positions: k (b, h, c, d), v (b, h, c, e). Returns all held (keys, values).

        Checks first and changes nothing when it raises (another shape, a full fixed cache).
        """
        self.check(k, v, owner)
        c = k.shape[2]
        if self._k is None:
            if self.fixed and c > self.capacity:
                self._full(c)
            size = self.capacity if self.fixed else max(self.capacity, c)
            self._k = k.new_empty(*k.shape[:2], size, k.shape[3])
            self._v = v.new_empty(*v.shape[:2], size, v.shape[3])
            self.capacity = size
        elif self._end + c > self.capacity:
            self._make_room(c)
        if owner is not None and self._owner is None:
            self._owner = weakref.ref(owner)
        self._k[:, :, self._end : self._end + c] = k
        self._v[:, :, self._end : self._end + c] = v
        self._end += c
        self.length += c
        return self.keys, self.values

    def keep_last(self, n: int) -> None:
        """Drop all but the last n held keys (a window's left side); the slots are reused."""
        if n < self.held:
            self._begin = self._end - max(n, 0)

    def _full(self, c: int) -> None:
        raise ValueError(
            f"cache is full: capacity={self.capacity} with fixed=True, it holds {self.held} keys "
            f"and this call adds {c}; build KVCache(capacity=...) larger, or with fixed=False to "
            "let it grow"
        )

    def _make_room(self, c: int) -> None:
        """Compact the held keys to the front; grow by doubling if they still do not fit."""
        held = self.held
        size = self.capacity
        while held + c > size:
            size *= 2
        if size > self.capacity and self.fixed:
            self._full(c)
        keys, values = self.keys, self.values
        if size > self.capacity:
            self._k = keys.new_empty(*keys.shape[:2], size, keys.shape[3])
            self._v = values.new_empty(*values.shape[:2], size, values.shape[3])
            self.capacity = size
        # clone: source and destination may overlap when compacting in place
        self._k[:, :, :held] = keys.clone()
        self._v[:, :, :held] = values.clone()
        self._begin, self._end = 0, held

    def __repr__(self) -> str:
        return (
            f"KVCache(length={self.length}, held={self.held}, capacity={self.capacity}, "
            f"fixed={self.fixed})"
        )


def check_positions_at_offset(positions, where: str) -> None:
    """``positions`` must offer ``encode`` and ``bias`` (``PositionsAtOffset``) for ``where``."""
    if positions is None:
        return
    if not (
        callable(getattr(positions, "encode", None)) and callable(getattr(positions, "bias", None))
    ):
        raise TypeError(
            f"{where} needs positions that can start at an offset: encode(x, start) and "
            f"bias(q_len, k_len, q_start=, k_start=, dtype=, device=) (RotaryPositions, ALiBi); "
            f"{type(positions).__name__} has only attend(q, k)"
        )


def attend_at(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    q_start: int,
    k_start: int,
    window: tuple[int | None, int | None] | None,
    causal: bool,
    positions=None,
    mask: Tensor | None = None,
    bias: Tensor | None = None,
    **kwargs,
) -> Tensor | tuple[Tensor, Tensor]:
    """``attention`` between queries q (b, h, c, d) at absolute positions q_start … and keys
    k (b, h, m, d), values v (b, h, m, e) at k_start …: key j is allowed for query i when

        j <= i (causal),   i - left <= j <= i + right (window),

    as in the offline call over the whole sequence. ``positions.bias`` is added at those
    positions (q and k must already be encoded). ``kwargs`` go to ``attention`` (scale,
    normalize, dropout_p, return_weights, backend).
    """
    c, m = q.shape[2], k.shape[2]
    left, right = window if window is not None else (None, None)
    if causal:
        right = 0 if right is None else min(right, 0)
    if q_start == k_start:
        # Aligned top-left, as the functional flags are: let the backends use them.
        flags = dict(causal=causal, window=window)
    else:
        i = torch.arange(q_start, q_start + c, device=q.device)[:, None]  # (c, 1)
        j = torch.arange(k_start, k_start + m, device=q.device)[None, :]  # (1, m)
        allowed = torch.ones(c, m, dtype=torch.bool, device=q.device)
        if left is not None:
            allowed &= j >= i - left
        if right is not None:
            allowed &= j <= i + right
        if not bool(allowed.all()):
            mask = allowed if mask is None else mask & allowed
        flags = {}
    if positions is not None:
        pos_bias = positions.bias(
            c, m, q_start=q_start, k_start=k_start, dtype=q.dtype, device=q.device
        )
        if pos_bias is not None:
            bias = pos_bias if bias is None else bias + pos_bias
    return attention(q, k, v, mask=mask, bias=bias, **flags, **kwargs)
