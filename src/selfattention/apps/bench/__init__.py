"""The side-by-side benchmark: our backends against torch and the peers, one run.

    config = BenchConfig(suites=("dense",), sizes=(256,), threads=1, repeat=1)
    result = run(config, progress=print_a_line)   # BenchRun(meta, results, targets)
    markdown(result.meta, result.results, result.targets)

Every cell (suite, method, n) runs in a fresh forked process on the same seeded inputs; see
:mod:`selfattention.apps.bench.cells` for what is measured and :mod:`.report` for the tables.
The interleaved suites (:mod:`.interleaved`: window-ceiling, decode, stream, packed, gqa) time
all their methods in turn in one such process, so load hits them alike.
The ``ring`` suite (:mod:`.ring`) spawns gloo groups of 1, 2 and 4 processes on loopback.
``selfattention bench`` and ``benchmarks/bench.py`` are thin adapters over :func:`run`.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from selfattention.apps.bench.cells import flops, keys_attended, run_cell
from selfattention.apps.bench.config import FULL, LIMITS, QUICK, SUITES, WINDOW, BenchConfig
from selfattention.apps.bench.report import markdown, plot, tables, targets

__all__ = [
    "FULL",
    "LIMITS",
    "QUICK",
    "SUITES",
    "WINDOW",
    "BenchConfig",
    "BenchRun",
    "flops",
    "keys_attended",
    "markdown",
    "plot",
    "run",
    "run_cell",
    "tables",
    "targets",
]


@dataclass(frozen=True)
class BenchRun:
    """What a run measured: ``meta`` (settings, machine, wall time), one dict per cell in
    ``results`` and the issue's ``targets`` these results can judge."""

    meta: dict[str, Any]
    results: list[dict[str, Any]]
    targets: list[dict[str, Any]]

    @property
    def failed(self) -> bool:
        """True when no attention cell produced a time (the matmul ceiling alone does not count):
        the run measured nothing worth a table."""
        return not any("seconds" in r for r in self.results if r["method"] != "matmul")

    def first_error(self) -> str | None:
        return next((r["error"] for r in self.results if "error" in r), None)


def run(config: BenchConfig, progress: Callable[[dict[str, Any]], None] | None = None) -> BenchRun:
    """Measure every cell of ``config.plan()``, each in a forked process.

    ``progress`` is called with each cell's row ``{suite, method, n, ...}`` as it finishes.
    A cell that fails (an error, a crash, a timeout) is a row with ``error``; the run goes on.
    """
    cells = config.plan()
    started = time.time()
    # Imported once here, before any torch op (so no thread pool exists yet), then forked.
    import torch

    import selfattention  # noqa: F401

    try:
        import local_attention  # noqa: F401
    except ImportError:
        pass
    results = []
    ring_sizes = sorted({n for suite, method, n in cells if method.startswith("P=")})
    for suite, method, n in cells:
        if suite == "ring":  # spawned groups, one per world size, all sizes: measured below
            continue
        spec = dict(
            suite=suite,
            method=method,
            n=n,
            heads=config.heads,
            head_dim=config.head_dim,
            threads=config.threads,
            repeat=config.repeat,
        )
        measured = run_cell(spec, config.timeout)
        # An interleaved suite's cell comes back as one row per method it timed.
        for one in measured.get("rows") or [measured]:
            row = {"method": method, **one, "suite": suite, "n": n}
            results.append(row)
            if progress is not None:
                progress(row)
    if ring_sizes:
        from selfattention.apps.bench import ring

        args = (config.worlds, ring_sizes, config.head_dim, config.repeat, config.timeout)
        results += ring.measure(*args, progress=progress)
    meta = dict(
        threads=config.threads,
        heads=config.heads,
        head_dim=config.head_dim,
        batch=1,
        dtype="float32",
        window=WINDOW,
        quick=config.quick,
        machine=f"{platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        python=sys.version.split()[0],
        torch=torch.__version__,
        wall_s=time.time() - started,
    )
    return BenchRun(meta=meta, results=results, targets=targets(results))
