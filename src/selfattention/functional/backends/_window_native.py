"""The window backend's compiled path: softmax over a band through ``native/window.cpp``.

It serves what the pure-torch plan spends most of its time on: softmax, no bias tensor, no mask
or a key mask (the same for every query row: padding), float32 or float64 on the CPU (half
precisions are computed in float32 as elsewhere). Anything else, or no built kernel, takes
``window.WindowPlan``; both are tested against the math path.

The kernel works on (heads, n, D) rows, D = max(d, e) rounded up to a vector's lanes (16
float32, 8 float64); q and k are zero-padded to D (their dot products do not change), v too,
and the output is cut back to e. Like the pure-torch plan, training keeps the weights for
backward when they take at most ``KEEP_FACTOR`` × the bytes of q, k, v and out (one spare
buffer reused from call to call), else backward recomputes them from the log-sum-exp.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from selfattention.functional.backends import _window_ops as ops
from selfattention.functional.backends import native
from selfattention.functional.backends._window_ops import Workspace
from selfattention.functional.call import AttentionCall
from selfattention.functional.normalize import Softmax


def refuse(call: AttentionCall) -> str | None:
    """Why the compiled path cannot serve ``call`` (None: it can)."""
    return _unsupported(call) or native.unavailable()


def kernel_for(call: AttentionCall):
    """The compiled module when it serves ``call``, else None (``refuse`` says why)."""
    return None if _unsupported(call) else native.kernel()


def _unsupported(call: AttentionCall) -> str | None:
    """What in ``call`` the kernel does not do, whether it is built or not."""
    if type(call.normalize) is not Softmax:
        return f"normalize={call.normalize.name!r} (the kernel does softmax)"
    if call.bias is not None:
        return "a bias tensor (the kernel adds none)"
    if call.mask is not None and call.mask.dim() >= 2 and call.mask.shape[-2] != 1:
        return "a mask that differs between query rows (the kernel takes key masks only)"
    if call.q.device.type != "cpu":
        return f"device {call.q.device.type} (the kernel is for the CPU)"
    return None


def _lanes(dtype: torch.dtype) -> int:
    """Values in one of the kernel's 64-byte vectors (also its key panel width)."""
    return 512 // torch.finfo(dtype).bits


class NativeWindow:
    """Engine for ``_blocks.BlockedAttention``: forward gives (out, lse), backward the grads;
    backward sums δ = rowsum(dO ∘ O) itself, block by block while the rows are in cache."""

    fuses_delta = True

    def __init__(self, call: AttentionCall, lib):
        self.lib = lib
        self.left, self.right = call.band()
        self.norm = call.normalize
        self.scale = float(call.scale)
        self.mask = call.mask  # None, or (…, 1, n_k): which keys every query may see
        self.heads = call.q.shape[:2]
        self.training = False
        self.need_stat = True
        self.kept: Tensor | None = None

    def _rows(self, x: Tensor, width: int) -> Tensor:
        """(b, h, n, d) -> contiguous (b·h, n, width), zero columns past d."""
        x = x.reshape(-1, x.shape[-2], x.shape[-1])
        pad = width - x.shape[-1]
        return F.pad(x, (0, pad)).contiguous() if pad else x.contiguous()

    def _keys(self, dtype: torch.dtype, nk: int) -> Tensor:
        """The key mask as (b·h, panels·lanes) integers of the lanes' width (0 past n_k), or an
        empty tensor without a mask."""
        index = torch.int32 if dtype == torch.float32 else torch.int64
        if self.mask is None:
            return torch.empty(0, dtype=index)
        m = self.mask.reshape((1,) * (4 - self.mask.dim()) + tuple(self.mask.shape))
        m = torch.broadcast_to(m, (*self.heads, 1, nk)).reshape(-1, nk)
        return F.pad(m.to(index), (0, -nk % _lanes(dtype))).contiguous()

    def _width(self, q: Tensor, v: Tensor) -> int:
        lanes = _lanes(q.dtype)
        return -(-max(q.shape[-1], v.shape[-1]) // lanes) * lanes

    def forward(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None):
        b, h, nq, e = *q.shape[:3], v.shape[-1]
        D = self._width(q, v)
        qf, kf, vf = (self._rows(t, D) for t in (q, k, v))
        kept = torch.empty(0, dtype=q.dtype)
        if self.training:
            blocks = -(-nq // self.lib.BLOCK)
            numel = (
                b
                * h
                * blocks
                * self.lib.BLOCK
                * self.lib.kept_width(self.left, self.right, q.element_size())
            )
            if numel <= ops.KEEP_FACTOR * (qf.numel() + kf.numel() + vf.numel() + qf.numel()):
                kept = Workspace.take((numel,), qf)
        self.keys = self._keys(q.dtype, k.shape[2])
        out, lse = self.lib.window_forward(
            qf, kf, vf, self.left, self.right, self.scale, kept, self.keys
        )
        self.kept = kept if kept.numel() else None
        return out[..., :e].view(b, h, nq, e), lse.view(b, h, nq, 1)

    def backward(self, q, k, v, bias, out, stat, dout, need_bias, delta):
        """``delta``: only the statistic's gradient term, or None (``fuses_delta``)."""
        b, h, nq, d = q.shape
        nk, e = k.shape[2], v.shape[-1]
        D = self._width(q, v)
        qf, kf, vf, of, dof = (self._rows(t, D) for t in (q, k, v, out, dout))
        kept, self.kept = self.kept, None
        none = torch.empty(0, dtype=q.dtype)
        dq, dk, dv = self.lib.window_backward(
            qf, kf, vf, of, dof, stat.reshape(-1, nq).contiguous(),
            none if delta is None else delta.reshape(-1, nq).contiguous(),
            self.left, self.right, self.scale, none if kept is None else kept, self.keys,
        )  # fmt: skip
        if kept is not None:
            Workspace.give(kept)
        return (
            dq[..., :d].reshape(b, h, nq, d),
            dk[..., :d].reshape(b, h, nk, d),
            dv[..., :e].reshape(b, h, nk, e),
            None,
        )
