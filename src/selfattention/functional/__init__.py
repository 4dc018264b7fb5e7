"""Torch attention: masks, normalisations, the backend registry and ``attention`` itself."""

from selfattention.functional import (
    backends,
    grouped,
    masks,
    neighborhood,
    normalize,
    packed,
    stats,
    weights,
)
from selfattention.functional.attention import attention, explain_dispatch
from selfattention.functional.call import AttentionCall
from selfattention.functional.neighborhood import (
    explain_neighborhood_dispatch,
    neighborhood_attention,
    neighborhood_mask,
)
from selfattention.functional.stats import RowStats, merge_attention

__all__ = [
    "AttentionCall",
    "RowStats",
    "attention",
    "backends",
    "explain_dispatch",
    "explain_neighborhood_dispatch",
    "grouped",
    "masks",
    "merge_attention",
    "neighborhood",
    "neighborhood_attention",
    "neighborhood_mask",
    "normalize",
    "packed",
    "stats",
    "weights",
]
