"""The compiled window kernel (``window.cpp``): found if built, else None and the reason.

Built once per machine by ``make`` (``python -m selfattention.functional.backends.native.build``),
never at import or call time: a library call that starts a compiler is a surprise. The library
file's name carries a hash of the source, torch's version, Python's and the machine's, so a
stale build is never loaded; without a matching build the window backend runs its pure-torch
path. ``SELFATTENTION_NATIVE=0`` or ``disabled()`` turns the kernel off (tests compare the two).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.machinery
import importlib.util
import os
import platform
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import torch

__all__ = ["SOURCE", "disabled", "kernel", "library_path", "unavailable"]

SOURCE = Path(__file__).with_name("window.cpp")
_state = threading.local()
_cache: dict[Path, ModuleType | str] = {}


def build_dir() -> Path:
    """Where builds go: $SELFATTENTION_NATIVE_DIR, else ``_build`` beside the source."""
    env = os.environ.get("SELFATTENTION_NATIVE_DIR")
    return Path(env) if env else SOURCE.with_name("_build")


@functools.cache
def _tag() -> str:
    """Hash of the source, torch's, Python's and the machine's versions (read once a process:
    the source does not change under a running program)."""
    h = hashlib.sha256(SOURCE.read_bytes())
    h.update(f"{torch.__version__}|{sys.version_info[:2]}|{platform.machine()}".encode())
    return h.hexdigest()[:16]


def library_path() -> Path:
    """The library file a build of this source, torch, Python and machine has."""
    return build_dir() / f"window_{_tag()}.so"


def unavailable() -> str | None:
    """Why the kernel cannot be used now, or None when it can."""
    if getattr(_state, "off", False) or os.environ.get("SELFATTENTION_NATIVE") == "0":
        return "the compiled kernel is turned off (SELFATTENTION_NATIVE=0 or native.disabled())"
    found = _load()
    return found if isinstance(found, str) else None


def kernel() -> ModuleType | None:
    """The compiled module, or None (``unavailable()`` says why)."""
    if unavailable() is not None:
        return None
    found = _load()
    return found if isinstance(found, ModuleType) else None


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Within the block (this thread), the window backend runs its pure-torch path."""
    before = getattr(_state, "off", False)
    _state.off = True
    try:
        yield
    finally:
        _state.off = before


def _load() -> ModuleType | str:
    path = library_path()
    if path not in _cache:
        if not path.exists():
            _cache[path] = (
                f"the compiled window kernel is not built for this source and torch ({path.name} "
                "missing); run: make native"
            )
        else:
            try:
                loader = importlib.machinery.ExtensionFileLoader("_sa_window", str(path))
                spec = importlib.util.spec_from_file_location("_sa_window", path, loader=loader)
                assert spec is not None
                module = importlib.util.module_from_spec(spec)
                loader.exec_module(module)
                _cache[path] = module
            except (ImportError, OSError) as e:
                _cache[path] = f"the compiled window kernel at {path} does not load: {e}"
    return _cache[path]
