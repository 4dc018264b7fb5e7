"""What the report's "why" views need from the encoder: per layer and head, the projected queries
and keys (neuron view) and ‖v_j W_o^h‖ (value-weighted attention).

Computed from each layer's own modules and its input (hidden state l, the input of layer l in a
post-norm stack): Q = X W_qᵀ + b_q, K = X W_kᵀ + b_k, V = X W_vᵀ + b_v, split into heads; the
output projection's weight W_o (e, H·d) gives each head's slice W_o^h = W_o[:, h d:(h + 1) d].
``viz`` turns them into figures; nothing here draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from selfattention import viz
from selfattention.nn.attention import split_heads

__all__ = ["HeadVectors", "head_vectors"]


@dataclass(frozen=True)
class HeadVectors:
    """Per-layer projections of one batch (b sentences, padded to n).

    Attributes:
        queries, keys: (b, L, H, n, d) float32. scale: the score scale (scores = scale · q·k).
        value_norms: (b, L, H, n) ‖v_j W_o^h‖.
    """

    queries: np.ndarray
    keys: np.ndarray
    scale: float
    value_norms: np.ndarray


@torch.no_grad()
def head_vectors(model, hidden_states: tuple[torch.Tensor, ...]) -> HeadVectors:
    """Queries, keys and value norms of every layer of ``model`` (a ``PretrainedEncoder``), from
    its ``hidden_states`` (L + 1 tensors (b, n, e), as ``forward(return_hidden_states=True)``
    gives: layer l reads hidden_states[l])."""
    qs, ks, norms = [], [], []
    scale = None
    for layer, block in enumerate(model.encoder.layers):
        attn = block.attn
        if attn.positions is not None:  # rotary/ALiBi change q·k: the products would not add up
            raise ValueError("the neuron view needs plain q·k scores; this model has positions")
        x = hidden_states[layer]
        q = split_heads(attn.query_proj(x), attn.heads)  # (b, H, n, d)
        k = split_heads(attn.key_proj(x), attn.heads)
        v = split_heads(attn.value_proj(x), attn.heads)
        d = q.shape[-1]
        scale = 1 / d**0.5 if attn.scale is None else float(attn.scale)
        w_o = attn.out_proj.weight.detach().double().cpu().numpy()  # (e, H·d)
        layer_norms = [viz.value_norms(v[r].double().cpu().numpy(), w_o) for r in range(len(v))]
        qs.append(q.float().cpu().numpy())
        ks.append(k.float().cpu().numpy())
        norms.append(np.stack(layer_norms))
    return HeadVectors(
        queries=np.stack(qs, 1),
        keys=np.stack(ks, 1),
        scale=float(scale),
        value_norms=np.stack(norms, 1),
    )
