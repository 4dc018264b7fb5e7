"""Files that users depend on, written so that an interrupt never leaves half of one behind.

:func:`write_atomic` writes a temporary file beside the target, flushes it to disk (``fsync``),
renames it over the target (``os.replace``: atomic on POSIX and Windows) and then syncs the
folder so that the rename itself survives a power cut. A reader sees the old bytes or the new
ones, never a mixture.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["jsonable", "remove_file", "sync_dir", "write_atomic", "write_metrics"]


def jsonable(x: Any) -> Any:
    """``x`` with tensors, NumPy values and paths as plain JSON values (NaN/inf -> None)."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return jsonable(x.item() if x.numel() == 1 else x.tolist())
    if isinstance(x, np.generic):
        return jsonable(x.item())
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and not math.isfinite(x):
        return None  # JSON has no NaN/inf
    return x


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _replace(src: Path, dst: Path) -> None:
    os.replace(src, dst)


def remove_file(path: Path) -> None:
    """Delete ``path`` if it exists."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def sync_dir(directory: Path) -> None:
    """Make renames inside ``directory`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows: directories cannot be opened; its renames are durable anyway
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


TEMP_SUFFIX = ".tmp"


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a synced temp file renamed over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")
    try:
        _write_synced(tmp, data)
        _replace(tmp, path)
    except BaseException:
        remove_file(tmp)  # also on Ctrl-C: leave no temp file behind
        raise
    sync_dir(path.parent)
    return path


def write_metrics(path: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Write ``metrics`` as indented JSON, atomically (tensors and NumPy scalars become numbers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(jsonable(metrics), indent=2, sort_keys=False) + "\n"
    return write_atomic(path, text.encode())
