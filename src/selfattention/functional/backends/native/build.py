"""Compile ``window.cpp`` for the CPU it runs on (``make native`` runs this module).

Run by ``make`` (so only when the user builds): g++ with -O3 -march=native and OpenMP (torch's
own libgomp is the one loaded at run time), against the installed torch's headers. The library
is written to a temporary name and renamed into place, so a failed or interrupted build never
leaves a half-written file that would be loaded. Exit 0 when built or already there; exit 1 with
one line when no compiler works, and the window backend keeps its pure-torch path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import torch
from torch.utils import cpp_extension

from selfattention.functional.backends import native


def command(out: str) -> list[str]:
    """The compiler command that builds the kernel into ``out``."""
    cxx = os.environ.get("CXX", "g++")
    includes = [*cpp_extension.include_paths(), sysconfig.get_paths()["include"]]
    libs = cpp_extension.library_paths()
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    return [
        cxx, "-O3", "-march=native", "-ffp-contract=fast", "-std=gnu++17", "-fPIC", "-shared",
        "-fopenmp", "-w", f"-D_GLIBCXX_USE_CXX11_ABI={abi}", "-DTORCH_EXTENSION_NAME=_sa_window",
        "-DTORCH_API_INCLUDE_EXTENSION_H",
        *[f"-I{p}" for p in includes], str(native.SOURCE),
        *[f"-L{p}" for p in libs], *[f"-Wl,-rpath,{p}" for p in libs],
        "-lc10", "-ltorch", "-ltorch_cpu", "-ltorch_python", "-o", out,
    ]  # fmt: skip


def build(force: bool = False) -> str:
    """Build the kernel if it is missing (``force``: rebuild); returns its path."""
    target = native.library_path()
    if target.exists() and not force:
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".window-", suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run(command(tmp), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr else "failed")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    for old in target.parent.glob("window_*.so"):  # earlier sources' builds
        if old != target:
            old.unlink(missing_ok=True)
    return str(target)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        print(f"native: no C++ compiler {cxx!r} found; the window backend uses its pure-torch path")
        return 1
    try:
        path = build(force="--force" in argv)
    except (RuntimeError, OSError) as e:
        print(f"native: the window kernel did not build: {e}; the pure-torch path stays")
        return 1
    print(f"native: window kernel at {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
