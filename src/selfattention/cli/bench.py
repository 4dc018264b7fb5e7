"""``selfattention bench``: our backends against torch and the peers, side by side, one run.

    selfattention bench --quick                       # about a minute
    selfattention bench --suites dense --sizes 512 --threads 1
    selfattention bench --suites window-ceiling       # window vs matmul, flex, local-attention
    selfattention bench --suites ring --sizes 4096 16384   # 1, 2, 4 processes on loopback

Writes results.json, results.md and time_vs_n.png to ``--out``. The engine is
:mod:`selfattention.apps.bench`; this module turns argv into a ``BenchConfig``, prints each cell
as it finishes and exits non-zero when no attention cell could be measured.
"""

from __future__ import annotations

import argparse
import json

from selfattention.apps import bench as engine
from selfattention.apps.bench import SUITES, BenchConfig
from selfattention.cli._common import EXIT_FAILURE, EXIT_USAGE, error, one_line
from selfattention.cli._files import out_folder, write_text

__all__ = ["add_arguments", "config_from", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a one-minute subset")
    parser.add_argument("--out", default="results/bench", help="folder for JSON, table, plot")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per cell (>= 1)")
    parser.add_argument("--repeat", type=int, default=3, help="timed repeats per cell (median)")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    # No argparse ``choices``: BenchConfig names an unknown suite in one line (exit 2).
    parser.add_argument("--suites", nargs="*", help=f"of {', '.join(SUITES)} (default: all)")
    parser.add_argument("--sizes", nargs="*", type=int, help="override the n sweep (n >= 1)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per cell")
    parser.add_argument(
        "--worlds", nargs="*", type=int, help="ring suite: process counts (default: 1 2 4)"
    )


def config_from(args: argparse.Namespace) -> BenchConfig:
    """argv -> BenchConfig (ValueError naming the option when a value is impossible)."""
    return BenchConfig(
        suites=tuple(args.suites) if args.suites else tuple(SUITES),
        quick=args.quick,
        sizes=tuple(args.sizes) if args.sizes else None,
        threads=args.threads,
        repeat=args.repeat,
        heads=args.heads,
        head_dim=args.head_dim,
        timeout=args.timeout,
        worlds=tuple(args.worlds) if args.worlds else (1, 2, 4),
    )


def _show(row: dict) -> None:
    shown = row.get("error") or f"{row['seconds']:.4g} s"
    if "sent_bytes" in row:
        shown += f", sent {row['sent_bytes'] / 2**20:.4g} MiB/rank"
    if "peak_mb" in row and "error" not in row:
        shown += f", peak {row['peak_mb']:.0f} MB"
    print(f"{row['suite']:14s} n={row['n']:<7d} {row['method']:16s} {shown}", flush=True)


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from(args)
        out = out_folder(args.out)  # before minutes of compute, not after
    except ValueError as e:
        error(one_line(e))
        return EXIT_USAGE
    result = engine.run(config, progress=_show)
    report = engine.markdown(result.meta, result.results, result.targets)
    body = dict(meta=result.meta, results=result.results, targets=result.targets)
    write_text(out / "results.json", json.dumps(body, indent=1))
    write_text(out / "results.md", report)
    engine.plot(result.results, out / "time_vs_n.png")
    print(report)
    print(f"wrote {out}/results.json, results.md, time_vs_n.png in {result.meta['wall_s']:.0f} s")
    if result.failed:
        error(f"every attention cell failed (first: {result.first_error()})")
        return EXIT_FAILURE
    return 0
