"""S&P 500 daily prices, 1999-01-04 to 2018-12-31 (5,031 rows), from the PyPI package ``arch``.

:func:`locate` returns ``arch``'s ``sp500.csv.gz`` (columns Date, Open, High, Low, Close,
Adj Close, Volume; ``arch.data.sp500.load()`` reads the same file) when ``arch`` is installed;
``selfattention data fetch sp500`` installs the pinned ``arch``.
"""

from __future__ import annotations

from pathlib import Path

from selfattention.apps.datasets import Dataset, DataUnavailable, InstallPlan, missing, register
from selfattention.apps.datasets._install import find_package, pip_install, pip_plan

NAME = "sp500"
MODULE = "arch"
REQUIREMENT = "arch==8.0.0"  # the version the library was tested with
_CSV = Path("data") / "sp500" / "sp500.csv.gz"


def locate() -> Path:
    """``arch/data/sp500/sp500.csv.gz``; DataUnavailable names the fetch command."""
    root = find_package(MODULE)
    if root is None:
        raise missing(NAME, f"the package {REQUIREMENT} is not installed")
    if not (root / _CSV).is_file():
        raise missing(NAME, f"arch at {root} has no {_CSV}")
    return root / _CSV


def _plan() -> InstallPlan:
    return pip_plan(NAME, REQUIREMENT, f"site-packages/{MODULE}/{_CSV.as_posix()}")


def _install() -> Path:
    root = pip_install(MODULE, REQUIREMENT)
    if not (root / _CSV).is_file():
        raise DataUnavailable(
            f"arch is installed but has no {root / _CSV}; reinstall {REQUIREMENT}"
        )
    return root / _CSV


register(
    Dataset(
        name=NAME,
        description="S&P 500 daily OHLC and volume, 1999-2018, 5,031 rows (package arch)",
        licence="not stated by the arch package",
        locate=locate,
        plan=_plan,
        install=_install,
    )
)
