"""Writing a file so that it is either the old one or the whole new one, never half of each.

The bytes go to a temporary file in the same folder, which is flushed to disk and then renamed
over the target with ``os.replace`` (atomic on POSIX and Windows within one file system). An
error or Ctrl-C while writing removes the temporary file and leaves the target untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["replace_atomically", "write_text_atomically"]


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


@contextlib.contextmanager
def replace_atomically(path: str | Path) -> Iterator[IO[bytes]]:
    """A binary file object whose content replaces ``path`` when the block ends without error.

    Parent folders are created. The new file gets the usual permissions (0o666 minus the umask),
    not the 0o600 of a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomically(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """``Path(path).write_text(text)``, replacing the file atomically; returns the path."""
    with replace_atomically(path) as f:
        f.write(text.encode(encoding))
    return Path(path)
