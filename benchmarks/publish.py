"""Merge benchmark runs, write the table and plot, and copy the plot to docs/img/.

    python benchmarks/publish.py results/bench/full [results/bench/rerun ...]

A later run replaces the earlier runs' suites that it contains (each suite stays one run:
all its methods measured side by side on the same inputs). Writes results/bench/merged/ and
docs/img/bench_time_vs_n.png, and prints the markdown for docs/performance.md.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from selfattention.apps import bench

if __name__ == "__main__":
    runs = [Path(p) for p in (sys.argv[1:] or ["results/bench"])]
    suites: dict[str, list[dict]] = {}
    metas = []
    for run in runs:
        data = json.loads((run / "results.json").read_text())
        metas.append(data["meta"])
        for suite in {r["suite"] for r in data["results"]}:
            suites[suite] = [r for r in data["results"] if r["suite"] == suite]
    results = [r for suite in bench.SUITES for r in suites.get(suite, [])]
    out = runs[0].parent / "merged"
    out.mkdir(parents=True, exist_ok=True)
    found = bench.targets(results)
    (out / "results.json").write_text(
        json.dumps(dict(meta=metas, results=results, targets=found), indent=1)
    )
    bench.plot(results, out / "time_vs_n.png")
    docs = Path(__file__).resolve().parents[1] / "docs" / "img"
    docs.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "time_vs_n.png", docs / "bench_time_vs_n.png")
    print(bench.tables(results))
    print("| target | measured | bound | met |\n|---|---:|---:|---|")
    for t in found:
        print(f"| {t['target']} | {t['measured']:.3g} | {t['bound']} | {('no', 'yes')[t['met']]} |")
    print("\n" + "\n".join(f"run: {m.get('machine')}, {m.get('wall_s', 0):.0f} s" for m in metas))
