"""torch's fused ``scaled_dot_product_attention``, for softmax calls it can express.

Causal alone maps to ``is_causal``; any other mask, window or bias becomes one attention mask.
Rows with no allowed key are opened to every key inside the kernel and zeroed afterwards, so
they give zeros and finite gradients instead of NaN. Time O(b·h·n_q·n_k·d); memory O(b·h·n_q)
beyond the inputs for the unmasked and causal cases, O(b·h·n_q·n_k) when a mask is materialised.

When the row statistic is wanted (``return_stats``/``return_lse``, or weights to rebuild), the
forward is torch's CPU flash kernel ``aten._scaled_dot_product_flash_attention_for_cpu``, which
returns the log-sum-exp beside the output; its own backward cannot take a gradient of the lse
or the bias, so backward recomputes tiles exactly as ``chunked`` does (same plan, same numbers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from selfattention.functional.backends import _blocks as blk
from selfattention.functional.backends.base import Backend, Result
from selfattention.functional.backends.chunked import ChunkedPlan
from selfattention.functional.call import AttentionCall
from selfattention.functional.normalize import Softmax

FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def refuse(call: AttentionCall) -> str | None:
    if not isinstance(call.normalize, Softmax):
        return f"torch's fused kernel only computes softmax, not normalize={call.normalize.name!r}"
    if (call.need_stat or call.return_weights) and call.dropout_p > 0.0:
        return (
            "weights and row statistics are rebuilt without dropout's random mask "
            "(use backend='math' for weights under dropout)"
        )
    if call.need_stat and (FLASH is None or call.q.device.type != "cpu"):
        return "the log-sum-exp comes from torch's CPU flash kernel, absent here"
    return None


def auto_skip(call: AttentionCall) -> str | None:
    if call.windowed:
        return "a window becomes a dense band mask in SDPA: it still costs n_q·n_k"
    if call.grid is not None:
        return "a 2-D neighbourhood becomes a dense mask in SDPA: it still costs n·n"
    return None


class FlashEngine:
    """Forward: torch's CPU flash kernel (out and lse); backward: the chunked tiles."""

    def __init__(self, call: AttentionCall):
        self.call, self.norm, self.need_stat = call, call.normalize, True
        self.plan = ChunkedPlan(call)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None):
        call = self.call
        d, e = q.shape[-1], v.shape[-1]
        if d != e:  # the kernel wants one head size: zero columns change no score nor output
            q, k = (F.pad(t, (0, max(d, e) - d)) for t in (q, k))
            v = F.pad(v, (0, max(d, e) - e))
        plain_causal = call.causal and call.mask is None and bias is None and not call.windowed
        plain_causal = plain_causal and call.grid is None and call.q_len <= call.k_len
        allowed = None if plain_causal else call.allowed()
        attn_mask, empty = None, None
        if allowed is not None:
            has_key = allowed.any(dim=-1, keepdim=True)
            if not bool(has_key.all()):
                empty = ~has_key
                allowed = allowed | empty  # open empty rows (finite), zero them below
            attn_mask = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device)
            attn_mask.masked_fill_(~allowed, float("-inf"))
        if bias is not None:
            attn_mask = bias if attn_mask is None else bias + attn_mask
        if attn_mask is not None:
            attn_mask = attn_mask.expand(*q.shape[:2], -1, -1)
        out, lse = FLASH(q, k, v, is_causal=plain_causal, attn_mask=attn_mask, scale=call.scale)
        out, stat = out[..., :e], lse.to(q.dtype).unsqueeze(-1)
        if empty is not None:
            out = out.masked_fill(empty, 0.0)
            stat = stat.masked_fill(empty, self.norm.empty_stat)
        return out.contiguous(), stat

    def backward(self, q, k, v, bias, out, stat, dout, need_bias, delta):
        return self.plan.backward(q, k, v, bias, out, stat, dout, need_bias, delta)


def forward(call: AttentionCall) -> Result:
    if call.need_stat:
        dtype = blk.compute_dtype(call.q.dtype)
        q, k, v = (t.to(dtype) for t in (call.q, call.k, call.v))
        bias = None if call.bias is None else call.bias.to(dtype)
        out, stat = blk.run(FlashEngine(call), q, k, v, bias, stat=True)
        return Result(out.to(call.v.dtype), None, stat)
    q, k, v = call.q, call.k, call.v
    plain_causal = call.causal and call.mask is None and call.bias is None and call.grid is None
    plain_causal = plain_causal and not call.windowed
    if plain_causal and call.q_len <= call.k_len:
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=call.dropout_p, is_causal=True, scale=call.scale
        )
        return Result(out)
    allowed = call.allowed()
    empty_row = None
    attn_mask: Tensor | None = allowed
    if allowed is not None:
        has_key = allowed.any(dim=-1, keepdim=True)
        if not bool(has_key.all()):
            # Open empty rows inside the kernel (finite, no NaN) and zero them afterwards.
            empty_row = ~has_key
            attn_mask = allowed | empty_row
    if call.bias is not None:
        bias = call.bias.to(q.dtype)
        if allowed is not None:
            bias = bias.masked_fill(~allowed, torch.finfo(q.dtype).min)
        attn_mask = bias
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=call.dropout_p, scale=call.scale
    )
    if empty_row is not None:
        out = out.masked_fill(empty_row, 0.0)
    return Result(out)


BACKEND = Backend(
    "sdpa",
    forward,
    refuse,
    auto_skip,
    cost="fused softmax kernel; time O(b·h·n_q·n_k·d), memory O(b·h·n_q) unless masked",
)
