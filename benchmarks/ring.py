"""Benchmark of sa.distributed.ring_attention on loopback (prints; not a test).

    .venv/bin/python benchmarks/ring.py            # n = 4096, 16384, 65536: under 10 minutes
    .venv/bin/python benchmarks/ring.py --quick    # n up to 16384

A thin wrapper over the ``ring`` suite of ``selfattention bench`` (the engine is
:mod:`selfattention.apps.bench.ring`): 1, 2 and 4 gloo processes on 127.0.0.1, one thread each,
forward of full, causal-zigzag and window (256, 256), b=1 h=1 d=64 fp32: time (slowest rank),
bytes sent per rank (counted by ``sa.distributed.traffic()``), peak memory per rank, one ring
step's transfer alone; then ring full n=16384 on 2 processes × 1 thread against single-process
``sa.attention`` with 2 threads, interleaved. Same as
``selfattention bench --suites ring --sizes 4096 16384 65536``.
"""

from __future__ import annotations

import argparse

from selfattention.apps import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n up to 16384")
    args = parser.parse_args()
    sizes = (4096, 16384) if args.quick else (4096, 16384, 65536)
    config = bench.BenchConfig(suites=("ring",), sizes=sizes, head_dim=64)
    result = bench.run(config, progress=lambda row: print(row, flush=True))
    print(bench.markdown(result.meta, result.results, result.targets))
    print(f"total {result.meta['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
