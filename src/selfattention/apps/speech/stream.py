"""Truncated self-attention as speech arrives: the LibriVox frames pushed through
``SelfAttention.stream()`` in chunks of 10 ms or 100 ms, timed chunk by chunk.

    rows = stream_table(StreamConfig(chunk_ms=(10, 100)))
    print(format_stream_table(rows))

Per chunk size: the real-time factor (compute time / audio time; < 1 keeps up with the speech),
the compute latency per chunk (median and 95th percentile), the algorithmic delay (a frame
waits for its chunk to fill and for ``right`` frames of look-ahead), and the largest difference
from the offline window attention over the whole recording (the stream's correctness check).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from selfattention.apps.speech.clips import load_clips
from selfattention.apps.speech.features import log_mel, read_wav, standardise
from selfattention.apps.speech.scaling import _check_window, _positive_int
from selfattention.nn import SelfAttention

__all__ = ["StreamConfig", "format_stream_table", "stream_frames", "stream_table"]

HOP_MS = 10  # one log-mel frame every 10 ms


@dataclass(frozen=True)
class StreamConfig:
    """What ``stream_table`` runs.

    Attributes:
        chunk_ms: chunk lengths in ms, positive multiples of the 10 ms hop.
        window: (left, right) frames (each >= 0); ``right`` frames are the look-ahead delay.
        heads, head_dim: the attention over the 80 mel bands (a fixed random init, seed 0).
        threads: torch threads while timing (>= 1).
        warmup: chunks pushed and discarded before timing each chunk size (>= 0).

    Raises:
        ValueError: naming the option, what it got and what is allowed.
    """

    chunk_ms: tuple[int, ...] = (10, 100)
    window: tuple[int, int] = (32, 32)
    heads: int = 4
    head_dim: int = 16
    threads: int = 1
    warmup: int = 20

    def __post_init__(self) -> None:
        c = self.chunk_ms
        if not c or not all(isinstance(v, int) and v > 0 and v % HOP_MS == 0 for v in c):
            raise ValueError(
                f"chunk_ms (--chunk-ms) must be positive multiples of {HOP_MS} ms (one frame), "
                f"got {list(c)}"
            )
        _check_window(self.window)
        _positive_int("heads", "--heads", self.heads)
        _positive_int("head_dim", "--head-dim", self.head_dim)
        _positive_int("threads", "--threads", self.threads)
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup must be an integer >= 0, got {self.warmup!r}")


def stream_frames(root: str | Path | None = None) -> torch.Tensor:
    """The LibriVox clips' log-mel frames (n, 80), joined end to end, each clip standardised."""
    clips = load_clips(root, voices=("librivox",))
    return torch.cat([standardise(log_mel(read_wav(c.path)[0])) for c in clips])


def _percentile(values: list[float], q: float) -> float:
    return float(torch.tensor(values, dtype=torch.float64).quantile(q))


def stream_table(
    config: StreamConfig,
    root: str | Path | None = None,
    progress: Callable[[dict], None] | None = None,
    frames: torch.Tensor | None = None,
) -> list[dict]:
    """One row per chunk size: rtf, latency_median_ms, latency_p95_ms, delay_ms, max_error,
    frames, chunks, seconds (audio). ``root``: the data set folder (default: ``speech``);
    ``frames`` (n, 80): stream these instead (e.g. generated ones for a benchmark)."""
    frames = (stream_frames(root) if frames is None else frames)[None]  # (1, n, 80)
    torch.manual_seed(0)
    attn = SelfAttention(
        frames.shape[-1], config.heads, head_dim=config.head_dim, window=config.window
    ).eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    rows = []
    try:
        with torch.no_grad():
            offline = attn(frames)
            for chunk_ms in config.chunk_ms:
                rows.append(_run(attn, frames, offline, chunk_ms, config.warmup))
                if progress is not None:
                    progress(rows[-1])
    finally:
        torch.set_num_threads(threads)
    return rows


def _run(attn: SelfAttention, frames, offline, chunk_ms: int, warmup: int) -> dict:
    """Push ``frames`` (1, n, 80) chunk by chunk; time every push and the final flush."""
    c = chunk_ms // HOP_MS
    n = frames.shape[1]
    stream = attn.stream()
    for t in range(0, min(warmup * c, n), c):  # first calls pay one-off costs: not timed
        stream.push(frames[:, t : t + c])
    stream.reset()
    outs, latencies = [], []
    for t in range(0, n, c):
        start = time.perf_counter()
        outs.append(stream.push(frames[:, t : t + c]))
        latencies.append(time.perf_counter() - start)
    start = time.perf_counter()
    outs.append(stream.flush())
    total = sum(latencies) + time.perf_counter() - start
    got = torch.cat(outs, dim=1)
    seconds = n * HOP_MS / 1000
    return {
        "chunk_ms": chunk_ms,
        "frames": n,
        "chunks": len(latencies),
        "seconds": seconds,
        "rtf": total / seconds,
        "latency_median_ms": 1000 * _percentile(latencies, 0.5),
        "latency_p95_ms": 1000 * _percentile(latencies, 0.95),
        "delay_ms": chunk_ms + stream.right * HOP_MS,
        "max_error": float((got - offline).abs().max()),
    }


def format_stream_table(rows: list[dict]) -> str:
    """A markdown table of ``stream_table``'s rows."""
    lines = [
        "| chunk ms | chunks | real-time factor | latency median ms | latency p95 ms "
        "| delay ms | max error vs offline |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['chunk_ms']} | {r['chunks']} | {r['rtf']:.4f} | {r['latency_median_ms']:.3f} "
            f"| {r['latency_p95_ms']:.3f} | {r['delay_ms']} | {r['max_error']:.1e} |"
        )
    return "\n".join(lines)
