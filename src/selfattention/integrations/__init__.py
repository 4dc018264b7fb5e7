"""Bridges to other libraries; each submodule imports its library only when it is used.

    from selfattention.integrations import transformers as sa_hf
    sa_hf.register()   # attn_implementation="selfattention" in Hugging Face transformers

Layer: beside ``pretrained`` (imports ``functional`` and ``nn``, nothing above).
"""

from __future__ import annotations

import importlib

__all__ = ["transformers"]


def __getattr__(name: str):
    # Importing transformers takes seconds: only on first use of ``sa.integrations.transformers``.
    if name in __all__:
        return importlib.import_module(f"selfattention.integrations.{name}")
    raise AttributeError(f"module 'selfattention.integrations' has no attribute {name!r}")
