"""Output folders and files for the command adapters: checked before any compute, written
whole (a temporary file renamed into place), so a failure or Ctrl-C never leaves half a file."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["out_file", "out_folder", "write_bytes", "write_text"]


def out_folder(path: str | Path, option: str = "--out") -> Path:
    """Create folder ``path`` (and its parents) if needed and check it can be written.

    Raises:
        ValueError: ``path`` is an existing file, or the folder cannot be created or written;
            the message names ``option``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is a file; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{option} {path}: cannot create the folder ({e.strerror or e})") from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: the folder is not writable")
    return path


def out_file(path: str | Path, option: str = "--out") -> Path:
    """Check that file ``path`` can be written (its folder is created): not a folder itself."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file name")
    out_folder(path.parent if str(path.parent) else Path("."), option)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, then os.replace)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # same folder: rename is atomic
    try:
        tmp.write_bytes(data)  # plain open: the file gets the user's usual permissions
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """``write_bytes`` for UTF-8 text."""
    return write_bytes(path, text.encode("utf-8"))
