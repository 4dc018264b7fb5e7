"""``selfattention smooth``: self-attention smoothing of a series against MA and EMA.

    selfattention smooth --demo                       # S&P 500 closes 1999-2018 (package arch)
    selfattention smooth prices.csv --column Close --out results/smooth

Writes ``smoothing.png`` (raw vs smoothed, trade-off curves), ``smoothed.csv`` (raw, attention,
MA and EMA at equal roughness), ``tradeoff.csv`` (every method across its setting) and
``metrics.json``; prints the comparison at equal roughness.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", nargs="?", type=Path, help="CSV file (.csv or .csv.gz) with a header"
    )
    parser.add_argument("--column", "-k", help="value column (default: Close with --demo)")
    parser.add_argument("--label-column", help="label column, e.g. dates (default: the first)")
    parser.add_argument("--demo", action="store_true", help="S&P 500 daily closes 1999-2018")
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


def _ema_at(x: np.ndarray, target: float) -> tuple[float, np.ndarray]:
    # Roughness falls monotonically as alpha falls: bisect for the alpha with the target roughness.
    from selfattention.apps import smoothing as sm

    lo, hi = 1e-4, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if sm.roughness(x, sm.exponential_moving_average(x, mid)) > target:
            hi = mid
        else:
            lo = mid
    a = (lo + hi) / 2
    return a, sm.exponential_moving_average(x, a)


def _ma_at(x: np.ndarray, target: float) -> tuple[int, np.ndarray]:
    from selfattention.apps import smoothing as sm

    best = min(range(1, 200), key=lambda n: abs(sm.roughness(x, sm.moving_average(x, n)) - target))
    return best, sm.moving_average(x, best)


def _zoom(x: np.ndarray, width: int = 160) -> tuple[int, int]:
    # Show the most volatile stretch: that is where smoothers differ.
    if len(x) <= width:
        return 0, len(x)
    moves = np.abs(np.diff(x, prepend=x[0]))
    vol = np.convolve(moves, np.ones(width), mode="valid")
    start = int(np.argmax(vol))
    return start, start + width


def run(args: argparse.Namespace) -> int:
    from selfattention.apps import datasets
    from selfattention.apps import smoothing as sm

    try:
        if args.demo:
            path = datasets.fetch("sp500")
            series = sm.load_series(path, args.column or "Close", missing=args.missing)
            series = sm.Series(series.values, series.labels, "S&P 500 close", series.dropped)
        elif args.path is not None:
            if not args.column:
                print("error: --column is required with a CSV path", file=sys.stderr)
                return 2
            series = sm.load_series(
                args.path, args.column, label_column=args.label_column, missing=args.missing
            )
        else:
            print("error: give a CSV path and --column, or --demo", file=sys.stderr)
            return 2
        x = series.values
        decay = None if args.no_position else args.decay
        kw = dict(temperature=args.temperature, decay=decay, lags=args.lags, window=args.window)
        att = sm.attention_smooth(x, **kw)
    except (FileNotFoundError, ValueError, datasets.DataUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    r = sm.roughness(x, att)
    alpha, ema = _ema_at(x, r)
    n, ma = _ma_at(x, r)
    chosen = {
        f"attention (τ={args.temperature:g}, ℓ={decay})": att,
        f"EMA (α={alpha:.3f})": ema,
        f"moving average (n={n})": ma,
    }
    rows = sm.tradeoff(
        x, temperature=args.temperature, decay=args.decay, lags=args.lags, window=args.window
    )
    levels = sm.compare_at_roughness(rows)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    png = sm.plot(series, chosen, rows, out / "smoothing.png", zoom=_zoom(x))
    with open(out / "smoothed.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "raw", "attention", "ema", "moving_average"])
        for i in range(len(x)):
            w.writerow([series.labels[i], x[i], f"{att[i]:.6g}", f"{ema[i]:.6g}", f"{ma[i]:.6g}"])
    with open(out / "tradeoff.csv", "w", newline="") as f:
        w = csv.DictWriter(
            f, fieldnames=["method", "setting", "roughness", "lag", "tracking_error"]
        )
        w.writeheader()
        w.writerows(rows)
    from selfattention.apps.training import write_metrics

    at_equal = {name: {**sm.score(x, y), **sm.by_regime(x, y)} for name, y in chosen.items()}
    write_metrics(
        out / "metrics.json",
        {
            "series": series.name,
            "points": len(x),
            "missing_handled": series.dropped,
            "settings": kw,
            "at_equal_roughness": at_equal,
            "by_roughness_level": levels,
        },
    )
    print(
        f"{series.name}: {len(x)} points; wrote {png}, {out / 'smoothed.csv'}, "
        f"{out / 'tradeoff.csv'}, {out / 'metrics.json'}"
    )
    print(
        f"\n{'':<36}{'all':>29} |{'volatile 10%':>21} |{'calm 90%':>21}\n{'method':<36}"
        f"{'roughness':>10}{'lag':>8}{'track err':>11} |"
        + f"{'roughness':>10}{'track err':>11} |"
        * 2
    )
    for name, s in at_equal.items():
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
    for row in levels:
        lag = "-" if row["lag"] is None else f"{row['lag']:.2f}"
        te = "-" if row["tracking_error"] is None else f"{row['tracking_error']:.2f}"
        print(f"{row['method']:<26}{row['roughness']:>10.2f}{lag:>8}{te:>11}")
    return 0
