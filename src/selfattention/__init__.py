"""selfattention: self-attention from the textbook ladder to fast, inspectable kernels.

import selfattention as sa
sa.reference   # NumPy float64, one function per rung (the oracle)
sa.functional  # torch: sa.attention(q, k, v, mask=..., window=..., normalize=...)
sa.masks       # bool mask builders, True = may attend
sa.nn          # modules: SelfAttention, MultiheadAttention, positions, encoders
"""

import importlib

from selfattention import functional, masks, nn, reference
from selfattention.functional import attention, explain_dispatch

__version__ = "0.1.0"
__all__ = ["attention", "explain_dispatch", "functional", "masks", "nn", "reference"]

# Upper layers pull in optional dependencies: imported on first use (``sa.viz``), not here.
_LAZY = ("apps", "distributed", "integrations", "pretrained", "viz")


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f"selfattention.{name}")
    raise AttributeError(f"module 'selfattention' has no attribute {name!r}")
