"""Torch attention: masks, normalisations, the backend registry and ``attention`` itself."""

from selfattention.functional import backends, masks, normalize
from selfattention.functional.attention import attention, explain_dispatch
from selfattention.functional.call import AttentionCall

__all__ = ["AttentionCall", "attention", "backends", "explain_dispatch", "masks", "normalize"]
