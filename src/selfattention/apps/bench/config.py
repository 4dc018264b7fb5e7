"""What a benchmark run measures: the suites, their size sweeps and methods, and ``BenchConfig``.

A cell is one (suite, method, n): fp32 inputs q, k, v of shape (1, heads, n, head_dim), seeded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "FULL",
    "INTERLEAVED_METHOD",
    "LIMITS",
    "QUICK",
    "RING_METHOD",
    "SUITES",
    "WINDOW",
    "BenchConfig",
]

WINDOW = 128  # the window suites' band: query i sees keys i-128 … i+128
SUITES: dict[str, tuple[str, str]] = {
    # suite: (what, reference method for ratios)
    "dense": ("dense softmax, forward", "sdpa"),
    "window": (f"window ±{WINDOW}, forward", "sdpa-band"),
    "window-train": (f"window ±{WINDOW}, forward + backward", "sdpa-band"),
    "relu-sum": ("ReLU and sum normalisation, forward", "sdpa"),
    # Interleaved suites (apps.bench.interleaved): every method in one process, in turn.
    "window-ceiling": (f"window ±{WINDOW} against the matmul ceiling, interleaved", "window"),
    "decode": ("one decode step with a KV cache against recomputing, interleaved", "cached step"),
    "stream": ("streaming window (32, 32) attention on generated frames", "100 ms chunks"),
    "packed": ("packed (cu_seqlens) against padded causal batches, interleaved", "padded"),
    "gqa": ("grouped-query attention against SDPA enable_gqa, interleaved", "sdpa enable_gqa"),
    # Spawned gloo groups on loopback (apps.bench.ring): its own table, see ring_report.
    "ring": ("ring attention on 1, 2, 4 loopback processes: time, bytes, peak", "ring"),
}
RING_METHOD = "ring"  # cells ("ring", "P=<world>", n) and ("ring", "side-by-side", n)
INTERLEAVED_METHOD = "interleaved"  # the one cell of an interleaved suite at each n
# suite: (sizes n, methods); "matmul" is the machine's ceiling, a plain matmul of equal FLOPs.
FULL: dict[str, tuple[list[int], list[str]]] = {
    "dense": ([1024, 2048, 4096, 8192, 16384], ["auto", "chunked", "sdpa", "math", "matmul"]),
    "window": (
        [1024, 4096, 16384, 65536, 262144],
        ["window", "chunked", "sdpa-band", "flex", "local-attention", "math", "matmul"],
    ),
    "window-train": (
        [4096, 16384, 65536, 262144],
        ["window", "sdpa-band", "flex", "local-attention", "math", "matmul"],
    ),
    "relu-sum": ([4096, 16384], ["chunked-relu", "chunked-sum", "math-relu", "sdpa", "matmul"]),
    "window-ceiling": ([16384], [INTERLEAVED_METHOD]),
    "decode": ([4096], [INTERLEAVED_METHOD]),
    "stream": ([6000], [INTERLEAVED_METHOD]),  # 60 s of 10 ms frames
    "packed": ([8192], [INTERLEAVED_METHOD]),
    "gqa": ([4096], [INTERLEAVED_METHOD]),
    "ring": ([4096, 16384, 65536], [RING_METHOD]),
}
QUICK: dict[str, tuple[list[int], list[str]]] = {
    "dense": ([2048], ["auto", "chunked", "sdpa", "math", "matmul"]),
    "window": ([4096], ["window", "sdpa-band", "flex", "local-attention", "matmul"]),
    "window-train": ([4096], ["window", "sdpa-band", "matmul"]),
    "relu-sum": ([2048], ["chunked-relu", "chunked-sum", "sdpa", "matmul"]),
    "window-ceiling": ([4096], [INTERLEAVED_METHOD]),
    "decode": ([1024], [INTERLEAVED_METHOD]),
    "stream": ([1000], [INTERLEAVED_METHOD]),
    "packed": ([2048], [INTERLEAVED_METHOD]),
    "gqa": ([1024], [INTERLEAVED_METHOD]),
    "ring": ([2048], [RING_METHOD]),
}
# Sizes past which a method is skipped (memory or minutes): n² weights, n² masks, peers' limits.
LIMITS: dict[str, int] = {
    "math": 8192,
    "math-relu": 8192,
    "sdpa-band": 16384,
    "chunked": 16384,
    "local-attention": 65536,
    "flex": 65536,
}


def _positive_int(name: str, option: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} ({option}) must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run.

    Attributes:
        suites: which of ``SUITES`` to run (default: all, in that order).
        quick: the ``QUICK`` plan (one size per suite) instead of ``FULL``.
        sizes: override every suite's n sweep (each n >= 1).
        threads: torch threads in each cell (>= 1).
        repeat: timed repeats per cell, the median is reported (>= 1); in the interleaved
            suites, rounds of every method in turn, each method's best is reported.
        heads, head_dim: the inputs' h and d (>= 1).
        timeout: seconds a cell may take before it is killed (> 0); in the ``ring`` suite,
            seconds per n for each world size's processes, also their process-group timeout.
        worlds: the ``ring`` suite's process counts P (each >= 1).

    Raises:
        ValueError: naming the option, what it got and what is allowed.
    """

    suites: tuple[str, ...] = tuple(SUITES)
    quick: bool = False
    sizes: tuple[int, ...] | None = None
    threads: int = 2
    repeat: int = 3
    heads: int = 8
    head_dim: int = 64
    timeout: float = 600.0
    worlds: tuple[int, ...] = (1, 2, 4)

    def __post_init__(self) -> None:
        if not self.suites:
            raise ValueError(f"suites (--suites) must name at least one of {', '.join(SUITES)}")
        unknown = [s for s in self.suites if s not in SUITES]
        if unknown:
            raise ValueError(
                f"suites (--suites) must be among {', '.join(SUITES)}, got {', '.join(unknown)}"
            )
        if self.sizes is not None:
            bad = [n for n in self.sizes if isinstance(n, bool) or not isinstance(n, int) or n < 1]
            if bad or not self.sizes:
                raise ValueError(f"sizes (--sizes) must be integers n >= 1, got {list(self.sizes)}")
        _positive_int("threads", "--threads", self.threads)
        _positive_int("repeat", "--repeat", self.repeat)
        _positive_int("heads", "--heads", self.heads)
        _positive_int("head_dim", "--head-dim", self.head_dim)
        if not (isinstance(self.timeout, int | float) and self.timeout > 0):
            raise ValueError(f"timeout (--timeout) must be > 0 seconds, got {self.timeout!r}")
        if not math.isfinite(self.timeout):
            raise ValueError(f"timeout (--timeout) must be finite, got {self.timeout!r}")
        bad = [p for p in self.worlds if isinstance(p, bool) or not isinstance(p, int) or p < 1]
        if bad or not self.worlds:
            raise ValueError(
                f"worlds (--worlds) must be process counts >= 1, got {list(self.worlds)}"
            )

    def plan(self) -> list[tuple[str, str, int]]:
        """The cells to run, (suite, method, n), in order; methods past their ``LIMITS`` are
        left out; the ``ring`` suite is one cell per (P, n) and one side-by-side cell.
        Raises ValueError when nothing is left to run."""
        table = QUICK if self.quick else FULL
        cells = []
        for suite in self.suites:
            sizes, methods = table[suite]
            if suite == "ring":
                from selfattention.apps.bench.ring import side_by_side_n

                swept = list(self.sizes or sizes)
                cells += [(suite, f"P={p}", n) for p in self.worlds for n in swept]
                cells.append((suite, "side-by-side", side_by_side_n(swept)))
                continue
            for n in self.sizes or sizes:
                cells += [(suite, m, n) for m in methods if n <= LIMITS.get(m, math.inf)]
        if not cells:  # pragma: no cover - every suite has an unlimited method
            raise ValueError("these suites and sizes leave no cell to run")
        return cells
