"""S&P 500 daily prices, 1999-01-04 to 2018-12-31 (5,031 rows), from the PyPI package ``arch``.

``fetch`` installs ``arch`` if it is missing and returns its ``sp500.csv.gz`` (columns Date, Open,
High, Low, Close, Adj Close, Volume); ``arch.data.sp500.load()`` reads the same file.
"""

from __future__ import annotations

from pathlib import Path

from selfattention.apps.datasets import Dataset, DataUnavailable, register
from selfattention.apps.datasets._install import ensure_package

REQUIREMENT = "arch==8.0.0"  # the version the library was tested with


def _fetch() -> Path:
    path = ensure_package("arch", REQUIREMENT) / "data" / "sp500" / "sp500.csv.gz"
    if not path.is_file():
        raise DataUnavailable(
            f"arch is installed but has no {path}; run: pip install --force-reinstall {REQUIREMENT}"
        )
    return path


register(
    Dataset(
        name="sp500",
        description="S&P 500 daily OHLC and volume, 1999-2018, 5,031 rows (package arch)",
        licence="not stated by the arch package",
        fetch=_fetch,
    )
)
