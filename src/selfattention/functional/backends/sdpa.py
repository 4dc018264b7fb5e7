"""torch's fused ``scaled_dot_product_attention``, for softmax calls it can express.

Causal alone maps to ``is_causal``; any other mask, window or bias becomes one attention mask.
Rows with no allowed key are opened to every key inside the kernel and zeroed afterwards, so
they give zeros and finite gradients instead of NaN. Time O(b·h·n_q·n_k·d); memory O(b·h·n_q)
beyond the inputs for the unmasked and causal cases, O(b·h·n_q·n_k) when a mask is materialised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from selfattention.functional.backends.base import Backend
from selfattention.functional.call import AttentionCall
from selfattention.functional.normalize import Softmax


def refuse(call: AttentionCall) -> str | None:
    if call.return_weights:
        return "fused kernels never return the weights (use backend='math')"
    if not isinstance(call.normalize, Softmax):
        return f"torch's fused kernel only computes softmax, not normalize={call.normalize.name!r}"
    return None


def auto_skip(call: AttentionCall) -> str | None:
    if call.windowed:
        return "a window becomes a dense band mask in SDPA: it still costs n_q·n_k"
    if call.grid is not None:
        return "a 2-D neighbourhood becomes a dense mask in SDPA: it still costs n·n"
    return None


def forward(call: AttentionCall) -> tuple[Tensor, Tensor | None]:
    q, k, v = call.q, call.k, call.v
    plain_causal = call.causal and call.mask is None and call.bias is None and call.grid is None
    plain_causal = plain_causal and not call.windowed
    if plain_causal and call.q_len <= call.k_len:
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=call.dropout_p, is_causal=True, scale=call.scale
        )
        return out, None
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
    return out, None


BACKEND = Backend(
    "sdpa",
    forward,
    refuse,
    auto_skip,
    cost="fused softmax kernel; time O(b·h·n_q·n_k·d), memory O(b·h·n_q) unless masked",
)
