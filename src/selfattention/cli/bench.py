"""``selfattention bench``: our backends against torch and the peers, side by side, one run.

Every cell (suite, method, n) runs in a fresh forked process on the same seeded inputs
(fp32, batch 1, 8 heads, head_dim 64 by default): one warm-up call that also sets the peak
memory (VmHWM after resetting it, minus the resident size before the inputs were built), then
timed repeats (median). Reported per cell: time, time ratio to the suite's reference method,
GFLOP/s with FlashAttention's count (4·b·h·d·Σ_i keys attended by query i; forward+backward
counts 3.5× the forward), percent of a plain fp32 matmul of equal FLOPs (the machine's
ceiling, timed in the same run), peak memory, and the max abs error of the output against a
float64 reference on sampled query rows (first, last and evenly spaced ones).

Writes results.json, results.md and time_vs_n.png to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

WINDOW = 128
SUITES = {
    # suite: (what, reference method for ratios)
    "dense": ("dense softmax, forward", "sdpa"),
    "window": (f"window ±{WINDOW}, forward", "sdpa-band"),
    "window-train": (f"window ±{WINDOW}, forward + backward", "sdpa-band"),
    "relu-sum": ("ReLU and sum normalisation, forward", "sdpa"),
}
FULL = {
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
}
QUICK = {
    "dense": ([2048], ["auto", "chunked", "sdpa", "math", "matmul"]),
    "window": ([4096], ["window", "sdpa-band", "flex", "local-attention", "matmul"]),
    "window-train": ([4096], ["window", "sdpa-band", "matmul"]),
    "relu-sum": ([2048], ["chunked-relu", "chunked-sum", "sdpa", "matmul"]),
}
# Sizes past which a method is skipped (memory or minutes): n² weights, n² masks, peers' limits.
LIMITS = {
    "math": 8192,
    "math-relu": 8192,
    "sdpa-band": 16384,
    "chunked": 16384,
    "local-attention": 65536,
    "flex": 65536,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a one-minute subset")
    parser.add_argument("--out", default="results/bench", help="folder for JSON, table, plot")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per cell")
    parser.add_argument("--repeat", type=int, default=3, help="timed repeats per cell (median)")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--suites", nargs="*", choices=sorted(SUITES), help="default: all")
    parser.add_argument("--sizes", nargs="*", type=int, help="override the n sweep")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per cell")


# -- one cell, in a child process ---------------------------------------------------------------
def _keys_attended(n: int, window: int | None) -> int:
    if window is None:
        return n * n
    i = list(range(n))
    return sum(min(n - 1, x + window) - max(0, x - window) + 1 for x in i)


def _flops(suite: str, n: int, h: int, d: int) -> float:
    window = WINDOW if suite.startswith("window") else None
    fwd = 4.0 * h * d * _keys_attended(n, window)
    return fwd * (3.5 if suite == "window-train" else 1.0)


def _sample_rows(n: int, count: int = 256) -> list[int]:
    return sorted({0, n - 1, *range(0, n, max(1, n // count))})


def _reference(q, k, v, rows, window, normalize):
    """float64 output for the sampled query rows, written directly from the formula."""
    import torch

    qd, kd, vd = q[:, :, rows].double(), k.double(), v.double()
    s = qd @ kd.transpose(-1, -2) / math.sqrt(q.shape[-1])
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
        return (lambda: la(q, k, v)), "softmax", None
    if name == "flex":
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        def band(b, h, qi, kj):
            return (qi - kj <= WINDOW) & (kj - qi <= WINDOW)

        start = time.perf_counter()
        block_mask = create_block_mask(band, None, None, n, n, device="cpu")
        compiled = torch.compile(flex_attention)
        with torch.no_grad():
            compiled(q.detach(), k.detach(), v.detach(), block_mask=block_mask)
        compile_s = time.perf_counter() - start
        return (lambda: compiled(q, k, v, block_mask=block_mask)), "softmax", compile_s
    raise ValueError(f"unknown method {name!r}")


def _cell(spec: dict) -> dict:
    import torch

    from selfattention.apps.measure import PeakRSS

    torch.set_num_threads(spec["threads"])
    memory = PeakRSS()  # VmHWM reset to the current RSS, before the inputs are built
    n, h, d, suite, name = spec["n"], spec["heads"], spec["head_dim"], spec["suite"], spec["method"]
    flops = _flops(suite, n, h, d)
    if name == "matmul":  # a plain fp32 matmul of equal FLOPs: the ceiling
        size = max(64, round((flops / 2) ** (1 / 3)))
        a, b = torch.randn(size, size), torch.randn(size, size)
        fn, norm, compile_s = (lambda: a @ b), None, None
        flops = 2.0 * size**3
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
        peak = memory.extra_bytes()
        result = {"peak_mb": peak / 2**20, "compile_s": compile_s}
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
    result.update(seconds=times[len(times) // 2], flops=flops)
    return result


def _child(spec: dict, conn) -> None:
    try:
        conn.send(_cell(spec))
    except Exception as e:  # reported in the table, e.g. FlexAttention backward on CPU
        conn.send({"error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"})
    conn.close()


def run_cell(spec: dict, timeout: float) -> dict:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(spec, child))
    proc.start()
    child.close()
    result = {"error": "timeout"}
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


# -- the table, the targets and the plot ----------------------------------------------------------
def _fmt(x, digits=3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def tables(results: list[dict]) -> str:
    lines = []
    for suite, (title, ref_method) in SUITES.items():
        rows = [r for r in results if r["suite"] == suite]
        if not rows:
            continue
        lines += [
            f"### {title}",
            "",
            "| n | method | time (s) | × " + ref_method + " | GFLOP/s | % of matmul | peak MB "
            "| max abs err | compile (s) |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for n in sorted({r["n"] for r in rows}):
            cell = {r["method"]: r for r in rows if r["n"] == n}
            ref = cell.get(ref_method, {}).get("seconds")
            ceiling = cell.get("matmul", {})
            ceiling_rate = (
                ceiling["flops"] / ceiling["seconds"] / 1e9 if "seconds" in ceiling else None
            )
            for method, r in cell.items():
                if "error" in r:
                    error = r["error"] if len(r["error"]) < 90 else r["error"][:87] + "..."
                    lines.append(f"| {n} | {method} | {error} | | | | | | |")
                    continue
                rate = r["flops"] / r["seconds"] / 1e9
                ratio = r["seconds"] / ref if ref else None
                pct = 100 * rate / ceiling_rate if ceiling_rate else None
                lines.append(
                    f"| {n} | {method} | {r['seconds']:.4g} | {_fmt(ratio)} | {rate:.1f} | "
                    f"{_fmt(pct)} | {r['peak_mb']:.0f} | {_fmt(r.get('max_abs_err'), 2)} | "
                    f"{_fmt(r.get('compile_s'))} |"
                )
        lines.append("")
    return "\n".join(lines)


def _get(results, suite, method, n, key="seconds"):
    for r in results:
        if (r["suite"], r["method"], r["n"]) == (suite, method, n):
            return r.get(key)
    return None


def targets(results: list[dict]) -> list[dict]:
    """The issue's targets, each as measured ratio against its bound."""
    out = []

    def ratio(suite, a, b, n, bound, what):
        ta, tb = _get(results, suite, a, n), _get(results, suite, b, n)
        if ta is None or tb is None:
            return
        r = ta / tb
        out.append(dict(target=what, measured=r, bound=bound, met=r <= bound))

    ratio("dense", "auto", "sdpa", 4096, 1.05, "dense n=4096: auto / SDPA ≤ 1.05")
    ratio("window", "window", "sdpa-band", 16384, 0.05, "window n=16384 fwd: / SDPA band ≤ 0.05")
    ratio("window", "window", "local-attention", 16384, 0.25, "… / local-attention ≤ 0.25")
    ratio("window", "window", "flex", 16384, 1.0, "… / compiled FlexAttention ≤ 1.0")
    ratio("window-train", "window", "sdpa-band", 16384, 0.1, "window n=16384 fwd+bwd: / SDPA ≤ 0.1")
    peak = _get(results, "window-train", "window", 262144, "peak_mb")
    io = _get(results, "window-train", "window", 262144, "io_mb")
    if peak is not None and io:
        out.append(
            dict(
                target="window n=262144 fwd+bwd: peak ≤ 4× bytes(q,k,v,out)",
                measured=peak / io,
                bound=4.0,
                met=peak / io <= 4.0,
            )
        )
    for norm in ("relu", "sum"):
        for n in (16384, 4096):
            t = _get(results, "relu-sum", f"chunked-{norm}", n)
            if t is None:
                continue
            ratio("relu-sum", f"chunked-{norm}", "sdpa", n, 1.5, f"{norm} n={n}: / SDPA ≤ 1.5")
            peak = _get(results, "relu-sum", f"chunked-{norm}", n, "peak_mb")
            out.append(
                dict(
                    target=f"{norm} n={n}: peak memory < 1 GB",
                    measured=peak / 1024,
                    bound=1.0,
                    met=peak < 1024,
                )
            )
            break
    return out


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, suite in zip(axes, ("window", "dense"), strict=True):
        methods = sorted({r["method"] for r in results if r["suite"] == suite})
        for m in methods:
            pts = sorted(
                (r["n"], r["seconds"])
                for r in results
                if r["suite"] == suite and r["method"] == m and "seconds" in r
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=m)
        ax.set(xscale="log", yscale="log", xlabel="n", ylabel="seconds", title=SUITES[suite][0])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    suites = args.suites or list(SUITES)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    # Imported once here, before any torch op (so no thread pool exists yet), then forked.
    import torch

    import selfattention  # noqa: F401

    try:
        import local_attention  # noqa: F401
    except ImportError:
        pass
    results = []
    for suite in suites:
        sizes, methods = plan[suite]
        for n in args.sizes or sizes:
            for method in methods:
                if n > LIMITS.get(method, math.inf):
                    continue
                spec = dict(
                    suite=suite,
                    method=method,
                    n=n,
                    heads=args.heads,
                    head_dim=args.head_dim,
                    threads=args.threads,
                    repeat=args.repeat,
                )
                r = run_cell(spec, args.timeout)
                r.update(suite=suite, method=method, n=n)
                results.append(r)
                shown = r.get("error") or f"{r['seconds']:.4g} s, peak {r['peak_mb']:.0f} MB"
                print(f"{suite:13s} n={n:<7d} {method:16s} {shown}", flush=True)
    meta = dict(
        threads=args.threads,
        heads=args.heads,
        head_dim=args.head_dim,
        batch=1,
        dtype="float32",
        window=WINDOW,
        quick=args.quick,
        machine=f"{platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        python=sys.version.split()[0],
        wall_s=time.time() - started,
    )
    try:
        import torch

        meta["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    found = targets(results)
    (out_dir / "results.json").write_text(
        json.dumps(dict(meta=meta, results=results, targets=found), indent=1)
    )
    md = [
        f"Measured with {args.threads} threads, fp32, batch 1, {args.heads} heads, head_dim "
        f"{args.head_dim}; {meta['machine']} at the end; torch {meta.get('torch')}.",
        "",
        tables(results),
        "### Targets",
        "",
        "| target | measured | bound | met |",
        "|---|---:|---:|---|",
        *[
            f"| {t['target']} | {t['measured']:.3g} | {t['bound']} | {('no', 'yes')[t['met']]} |"
            for t in found
        ],
        "",
    ]
    (out_dir / "results.md").write_text("\n".join(md))
    plot(results, out_dir / "time_vs_n.png")
    print("\n".join(md))
    print(f"wrote {out_dir}/results.json, results.md, time_vs_n.png in {meta['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    p = argparse.ArgumentParser(prog="selfattention bench")
    add_arguments(p)
    sys.exit(run(p.parse_args()))
