"""Truncated self-attention over a stream: chunks in, the offline window's outputs out.

Legend: b batch, c frames in a chunk, h heads, d head_dim, t absolute frame index.

For ``SelfAttention(window=(left, right))`` frame t attends to frames t-left … t+right. A stream
receives frames a chunk at a time, so frame t's output is ready once frame t+right has arrived:
the outputs lag the input by ``right`` frames (the look-ahead), and ``flush()`` at the end
returns the last ones (their window is cut by the end of the input, as offline).

    stream = attn.stream()
    for chunk in chunks:              # (b, c, dim), any c >= 1
        y = stream.push(chunk)        # (b, c', dim): the outputs of the frames now complete
    y = stream.flush()                # the last (up to) right outputs

The state is a rolling ``KVCache`` (keys and values of frames t_out-left … t_in-1) and the
pending queries t_out … t_in-1: at most left + right + c frames, whatever the stream length.
The concatenated outputs equal ``attn(x)`` over the whole sequence (to rounding).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from selfattention.nn._checks import check_sequence
from selfattention.nn.attention import merge_heads
from selfattention.nn.cache import KVCache, attend_at, check_positions_at_offset

__all__ = ["WindowStream"]


def stream_window(window, causal: bool) -> tuple[int, int]:
    """The (left, right) a stream runs: both finite (causal makes right 0), else ValueError."""
    left, right = window if window is not None else (None, None)
    if causal:
        right = 0 if right is None else min(right, 0)
    if left is None or right is None:
        raise ValueError(
            f"stream() needs a window with a finite left and right, (left, right) frames; this "
            f"module has window={window}, causal={causal}: memory would grow with the stream"
        )
    return left, right


class WindowStream:
    """Chunked window attention through a ``SelfAttention`` module (see the module docstring).

    Attributes:
        left, right: the window; ``right`` is the delay in frames.
        cache: the rolling ``KVCache`` (``cache.length`` frames pushed so far).
        emitted: frames whose output has been returned so far.
    """

    def __init__(self, attn: nn.Module) -> None:
        if attn.kv_dim != attn.dim:
            raise ValueError("stream() is for self-attention; this module has kv_dim != dim")
        check_positions_at_offset(attn.positions, "stream()")
        self.attn = attn
        self.left, self.right = stream_window(attn.window, attn.causal)
        # Room for two windows, so compaction is rare; a huge window starts smaller and doubles.
        self.cache = KVCache(capacity=max(1, min(2 * (self.left + self.right), 4096)))
        self.reset()

    def reset(self) -> None:
        """Start a new stream at frame 0."""
        self.cache.reset()
        self._queries: Tensor | None = None  # pending (b, h, t_in - t_out, d)
        self.emitted = 0

    @property
    def pending(self) -> int:
        """Frames pushed whose output is not out yet (at most ``right`` between pushes)."""
        return self.cache.length - self.emitted

    def push(self, chunk: Tensor) -> Tensor:
        """chunk (b, c, dim) at frames t_in … t_in+c-1 -> the outputs (b, c', dim) of frames
        t_out … t_in+c-1-right (c' may be 0 while the look-ahead fills)."""
        check_sequence("chunk", chunk, self.attn.dim)
        keys = self.cache.keys
        if keys is not None and (chunk.shape[0] != keys.shape[0] or chunk.dtype != keys.dtype):
            raise ValueError(
                f"chunk must continue the stream: batch {keys.shape[0]} and dtype {keys.dtype}, "
                f"got shape {tuple(chunk.shape)} and {chunk.dtype}; call reset() for a new stream"
            )
        return self._emit(chunk, self.cache.length + chunk.shape[1] - self.right)

    def flush(self) -> Tensor | None:
        """The outputs (b, pending, dim) of every pending frame (the end of the input cuts
        their window), then ``reset()``; None when nothing was pushed since the last reset."""
        if self._queries is None:
            return None
        out = self._emit(None, self.cache.length)
        self.reset()
        return out

    def _emit(self, chunk: Tensor | None, ready_end: int) -> Tensor:
        """Add chunk (if any), then return the outputs of frames emitted … ready_end-1."""
        attn, t_in = self.attn, self.cache.length
        if chunk is not None:
            # 1. Project the new frames; rotary at their absolute positions t_in, t_in+1, …
            q, k, v = attn._project(chunk, chunk)  # (b, h, c, d) each
            if attn.positions is not None:
                q, k = attn.positions.encode(q, t_in), attn.positions.encode(k, t_in)
            self.cache.append(k, v, owner=attn)
            self._queries = q if self._queries is None else torch.cat([self._queries, q], dim=2)
        # 2. Attend from the frames whose look-ahead is complete to the held keys.
        ready = max(ready_end - self.emitted, 0)
        queries = self._queries
        out = attend_at(
            queries[:, :, :ready],
            self.cache.keys,
            self.cache.values,
            q_start=self.emitted,
            k_start=self.cache.start,
            window=(self.left, self.right),
            causal=False,
            positions=attn.positions,
            **attn.attend_kwargs(),
        ) if ready else queries[:, :, :0]  # fmt: skip
        # 3. Forget what no later frame needs: queries out, keys before t_out - left.
        self.emitted += ready
        self._queries = queries[:, :, ready:]
        self.cache.keep_last(self.cache.length - (self.emitted - self.left))
        return attn.out_proj(merge_heads(out))  # (b, c', dim)

    def __repr__(self) -> str:
        return (
            f"WindowStream(left={self.left}, right={self.right}, pushed={self.cache.length}, "
            f"emitted={self.emitted})"
        )
