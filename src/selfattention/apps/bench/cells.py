"""One benchmark cell (suite, method, n), measured in a fresh forked process.

Each cell builds seeded fp32 inputs q, k, v (1, h, n, d), makes one warm-up call that also sets
the peak memory (VmHWM after resetting it, minus the resident size before the inputs were built),
then times ``repeat`` calls (median). FLOPs follow FlashAttention's count, 4·b·h·d·Σ_i keys
attended by query i; forward + backward counts 3.5× the forward. The error is the max abs
difference against a float64 reference on sampled query rows (first, last, evenly spaced).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import time
from typing import Any

from selfattention.apps.bench.config import INTERLEAVED_METHOD, WINDOW

__all__ = ["flops", "keys_attended", "run_cell"]


def keys_attended(n: int, window: int | None) -> int:
    """Σ_i (keys query i may attend to) for n queries: n² without a window, else the band."""
    if window is None:
        return n * n
    return sum(min(n - 1, i + window) - max(0, i - window) + 1 for i in range(n))


def flops(suite: str, n: int, h: int, d: int) -> float:
    """4·h·d·Σ_i keys(i), times 3.5 for forward + backward (the "window-train" suite)."""
    window = WINDOW if suite.startswith("window") else None
    forward = 4.0 * h * d * keys_attended(n, window)
    return forward * (3.5 if suite == "window-train" else 1.0)


def _sample_rows(n: int, count: int = 256) -> list[int]:
    return sorted({0, n - 1, *range(0, n, max(1, n // count))})


def _reference(q, k, v, rows, window, normalize):
    """float64 output for the sampled query rows, written directly from the formula."""
    import torch

    qd, kd, vd = q[:, :, rows].double(), k.double(), v.double()
    s = qd @ kd.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (1, h, rows, n)
    allowed = torch.ones_like(s, dtype=torch.bool)
    if window is not None:
        i = torch.tensor(rows)[:, None]
        j = torch.arange(k.shape[2])[None, :]
        allowed = (j >= i - window) & (j <= i + window)
    if normalize == "softmax":
        w = torch.softmax(s.masked_fill(~allowed, -math.inf), -1)
    elif normalize == "relu":
        w = torch.relu(s) * allowed / allowed.sum(-1, keepdim=True)
    else:
        w = s * allowed
        w = w / w.sum(-1, keepdim=True)
    return w @ vd


def _method(name: str, suite: str, q, k, v):
    """(callable returning the output, normalize, compile seconds or None)."""
    import torch
    import torch.nn.functional as F

    import selfattention as sa

    window = WINDOW if suite.startswith("window") else None
    n = q.shape[2]
    if name in ("auto", "chunked", "window", "math"):
        return (lambda: sa.attention(q, k, v, window=window, backend=name)), "softmax", None
    if name in ("chunked-relu", "chunked-sum", "math-relu"):
        backend, norm = name.split("-")
        return (lambda: sa.attention(q, k, v, normalize=norm, backend=backend)), norm, None
    if name == "sdpa":
        return (lambda: F.scaled_dot_product_attention(q, k, v)), "softmax", None
    if name == "sdpa-band":
        band = sa.masks.window(n, n, WINDOW, WINDOW)
        return (lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=band)), "softmax", None
    if name == "local-attention":
        return local_attention(q, k, v), "softmax", None
    if name == "flex":
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        def band_mask(b, h, qi, kj):
            return (qi - kj <= WINDOW) & (kj - qi <= WINDOW)

        start = time.perf_counter()
        block_mask = create_block_mask(band_mask, None, None, n, n, device="cpu")
        compiled = torch.compile(flex_attention)
        with torch.no_grad():
            compiled(q.detach(), k.detach(), v.detach(), block_mask=block_mask)
        compile_s = time.perf_counter() - start
        return (lambda: compiled(q, k, v, block_mask=block_mask)), "softmax", compile_s
    raise ValueError(f"unknown benchmark method {name!r}")


def _cell(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from selfattention.apps.measure import PeakRSS

    torch.set_num_threads(spec["threads"])
    if spec["method"] == INTERLEAVED_METHOD:  # every method of the suite, in turn, here
        from selfattention.apps.bench.interleaved import measure

        args = (spec["n"], spec["heads"], spec["head_dim"], spec["repeat"])
        return {"rows": measure(spec["suite"], *args)}
    memory = PeakRSS()  # VmHWM reset to the current RSS, before the inputs are built
    n, h, d, suite, name = spec["n"], spec["heads"], spec["head_dim"], spec["suite"], spec["method"]
    count = flops(suite, n, h, d)
    if name == "matmul":  # a plain fp32 matmul of equal FLOPs: the ceiling
        size = max(64, round((count / 2) ** (1 / 3)))
        a, b = torch.randn(size, size), torch.randn(size, size)
        fn, norm, compile_s = (lambda: a @ b), None, None
        count = 2.0 * size**3
    else:
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, h, n, d, generator=g) for _ in range(3))
        if name.endswith("-sum"):  # row sums of q·k must be > 0 for normalize="sum"
            q, k = q.abs(), k.abs()
        train = suite == "window-train"
        if train:
            q, k, v = (t.requires_grad_() for t in (q, k, v))
        fn, norm, compile_s = _method(name, suite, q, k, v)
        if train:
            grad = torch.randn(1, h, n, d, generator=g)
            forward = fn

            def fn():
                out = forward()
                torch.autograd.backward(out, grad)
                for t in (q, k, v):
                    t.grad = None
                return out.detach()

    context = torch.enable_grad() if suite == "window-train" else torch.no_grad()
    with context:
        t0 = time.perf_counter()
        out = fn()
        first = time.perf_counter() - t0
        result: dict[str, Any] = {"peak_mb": memory.extra_bytes() / 2**20, "compile_s": compile_s}
        if name != "matmul":
            rows = _sample_rows(n)
            window = WINDOW if suite.startswith("window") else None
            ref = _reference(q.detach(), k.detach(), v.detach(), rows, window, norm)
            result["max_abs_err"] = float((out.detach()[:, :, rows].double() - ref).abs().max())
            result["io_mb"] = 4 * n * h * d * 4 / 2**20  # q, k, v, out
        del out
        repeat = spec["repeat"] if first < 5 else 1
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    times.sort()
    result.update(seconds=times[len(times) // 2], flops=count)
    return result


def _child(spec: dict[str, Any], conn) -> None:
    try:
        conn.send(_cell(spec))
    except Exception as e:  # reported in the table, e.g. FlexAttention backward on CPU
        conn.send({"error": f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:160]}"})
    conn.close()


def run_cell(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Measure one cell in a forked child; a failure comes back as ``{"error": why}``.

    ``spec``: suite, method, n, heads, head_dim, threads, repeat. Returns the measurement:
    seconds (median), flops, peak_mb, compile_s, and for attention max_abs_err and io_mb;
    for an interleaved suite's cell, ``{"rows": [one such dict per method, with "method"]}``.
    """
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(spec, child))
    proc.start()
    child.close()
    result: dict[str, Any] = {"error": f"timeout after {timeout:g} s"}
    if parent.poll(timeout):
        try:
            result = parent.recv()
        except EOFError:
            result = {"error": "crashed (out of memory?)"}
    proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if proc.exitcode not in (0, None) and "error" not in result:
        result = {"error": f"exit code {proc.exitcode}"}
    return result


def local_attention(q, k, v) -> Any:
    """local-attention's exact ±WINDOW band (lucidrains' package) as a no-argument callable."""
    from local_attention import LocalAttention

    la = LocalAttention(
        window_size=WINDOW,
        causal=False,
        look_backward=1,
        look_forward=1,
        exact_windowsize=True,
        use_rotary_pos_emb=False,
        autopad=True,
        dim=q.shape[-1],
    )
    return lambda: la(q, k, v)
