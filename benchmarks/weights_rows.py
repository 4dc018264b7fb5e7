"""Weights of 16 chosen rows from the window backend at n = 65,536: time and memory.

    python benchmarks/weights_rows.py [--n 65536] [--threads 1] [--repeats 5]

One call: b 1, h 8, d 64, window ±128, fp32. ``plain`` is ``sa.attention(q, k, v, window=128)``;
``rows`` the same call with ``return_weights=True, weights_rows=<16 rows>`` (the fast pass keeps
the log-sum-exp; the 16 rows of weights are rebuilt from it). Timing: both modes interleaved in
one process after a warm-up, median of ``--repeats``. Memory: each mode in a fresh process;
``peak`` is the process's resident high-water mark (ru_maxrss, everything incl. torch and the
inputs), ``extra`` what the call held beyond what was resident before it
(``selfattention.apps.measure.PeakRSS``). Targets (issue 11): time ratio < 1.2, peak < 1 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

import selfattention as sa
from selfattention.apps.measure import PeakRSS

ROWS = [0, 1, 127, 128, 4095, 10000, 20000, 32767, 32768, 40000, 50000, 60000, 65000, 65534,
        65535, 3]  # fmt: skip


def make(n: int):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(1, 8, n, 64, generator=g) for _ in range(3)]


def run(mode: str, q, k, v, rows):
    if mode == "plain":
        return sa.attention(q, k, v, window=128)
    return sa.attention(q, k, v, window=128, return_weights=True, weights_rows=rows)


def child(args) -> dict:
    torch.set_num_threads(args.threads)
    q, k, v = make(args.n)
    rows = [r % args.n for r in ROWS]
    with torch.no_grad():
        if args.child == "time":
            for mode in ("plain", "rows"):
                run(mode, q, k, v, rows)  # warm-up
            times = {"plain": [], "rows": []}
            for _ in range(args.repeats):
                for mode in ("plain", "rows"):
                    t0 = time.perf_counter()
                    run(mode, q, k, v, rows)
                    times[mode].append(time.perf_counter() - t0)
            d = sa.explain_dispatch(q, k, v, window=128, return_weights=True, weights_rows=rows)
            return {m: statistics.median(t) for m, t in times.items()} | {"dispatch": str(d)}
        with PeakRSS(release=True) as probe:
            result = run(args.child, q, k, v, rows)
        shape = tuple(result[1].shape) if isinstance(result, tuple) else None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"peak": peak, "extra": probe.extra, "weights_shape": shape}


def spawn(args, what: str) -> dict:
    cmd = [sys.executable, __file__, "--child", what, "--n", str(args.n)]
    cmd += ["--threads", str(args.threads), "--repeats", str(args.repeats)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=65536)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", choices=["time", "plain", "rows"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    t = spawn(args, "time")
    mem = {mode: spawn(args, mode) for mode in ("plain", "rows")}
    mib = 2**20
    print(f"n={args.n}, b=1, h=8, d=64, window ±128, fp32, {args.threads} thread(s)")
    print(t["dispatch"])
    print(f"window call             : {t['plain'] * 1e3:8.1f} ms")
    ratio = t["rows"] / t["plain"]
    print(f"+ weights of 16 rows    : {t['rows'] * 1e3:8.1f} ms   ratio {ratio:.3f} (target < 1.2)")
    for mode, m in mem.items():
        print(f"peak RSS {mode:6s} (fresh) : {m['peak'] / mib:8.1f} MiB   call's extra "
              f"{m['extra'] / mib:7.1f} MiB   weights {m['weights_shape']}")  # fmt: skip
    print("target: peak < 1024 MiB")


if __name__ == "__main__":
    main()
