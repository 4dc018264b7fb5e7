"""Torch attention: masks, normalisations, the backend registry and ``attention`` itself."""

from selfattention.functional import backends, masks, neighborhood, normalize
from selfattention.functional.attention import attention, explain_dispatch
from selfattention.functional.call import AttentionCall
from selfattention.functional.neighborhood import (
    explain_neighborhood_dispatch,
    neighborhood_attention,
    neighborhood_mask,
)

__all__ = [
    "AttentionCall",
    "attention",
    "backends",
    "explain_dispatch",
    "explain_neighborhood_dispatch",
    "masks",
    "neighborhood",
    "neighborhood_attention",
    "neighborhood_mask",
    "normalize",
]
