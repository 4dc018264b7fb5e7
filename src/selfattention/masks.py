"""``selfattention.masks``: the bool mask builders (True = may attend)."""

from selfattention.functional.masks import build, causal, combine, neighborhood, padding, window

__all__ = ["build", "causal", "combine", "neighborhood", "padding", "window"]
