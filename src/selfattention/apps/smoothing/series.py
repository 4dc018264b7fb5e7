"""Reading a series from a CSV file, oldest first.

The smoother is causal: point i may only draw on points before it. That holds only if the rows
are in time order, so when the label column holds dates the rows are sorted by date (oldest
first) and the ``Series`` says so in ``order``; two rows with the same date are refused. Labels
that are not dates (or no label column) leave the rows in file order.
"""

from __future__ import annotations

import csv
import gzip
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

__all__ = ["FILE_ORDER", "Series", "load_series", "parse_dates"]

FILE_ORDER = "file order"  # Series.order when nothing was reordered

# Formats tried after ISO 8601, in order; day/month and month/day are checked for ambiguity.
_DATE_FORMATS = ("%m/%d/%Y", "%d/%m/%Y", "%Y/%m/%d", "%d.%m.%Y", "%d-%b-%Y", "%b %d, %Y")


@dataclass(frozen=True)
class Series:
    """A series read from a file: ``values`` (n,) float64, ``labels`` (n,) e.g. dates, ``name``.

    ``order`` says how the rows were ordered: ``FILE_ORDER``, or a sentence saying they were
    sorted by date and why (the file ran newest first, or was out of order at some row)."""

    values: np.ndarray
    labels: list[str]
    name: str
    dropped: int = 0  # rows removed or filled because of missing values
    order: str = FILE_ORDER


def _open_text(path: Path):
    return gzip.open(path, "rt", newline="") if path.suffix == ".gz" else open(path, newline="")


def _posix(when: datetime) -> float:
    # Naive times are read as UTC, not local time, so a DST change cannot reorder them.
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _iso(text: str) -> float | None:
    if "-" not in text:  # "12345" is a number, not a date
        return None
    try:
        return _posix(datetime.fromisoformat(text))
    except ValueError:
        return None


def _with_format(labels: list[str], fmt: str) -> list[float] | None:
    try:
        return [_posix(datetime.strptime(s, fmt)) for s in labels]
    except ValueError:
        return None


def parse_dates(labels: list[str]) -> list[float] | None:
    """Each label as a POSIX time, when every label is a date in one format (ISO 8601 such as
    2020-01-31 or 2020-01-31T09:30, or 01/31/2020, 31/01/2020, 2020/01/31, 31.01.2020,
    31-Jan-2020, Jan 31, 2020); None otherwise.

    Raises:
        ValueError: the labels read as both month/day and day/month and the two orders differ.
    """
    labels = [s.strip() for s in labels]
    if not labels:
        return None
    times = [_iso(s) for s in labels]
    if all(t is not None for t in times):
        return times  # type: ignore[return-value]
    for fmt in _DATE_FORMATS:
        times = _with_format(labels, fmt)
        if times is None:
            continue
        if fmt == "%m/%d/%Y":
            other = _with_format(labels, "%d/%m/%Y")
            if other is not None and np.argsort(other).tolist() != np.argsort(times).tolist():
                raise ValueError(
                    f"dates such as {labels[0]!r} read as both month/day and day/month; "
                    "write them as YYYY-MM-DD"
                )
        return times
    return None


def _order(
    path: Path, labels: list[str], rows: list[int], label_name: str | None
) -> tuple[np.ndarray, str]:
    """The permutation that puts the rows oldest first, and the note saying what was done."""
    keep = np.arange(len(labels))
    times = parse_dates(labels) if label_name is not None else None
    if times is None:
        return keep, FILE_ORDER
    t = np.asarray(times)
    perm = np.argsort(t, kind="stable")
    same = np.flatnonzero(np.diff(t[perm]) == 0)
    if len(same):
        a, b = sorted((rows[perm[same[0]]], rows[perm[same[0] + 1]]))
        raise ValueError(
            f"{path}: rows {a} and {b} have the same date {labels[perm[same[0]]]!r} in column "
            f"{label_name!r}; keep one row per date"
        )
    if (perm == keep).all():
        return keep, FILE_ORDER
    if (perm == keep[::-1]).all():
        return perm, f"sorted by date, oldest first: {path} lists them newest first"
    k = int(np.flatnonzero(np.diff(t) < 0)[0]) + 1  # the first row older than the one before
    return perm, (
        f"sorted by date, oldest first: {path} is out of order from row {rows[k]} "
        f"({labels[k]} after {labels[k - 1]})"
    )


def load_series(
    path: str | Path,
    column: str,
    *,
    label_column: str | None = None,
    missing: str = "error",
) -> Series:
    """Read one numeric column of a CSV file (``.csv`` or ``.csv.gz``, header row required).

    Rows are taken as equally spaced observations: gaps in the dates (weekends, holidays) are
    not filled, as is usual for daily prices. When the labels are dates the rows are sorted by
    date, oldest first (``Series.order`` says whether and why); otherwise file order is kept.

    Args:
        column: header of the value column.
        label_column: header of a label column (e.g. dates); default: the first column if it is
            not ``column``, else row numbers.
        missing: what to do with empty or NaN cells: ``"error"`` (default), ``"drop"`` the rows, or
            ``"interpolate"`` linearly between the neighbours in time (ends take the nearest value).

    Raises:
        FileNotFoundError: no such file. ValueError: no such column, a non-numeric cell (named by
        row and column), a missing value with ``missing="error"``, two rows with the same date,
        fewer than 3 values.
    """
    if missing not in ("error", "drop", "interpolate"):
        raise ValueError(f"missing must be 'error', 'drop' or 'interpolate', got {missing!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"series file {path} does not exist")
    try:
        return _read(path, column, label_column, missing)
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, csv.Error) as e:
        raise ValueError(f"{path} is not a readable CSV text file ({e})") from None


def _read(path: Path, column: str, label_column: str | None, missing: str) -> Series:
    with _open_text(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty (expected a header row and values)")
        header = [h.strip().lstrip("\ufeff") for h in header]
        if column not in header:
            raise ValueError(f"{path} has no column {column!r}; columns: {', '.join(header)}")
        col = header.index(column)
        if label_column is None:
            lab = 0 if col != 0 else None
        elif label_column in header:
            lab = header.index(label_column)
        else:
            raise ValueError(f"{path} has no column {label_column!r}; columns: {', '.join(header)}")
        values: list[float] = []
        labels: list[str] = []
        rows: list[int] = []  # the file's row number of each value (the header is row 1)
        for row_no, row in enumerate(reader, start=2):
            if not row:
                continue
            cell = row[col].strip() if col < len(row) else ""
            labels.append(row[lab] if lab is not None and lab < len(row) else str(row_no - 1))
            rows.append(row_no)
            if cell == "" or cell.lower() in ("nan", "na", "null"):
                if missing == "error":
                    raise ValueError(
                        f"{path}: row {row_no}, column {column!r} is missing ({cell!r}); "
                        "use missing='drop' or 'interpolate' (--missing on the command line)"
                    )
                values.append(math.nan)
                continue
            try:
                v = float(cell)
            except ValueError:
                raise ValueError(
                    f"{path}: row {row_no}, column {column!r} is not a number: {cell!r}"
                ) from None
            if not math.isfinite(v):
                raise ValueError(f"{path}: row {row_no}, column {column!r} is {cell!r}")
            values.append(v)
    perm, order = _order(path, labels, rows, header[lab] if lab is not None else None)
    x = np.asarray(values, dtype=np.float64)[perm]
    labels = [labels[i] for i in perm]
    bad = np.isnan(x)
    if bad.any():
        if missing == "drop":
            labels = [lb for lb, b in zip(labels, bad, strict=True) if not b]
            x = x[~bad]
        else:
            idx = np.arange(len(x))
            if bad.all():
                raise ValueError(f"{path}: column {column!r} has no values at all")
            x = np.interp(idx, idx[~bad], x[~bad])
    if len(x) < 3:
        raise ValueError(f"{path}: column {column!r} has {len(x)} values; need at least 3")
    return Series(values=x, labels=labels, name=column, dropped=int(bad.sum()), order=order)
