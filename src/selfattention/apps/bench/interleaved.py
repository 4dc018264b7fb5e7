"""Suites measured side by side in ONE process: ours, theirs, ours, … (best of each).

The machine is shared, so load comes and goes; timing each method in turn, ``repeat`` rounds,
and keeping each method's best lets load hit every method alike. One cell (suite, n) runs all
of a suite's methods and returns one row per method:

    window-ceiling  n = sequence length: a 2048³ fp32 matmul (the ceiling), the window backend
                    forward (the compiled kernel when built) and forward + backward, its
                    pure-torch path, compiled FlexAttention with a sliding-window block mask,
                    local-attention; useful FLOPs 4·h·d·Σ_i keys(i) (×3.5 fwd+bwd)
    decode          n = cache length: one cached causal step against recomputing the prefix
    stream          n = frames of generated log-mel-like input: RTF of 10 ms and 100 ms chunks
    packed          n = tokens: sequences of mixed lengths packed (cu_seqlens) against padded
    gqa             n = sequence length: h/4 key/value heads, ``sa.attention`` vs SDPA enable_gqa
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

from selfattention.apps.bench.cells import local_attention
from selfattention.apps.bench.config import WINDOW

__all__ = ["INTERLEAVED", "measure", "packed_lengths"]

Row = dict[str, Any]
INTERLEAVED = ("window-ceiling", "decode", "stream", "packed", "gqa")
MATMUL = 2048  # the ceiling's matmul: MATMUL³ fp32 (a smaller one for tiny test sizes)


def best_of(methods: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Seconds of each method's best call: one untimed warm-up each, then ``rounds`` rounds in
    which every method runs once, in turn."""
    for fn in methods.values():
        fn()
    best = {name: float("inf") for name in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _inputs(h: int, h_kv: int, n: int, d: int):
    import torch

    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, h, n, d, generator=g)
    k, v = (torch.randn(1, h_kv, n, d, generator=g) for _ in range(2))
    return q, k, v


def window_ceiling(n: int, h: int, d: int, rounds: int) -> list[Row]:
    """Window forward (and fwd+bwd) against the matmul rate, compiled FlexAttention and
    local-attention; ``error`` rows for a peer that is missing or fails."""
    import torch

    import selfattention as sa
    from selfattention.apps.bench.cells import _reference, _sample_rows, keys_attended
    from selfattention.functional.backends import native

    q, k, v = _inputs(h, h, n, d)
    size = MATMUL if n >= 4096 else 256
    a, b = torch.randn(size, size), torch.randn(size, size)
    useful = 4.0 * h * d * keys_attended(n, WINDOW)
    qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
    grad = torch.randn_like(q)

    def train():
        out = sa.attention(qg, kg, vg, window=WINDOW, backend="window")
        torch.autograd.backward(out, grad)
        qg.grad = kg.grad = vg.grad = None

    def pure_torch():
        with native.disabled():
            return sa.attention(q, k, v, window=WINDOW, backend="window")

    methods: dict[str, Callable[[], Any]] = {
        "matmul": lambda: a @ b,
        "window": lambda: sa.attention(q, k, v, window=WINDOW, backend="window"),
        "window fwd+bwd": train,
        "window (pure torch)": pure_torch,
    }
    flops = {
        "matmul": 2.0 * size**3,
        "window": useful,
        "window fwd+bwd": 3.5 * useful,
        "window (pure torch)": useful,
    }
    path = sa.explain_dispatch(q, k, v, window=WINDOW, backend="window").path
    rows: list[Row] = []
    compile_s: dict[str, float] = {}
    for name, make in (("flex", _flex), ("local-attention", _local_attention)):
        try:
            start = time.perf_counter()
            fn, label = make(q, k, v)
            with torch.no_grad():
                fn()  # compiles
            compile_s[label] = time.perf_counter() - start
            methods[label], flops[label] = fn, useful
        except Exception as e:  # a missing or failing peer is a row, not a failed suite
            rows.append(dict(method=name, error=f"{type(e).__name__}: {_first_line(e)}"))
    with torch.no_grad():
        outs = {m: fn() for m, fn in methods.items() if m not in ("matmul", "window fwd+bwd")}
    ref = _reference(q, k, v, _sample_rows(n), WINDOW, "softmax")
    rows_idx = _sample_rows(n)
    times = _timed(methods, rounds)
    for m, sec in times.items():
        row: Row = dict(method=m, seconds=sec, flops=flops[m], compile_s=compile_s.get(m))
        if m in outs:
            row["max_abs_err"] = float((outs[m][:, :, rows_idx].double() - ref).abs().max())
        if m == "window fwd+bwd":
            row["note"] = f"{sec / times['window']:.2f}× the forward"
        elif m == "window":
            row["note"] = path
        elif m == "window (pure torch)":
            row["note"] = f"the compiled kernel is {sec / times['window']:.2f}× faster"
        rows.append(row)
    return rows


def _timed(methods: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """``best_of`` with autograd only for the training method."""
    import torch

    def no_grad(fn):
        def run():
            with torch.no_grad():
                return fn()

        return run

    wrapped = {m: fn if "bwd" in m else no_grad(fn) for m, fn in methods.items()}
    return best_of(wrapped, rounds)


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [""])[0][:160]


def _flex(q, k, v):
    """Compiled FlexAttention with a ±WINDOW block mask; uncompiled if compiling fails."""
    import torch
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    n = q.shape[2]

    def band(b, h, qi, kj):
        return (qi - kj <= WINDOW) & (kj - qi <= WINDOW)

    mask = create_block_mask(band, None, None, n, n, device="cpu")
    compiled = torch.compile(flex_attention)
    try:
        with torch.no_grad():
            compiled(q, k, v, block_mask=mask)
        return (lambda: compiled(q, k, v, block_mask=mask)), "flex"
    except Exception:  # pragma: no cover - depends on the machine's compiler
        return (lambda: flex_attention(q, k, v, block_mask=mask)), "flex (uncompiled)"


def _local_attention(q, k, v):
    return local_attention(q, k, v), "local-attention"


def decode(n: int, h: int, d: int, rounds: int) -> list[Row]:
    """A causal ``SelfAttention`` (RoPE) with a KV cache of n positions: one cached step
    against a full causal forward over the n + 1 positions (whose last row is that step)."""
    import torch

    from selfattention.nn import KVCache, RotaryPositions, SelfAttention

    torch.manual_seed(0)
    model = SelfAttention(h * d, h, causal=True, positions=RotaryPositions(d)).eval()
    x = torch.randn(1, n + rounds + 2, h * d)
    cache = KVCache(capacity=n + rounds + 2)
    state = {"t": n, "error": 0.0}
    with torch.no_grad():
        model(x[:, :n], cache=cache)  # prefill

        def step():  # the cache grows by one per call
            t = state["t"]
            out = model(x[:, t : t + 1], cache=cache)
            state["t"] += 1
            state["last"] = out
            return out

        def full():
            t = state["t"] - 1  # the position the last step computed
            out = model(x[:, : t + 1])[:, -1:]
            state["error"] = max(state["error"], float((out - state["last"]).abs().max()))
            return out

        times = best_of({"cached step": step, "recompute prefix": full}, rounds)
    note = f"cached {times['recompute prefix'] / times['cached step']:.1f}× faster"
    return [
        dict(method="cached step", seconds=times["cached step"], max_abs_err=state["error"],
             note=note),
        dict(method="recompute prefix", seconds=times["recompute prefix"]),
    ]  # fmt: skip


def stream(n: int, h: int, d: int, rounds: int) -> list[Row]:
    """``speech.stream_table`` on n generated 80-band frames (no data set): RTF per chunk.
    Each chunk is timed once over the whole stream (``rounds`` does not apply)."""
    import torch

    from selfattention.apps.speech.stream import StreamConfig, stream_table

    frames = torch.randn(n, 80, generator=torch.Generator().manual_seed(0))
    # The speech command's attention (4 heads of 16, window (32, 32)), not the suite's h, d.
    config = StreamConfig(chunk_ms=(10, 100), threads=torch.get_num_threads())
    rows = []
    for r in stream_table(config, frames=frames):
        rows.append(
            dict(
                method=f"{r['chunk_ms']} ms chunks",
                seconds=r["rtf"] * r["seconds"],
                max_abs_err=r["max_error"],
                note=f"RTF {r['rtf']:.3g}, latency median {r['latency_median_ms']:.2f} ms, "
                f"p95 {r['latency_p95_ms']:.2f} ms, delay {r['delay_ms']} ms",
            )
        )
    return rows


def packed_lengths(n: int) -> list[int]:
    """A seeded mix of sentence lengths (4 … n/4, many short, few long) totalling n tokens."""
    import random

    rng = random.Random(0)
    lengths, left, top = [], n, max(4, n // 4)
    while left > 0:
        length = min(left, max(1, int(4 + (top - 4) * rng.random() ** 3)))
        lengths.append(length)
        left -= length
    return lengths


def packed(n: int, h: int, d: int, rounds: int) -> list[Row]:
    """Causal attention over sequences packed end to end (``cu_seqlens``) against the same
    sequences padded to the longest with a key-padding mask."""
    import torch

    import selfattention as sa

    lengths = packed_lengths(n)
    cu = list(itertools.accumulate(lengths, initial=0))
    bounds = list(itertools.pairwise(cu))
    q, k, v = _inputs(h, h, n, d)
    top, b = max(lengths), len(lengths)
    pad = [torch.zeros(b, h, top, d) for _ in range(3)]
    for i, (s, e) in enumerate(bounds):
        for dst, src in zip(pad, (q, k, v), strict=True):
            dst[i, :, : e - s] = src[0, :, s:e]
    keep = torch.arange(top)[None, :] < torch.tensor(lengths)[:, None]  # (b, top)
    mask = keep[:, None, None, :]
    qp, kp, vp = pad
    methods = {
        "packed": lambda: sa.attention(q, k, v, causal=True, cu_seqlens=cu),
        "padded": lambda: sa.attention(qp, kp, vp, causal=True, mask=mask),
    }
    with torch.no_grad():
        got, want = methods["packed"](), methods["padded"]()
        err = max(
            float((got[0, :, s:e] - want[i, :, : e - s]).abs().max())
            for i, (s, e) in enumerate(bounds)
        )
        times = best_of(methods, rounds)
    note = f"{b} sequences, lengths {min(lengths)}…{top}; tokens/s {n / times['packed']:.3g}"
    return [
        dict(method="packed", seconds=times["packed"], max_abs_err=err, note=note),
        dict(method="padded", seconds=times["padded"],
             note=f"padded to {b}×{top}; tokens/s {n / times['padded']:.3g}"),
    ]  # fmt: skip


def gqa(n: int, h: int, d: int, rounds: int) -> list[Row]:
    """h query heads over max(1, h/4) key/value heads: ``sa.attention`` (causal) against
    SDPA ``enable_gqa=True``."""
    import torch
    import torch.nn.functional as F

    import selfattention as sa

    h_kv = max(1, h // 4)
    while h % h_kv:
        h_kv -= 1
    q, k, v = _inputs(h, h_kv, n, d)
    methods = {
        "sa.attention": lambda: sa.attention(q, k, v, causal=True),
        "sdpa enable_gqa": lambda: F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=True
        ),
    }
    with torch.no_grad():
        err = float((methods["sa.attention"]() - methods["sdpa enable_gqa"]()).abs().max())
        times = best_of(methods, rounds)
    flops = 4.0 * h * d * n * (n + 1) / 2
    return [
        dict(method="sa.attention", seconds=times["sa.attention"], flops=flops, max_abs_err=err,
             note=f"{h} query heads, {h_kv} key/value heads"),
        dict(method="sdpa enable_gqa", seconds=times["sdpa enable_gqa"], flops=flops),
    ]  # fmt: skip


SUITE_FUNCTIONS: dict[str, Callable[[int, int, int, int], list[Row]]] = {
    "window-ceiling": window_ceiling,
    "decode": decode,
    "stream": stream,
    "packed": packed,
    "gqa": gqa,
}


def measure(suite: str, n: int, heads: int, head_dim: int, rounds: int) -> list[Row]:
    """Every method of ``suite`` at size n, interleaved: one row per method (``seconds``,
    optional ``flops``, ``max_abs_err``, ``compile_s``, ``note``; or ``error``)."""
    return SUITE_FUNCTIONS[suite](n, heads, head_dim, rounds)
