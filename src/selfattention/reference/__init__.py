"""``selfattention.reference``: the textbook ladder in NumPy float64, the oracle for every path.

NumPy only (no torch). One short function per rung, its formula in its docstring:
``reweight`` (Y = W X), ``scores`` and ``normalize``, ``self_attention`` (Y = softmax(X Xᵀ) X),
``projected_self_attention`` (Q, K, V), ``multi_head_self_attention``, ``additive_scores``
(Bahdanau), the general ``attention`` (masks, bias, causal, windows, normalisations), position
encodings (``sinusoidal_positions``, ``rotary``, ``alibi_bias``) and masks.
"""

from selfattention.reference.ladder import (
    NORMALIZATIONS,
    additive_scores,
    attention,
    multi_head_self_attention,
    normalize,
    projected_self_attention,
    reweight,
    scores,
    self_attention,
)
from selfattention.reference.masks import causal_mask, padding_mask, window_mask
from selfattention.reference.positions import (
    alibi_bias,
    alibi_slopes,
    rotary,
    sinusoidal_positions,
)

__all__ = [
    "NORMALIZATIONS",
    "additive_scores",
    "alibi_bias",
    "alibi_slopes",
    "attention",
    "causal_mask",
    "multi_head_self_attention",
    "normalize",
    "padding_mask",
    "projected_self_attention",
    "reweight",
    "rotary",
    "scores",
    "self_attention",
    "sinusoidal_positions",
    "window_mask",
]
