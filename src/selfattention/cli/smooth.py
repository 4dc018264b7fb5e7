"""``selfattention smooth``: self-attention smoothing of a series against MA and EMA.

    selfattention smooth --demo                       # S&P 500 closes 1999-2018 (data set sp500)
    selfattention smooth prices.csv --column Close --out results/smooth

Rows whose labels are dates are sorted by date, oldest first (the smoother is causal), and the
command says so; two rows with the same date are an error. Writes ``smoothing.png`` (raw vs
smoothed, trade-off curves), ``smoothed.csv`` (raw, attention, MA and EMA at equal roughness),
``tradeoff.csv`` (every method across its setting) and ``metrics.json``; prints the comparison at
equal roughness. The computation is :mod:`selfattention.apps.smoothing`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from pathlib import Path

from selfattention.apps import datasets
from selfattention.apps import smoothing as sm
from selfattention.cli._common import EXIT_USAGE, error, one_line
from selfattention.cli._files import out_folder, write_text

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", nargs="?", type=Path, help="CSV file (.csv or .csv.gz) with a header"
    )
    parser.add_argument("--column", "-k", help="value column (default: Close with --demo)")
    parser.add_argument("--label-column", help="label column, e.g. dates (default: the first)")
    parser.add_argument(
        "--demo", action="store_true", help="S&P 500 daily closes 1999-2018 (data set sp500)"
    )
    parser.add_argument(
        "--missing",
        choices=("error", "drop", "interpolate"),
        default="error",
        help="empty or NaN cells: stop with an error (default), drop the rows, or interpolate",
    )
    parser.add_argument("--temperature", "-t", type=float, default=100.0, help="τ (default 100)")
    parser.add_argument("--decay", type=float, default=5.0, help="position decay ℓ, steps (5)")
    parser.add_argument("--no-position", action="store_true", help="content similarity only")
    parser.add_argument("--lags", type=int, default=5, help="delay-embedding length (default 5)")
    parser.add_argument("--window", type=int, default=60, help="points attended to (default 60)")
    parser.add_argument("--out", "-o", type=Path, default=Path("results/smooth"))


def _inputs(args: argparse.Namespace) -> tuple[Path | None, sm.SmoothConfig]:
    """The CSV path (None with --demo) and the config; ValueError for bad options."""
    config = sm.SmoothConfig(
        temperature=args.temperature,
        decay=None if args.no_position else args.decay,
        lags=args.lags,
        window=args.window,
    )
    if args.demo and args.path is not None:
        raise ValueError("give a CSV path or --demo, not both")
    if not args.demo:
        if args.path is None:
            raise ValueError("give a CSV path and --column, or --demo")
        if not args.column:
            raise ValueError("--column is required with a CSV path")
    return args.path, config


def _finite(value: object) -> object:
    """JSON has no Infinity/NaN: such floats (e.g. --temperature inf) are written as strings."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _csv(header: list[str], rows: list[list[object]]) -> str:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    try:
        path, config = _inputs(args)
        out = out_folder(args.out)
    except ValueError as e:
        error(one_line(e))
        return EXIT_USAGE
    if path is None:  # --demo: located, never installed (DataUnavailable names the fetch command)
        series = sm.load_series(
            datasets.require("sp500"), args.column or "Close", missing=args.missing
        )
        series = sm.Series(series.values, series.labels, "S&P 500 close", series.dropped,
                           series.order)  # fmt: skip
    else:
        series = sm.load_series(
            path, args.column, label_column=args.label_column, missing=args.missing
        )
    result = sm.compare(series, config)
    x = series.values

    png = sm.plot(series, result.chosen, result.rows, out / "smoothing.png", zoom=result.zoom)
    att, ema, ma = result.chosen.values()
    table = [
        [series.labels[i], x[i], f"{att[i]:.6g}", f"{ema[i]:.6g}", f"{ma[i]:.6g}"]
        for i in range(len(x))
    ]
    write_text(
        out / "smoothed.csv", _csv(["label", "raw", "attention", "ema", "moving_average"], table)
    )
    fields = ["method", "setting", "roughness", "lag", "tracking_error"]
    write_text(out / "tradeoff.csv", _csv(fields, [[r[f] for f in fields] for r in result.rows]))
    metrics = {
        "series": series.name,
        "points": len(x),
        "order": series.order,
        "missing_handled": series.dropped,
        "settings": result.settings,
        "at_equal_roughness": result.at_equal,
        "by_roughness_level": result.levels,
    }
    write_text(out / "metrics.json", json.dumps(_finite(metrics), indent=2) + "\n")
    _print(series, result, [png, out / "smoothed.csv", out / "tradeoff.csv", out / "metrics.json"])
    return 0


def _print(series: sm.Series, result: sm.Comparison, written: list[Path]) -> None:
    print(f"{series.name}: {len(series.values)} points; wrote {', '.join(map(str, written))}")
    if series.order != sm.FILE_ORDER:
        print(f"rows {series.order}")
    print(
        f"\n{'':<36}{'all':>29} |{'volatile 10%':>21} |{'calm 90%':>21}\n{'method':<36}"
        f"{'roughness':>10}{'lag':>8}{'track err':>11} |"
        + f"{'roughness':>10}{'track err':>11} |"
        * 2
    )
    for name, s in result.at_equal.items():
        v, c = s["volatile"], s["calm"]
        print(
            f"{name:<36}{s['roughness']:>10.3f}{s['lag']:>8.2f}{s['tracking_error']:>11.2f} |"
            f"{v['roughness']:>10.3f}{v['tracking_error']:>11.2f} |"
            f"{c['roughness']:>10.3f}{c['tracking_error']:>11.2f} |"
        )
    print(
        f"\nat equal roughness (interpolated along each sweep):\n{'method':<26}"
        f"{'roughness':>10}{'lag':>8}{'track err':>11}"
    )
    for row in result.levels:
        lag = "-" if row["lag"] is None else f"{row['lag']:.2f}"
        te = "-" if row["tracking_error"] is None else f"{row['tracking_error']:.2f}"
        print(f"{row['method']:<26}{row['roughness']:>10.2f}{lag:>8}{te:>11}")
