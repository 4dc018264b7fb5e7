"""Time and memory of full against truncated attention over real speech, as the audio grows from
seconds to minutes; each measurement in a fresh process for a clean peak-memory reading."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from selfattention.apps.measure import PeakRSS
from selfattention.apps.speech.clips import join_frames, load_clips
from selfattention.apps.speech.features import log_mel, read_wav, standardise
from selfattention.functional import attention

__all__ = [
    "ScalingConfig",
    "format_row",
    "full_attention_bytes",
    "markdown_table",
    "measure",
    "measure_in_subprocess",
    "scaling_table",
]


def _positive_int(name: str, option: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} ({option}) must be an integer >= 1, got {value!r}")


def _check_window(window: tuple[int, ...]) -> None:
    """A (left, right) frame window, both ints >= 0 (``--window LEFT [RIGHT]``)."""
    if len(window) != 2 or not all(isinstance(v, int) and v >= 0 for v in window):
        raise ValueError(f"window (--window) takes LEFT [RIGHT] frames >= 0, got {list(window)}")


@dataclass(frozen=True)
class ScalingConfig:
    """What ``scaling_table`` measures.

    Attributes:
        minutes: audio lengths in minutes (each > 0; 1 minute = 6,000 frames).
        window: (left, right) frames of the truncated runs (each >= 0).
        backends: attention backends to compare (names in the registry, e.g. math, sdpa, window).
        threads: torch threads per run (>= 1).
        memory_budget_gib: full attention whose weights need more is not run (> 0).
        time_budget_s: a run predicted to take longer is not run (> 0).
        heads, head_dim: the q, k, v projected from the frames (>= 1).

    Raises:
        ValueError: naming the option, what it got and what is allowed.
    """

    minutes: tuple[float, ...] = (0.1, 0.5, 1, 2, 5, 10, 30)
    window: tuple[int, int] = (32, 32)
    backends: tuple[str, ...] = ("math", "sdpa", "window")
    threads: int = 1
    memory_budget_gib: float = 8.0
    time_budget_s: float = 120.0
    heads: int = 4
    head_dim: int = 16

    def __post_init__(self) -> None:
        from selfattention.functional.backends import REGISTRY

        if not self.minutes or not all(
            isinstance(m, int | float) and math.isfinite(m) and round(m * 6000) >= 1
            for m in self.minutes
        ):
            raise ValueError(
                f"minutes (--minutes) must be > 0 (at least one 10 ms frame), "
                f"got {list(self.minutes)}"
            )
        _check_window(self.window)
        unknown = [b for b in self.backends if b not in REGISTRY]
        if not self.backends or unknown:
            raise ValueError(
                f"backends (--backends) must be among {', '.join(REGISTRY)}, "
                f"got {', '.join(unknown) or 'none'}"
            )
        _positive_int("threads", "--threads", self.threads)
        _positive_int("heads", "--heads", self.heads)
        _positive_int("head_dim", "--head-dim", self.head_dim)
        for name, option in (("memory_budget_gib", "--budget-gib"), ("time_budget_s", "")):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value > 0):
                where = f" ({option})" if option else ""
                raise ValueError(f"{name}{where} must be > 0, got {value!r}")


def measure(
    n_frames: int,
    backend: str,
    window: tuple[int, int] | None,
    heads: int = 4,
    head_dim: int = 16,
    repeats: int = 3,
    root: str | Path | None = None,
    frames_file: str | Path | None = None,
) -> dict:
    """Time and extra peak memory of one attention call over ``n_frames`` real frames.

    The frames (the clips joined, repeated to length; or the (k, 80) array in ``frames_file``,
    repeated) are projected to q, k, v (1, heads, n, head_dim) by a fixed random linear map; only
    ``attention(q, k, v, window=..., backend=...)`` is timed (best of ``repeats``, no grad).
    Memory is what the calls hold at once beyond their inputs: the resident high-water mark is
    reset after the inputs are built and free heap is returned to the system
    (``measure.PeakRSS(release=True)``), then read after the calls, so loading and projecting
    the frames does not count; the output does. ``measure_in_subprocess`` gives the clean
    reading.
    """
    if frames_file is not None:
        base = torch.from_numpy(np.load(frames_file))
        frames = base.repeat(-(-n_frames // len(base)), 1)[:n_frames]
    else:
        frames = join_frames(load_clips(root), n_frames)
    frames = standardise(frames)  # (n, 80)
    g = torch.Generator().manual_seed(0)
    proj = torch.randn(3, frames.shape[1], heads * head_dim, generator=g) / math.sqrt(80)
    q, k, v = (
        (frames @ proj[t]).view(1, n_frames, heads, head_dim).transpose(1, 2).contiguous()
        for t in range(3)
    )  # each (1, h, n, d)
    del frames, proj
    with torch.no_grad():
        small = q[:, :, :256], k[:, :, :256], v[:, :, :256]
        attention(*small, window=window, backend=backend)  # warm-up: kernels, thread pool
        del small
        # From here on: the calls only. Free heap left by loading goes back to the system
        # first, or the calls would reuse it unseen.
        memory = PeakRSS(release=True)
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = attention(q, k, v, window=window, backend=backend)
            best = min(best, time.perf_counter() - t0)
            del out
        extra = memory.extra_bytes()
    return {
        "frames": n_frames,
        "seconds_of_audio": n_frames / 100,
        "backend": backend,
        "window": list(window) if window else None,
        "heads": heads,
        "head_dim": head_dim,
        "time_s": best,
        "peak_extra_mib": extra / 2**20,
        "threads": torch.get_num_threads(),
    }


def measure_in_subprocess(
    n_frames: int, backend: str, window: tuple[int, int] | None, threads: int = 2,
    timeout: float = 600.0, **kwargs,
) -> dict:  # fmt: skip
    """``measure`` in a fresh Python process (clean peak-memory reading); failures come back as
    ``{"error": ...}`` (out of memory, timeout)."""
    args = {"n_frames": n_frames, "backend": backend, "window": window, **kwargs}
    code = (
        f"import json, sys, torch; torch.set_num_threads({int(threads)}); "
        "from selfattention.apps.speech.scaling import measure; "
        "a = json.loads(sys.argv[1]); w = a.pop('window'); "
        "print(json.dumps(measure(window=tuple(w) if w else None, **a)))"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, json.dumps(args, default=str)],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"frames": n_frames, "seconds_of_audio": n_frames / 100, "backend": backend,
                "window": window, "error": f"timeout after {timeout:.0f} s"}  # fmt: skip
    if done.returncode != 0:
        why = "killed (out of memory?)" if done.returncode < 0 else done.stderr.strip()[-300:]
        return {"frames": n_frames, "seconds_of_audio": n_frames / 100, "backend": backend,
                "window": window, "error": why}  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def full_attention_bytes(n_frames: int, heads: int, backend: str) -> int:
    """A lower bound on what full attention holds at once: the math path materialises the scores
    and the weights, 2·h·n² float32; torch's fused CPU kernel (sdpa, no mask) works in blocks."""
    return 2 * heads * n_frames * n_frames * 4 if backend == "math" else 0


def scaling_table(
    config: ScalingConfig,
    root: str | Path | None = None,
    progress: Callable[[dict], None] | None = None,
) -> list[dict]:
    """One row per (audio length, backend): full attention ("math", "sdpa") and truncated
    ("window") over the real clips (under ``root``, default the ``speech`` data set) joined and
    repeated, each measured in a fresh process; ``progress`` gets each row as it is done.

    Not run, with the reason in the row: full attention whose weights alone exceed
    ``config.memory_budget_gib``, and any run that the previous length predicts (time ∝ n² for
    full, ∝ n for truncated) to take more than ``config.time_budget_s``.
    """
    import tempfile

    rows: list[dict] = []
    last: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        frames_file = Path(tmp) / "frames.npy"
        clips = load_clips(root)
        np.save(frames_file, torch.cat([log_mel(read_wav(c.path)[0]) for c in clips]).numpy())
        for m in sorted(config.minutes):
            n = round(m * 60 * 100)
            for backend in config.backends:
                win = config.window if backend == "window" else None
                base = {"frames": n, "seconds_of_audio": n / 100, "backend": backend}
                need = full_attention_bytes(n, config.heads, backend)
                prev = last.get(backend)
                power = 1 if win else 2
                guess = prev["time_s"] * (n / prev["frames"]) ** power if prev else 0.0
                if need > config.memory_budget_gib * 2**30:
                    row = {**base, "skipped": f"needs {need / 2**30:.0f} GiB for the weights "
                           f"(> {config.memory_budget_gib:g} GiB budget)"}  # fmt: skip
                elif guess > config.time_budget_s:
                    row = {**base, "skipped": f"would take ~{guess:.0f} s "
                           f"(> {config.time_budget_s:g} s budget)"}  # fmt: skip
                else:
                    row = measure_in_subprocess(
                        n, backend, win, threads=config.threads, heads=config.heads,
                        head_dim=config.head_dim,
                        frames_file=str(frames_file), timeout=max(60.0, 5 * config.time_budget_s),
                    )  # fmt: skip
                    if "time_s" in row:
                        last[backend] = row
                rows.append(row)
                if progress is not None:
                    progress(row)
    return rows


def format_row(row: dict) -> str:
    name = {"math": "full (math)", "sdpa": "full (sdpa)", "window": "truncated (window)"}.get(
        row["backend"], row["backend"]
    )
    if row.get("window") and row["backend"] != "window":
        name = f"truncated ({row['backend']})"
    head = f"{row['seconds_of_audio'] / 60:6.2f} min {row['frames']:>7} frames  {name:<20}"
    if "skipped" in row:
        return f"{head} not run: {row['skipped']}"
    if "error" in row:
        return f"{head} failed: {row['error']}"
    return f"{head} {row['time_s'] * 1000:10.1f} ms {row['peak_extra_mib']:10.1f} MiB"


def markdown_table(rows: list[dict]) -> str:
    """The scaling table as Markdown: one row per length, time and memory per backend."""
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    names = {"math": "full, math", "sdpa": "full, sdpa", "window": "truncated, window"}
    head = "| audio | frames | " + " | ".join(f"{names.get(b, b)}" for b in backends) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(backends)]
    for n in dict.fromkeys(r["frames"] for r in rows):
        cells = []
        for b in backends:
            r = next(r for r in rows if r["frames"] == n and r["backend"] == b)
            if "skipped" in r:
                cells.append("not run: " + r["skipped"].split(" (")[0])
            elif "error" in r:
                cells.append("failed")
            else:
                t = r["time_s"]
                took = f"{t * 1000:.1f} ms" if t < 1 else f"{t:.2f} s"
                cells.append(f"{took} / {r['peak_extra_mib']:.0f} MiB")
        secs = n / 100
        audio = f"{secs:.0f} s" if secs < 60 else f"{secs / 60:g} min"
        lines.append(f"| {audio} | {n:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
