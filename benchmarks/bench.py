"""Run the side-by-side benchmark (same as ``selfattention bench``).

    python benchmarks/bench.py --quick                 # about a minute
    python benchmarks/bench.py --out results/bench/full  # the full sweep (minutes)
    python benchmarks/publish.py results/bench/full    # copy the plot to docs/img/

Results (results.json, results.md, time_vs_n.png) go to --out (default results/bench, gitignored).
The engine is ``selfattention.apps.bench``; the options are the command's.
"""

from __future__ import annotations

import sys

from selfattention.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
