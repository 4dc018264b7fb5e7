"""Run the side-by-side benchmark (same as ``selfattention bench``).

    python benchmarks/bench.py --quick                 # about a minute
    python benchmarks/bench.py --out results/bench/full  # the full sweep (minutes)
    python benchmarks/publish.py results/bench/full    # copy the plot to docs/img/

Results (results.json, results.md, time_vs_n.png) go to --out (default results/bench, gitignored).
"""

from __future__ import annotations

import argparse
import sys

from selfattention.cli import bench

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="benchmarks/bench.py", description=__doc__)
    bench.add_arguments(parser)
    sys.exit(bench.run(parser.parse_args()))
