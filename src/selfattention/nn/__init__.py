"""Modules, batch-first (batch, seq, dim). Masks are bool, True = may attend, broadcastable to
(batch, heads, q_len, k_len); ``MultiheadAttention`` alone keeps torch's True = ignore.
"""

from selfattention.nn.additive import AdditiveAttention
from selfattention.nn.attention import SelfAttention, merge_heads, split_heads
from selfattention.nn.cache import KVCache
from selfattention.nn.encoder import (
    ACTIVATIONS,
    EncoderOutput,
    FeedForward,
    TransformerEncoder,
    TransformerEncoderLayer,
)
from selfattention.nn.multihead import MultiheadAttention
from selfattention.nn.neighborhood import NeighborhoodAttention2D
from selfattention.nn.positions import (
    ALiBi,
    AttentionPositions,
    LearnedPositions,
    PositionsAtOffset,
    RotaryPositions,
    SinusoidalPositions,
    SinusoidalPositions2D,
    alibi_slopes,
    sinusoidal_table,
)
from selfattention.nn.stream import WindowStream

__all__ = [
    "ACTIVATIONS",
    "ALiBi",
    "AdditiveAttention",
    "AttentionPositions",
    "EncoderOutput",
    "FeedForward",
    "KVCache",
    "LearnedPositions",
    "MultiheadAttention",
    "NeighborhoodAttention2D",
    "PositionsAtOffset",
    "RotaryPositions",
    "SelfAttention",
    "SinusoidalPositions",
    "SinusoidalPositions2D",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "WindowStream",
    "alibi_slopes",
    "merge_heads",
    "sinusoidal_table",
    "split_heads",
]
