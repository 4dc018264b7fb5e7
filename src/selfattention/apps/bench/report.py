"""A benchmark run as tables, the issue's targets and a plot. Rows are the cells' results:
``{suite, method, n, seconds, flops, peak_mb, ...}`` or ``{suite, method, n, error}``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfattention.apps.bench.config import SUITES
from selfattention.apps.bench.ring_report import ring_table, ring_targets

__all__ = ["markdown", "plot", "tables", "targets"]


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def tables(results: list[dict[str, Any]]) -> str:
    """One Markdown table per suite: time, ratio to the suite's reference method, GFLOP/s,
    percent of the matmul ceiling, peak memory, max abs error, compile time."""
    lines = []
    for suite, (title, ref_method) in SUITES.items():
        rows = [r for r in results if r["suite"] == suite]
        if not rows:
            continue
        if suite == "ring":  # bytes and ranks, not FLOP rates: its own table
            lines.append(ring_table(rows))
            continue
        lines += [
            f"### {title}",
            "",
            "| n | method | time (s) | × " + ref_method + " | GFLOP/s | % of matmul | peak MB "
            "| max abs err | compile (s) | note |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for n in sorted({r["n"] for r in rows}):
            cell = {r["method"]: r for r in rows if r["n"] == n}
            ref = cell.get(ref_method, {}).get("seconds")
            ceiling = cell.get("matmul", {})
            ceiling_rate = _rate(ceiling) if "seconds" in ceiling else None
            for method, r in cell.items():
                if "error" in r:
                    error = r["error"] if len(r["error"]) < 90 else r["error"][:87] + "..."
                    lines.append(f"| {n} | {method} | {error} | | | | | | | |")
                    continue
                rate = _rate(r)
                ratio = r["seconds"] / ref if ref else None
                pct = 100 * rate / ceiling_rate if ceiling_rate and rate else None
                peak = r.get("peak_mb")
                lines.append(
                    f"| {n} | {method} | {r['seconds']:.4g} | {_fmt(ratio)} | "
                    f"{_fmt(rate and round(rate, 1), 4)} | {_fmt(pct)} | "
                    f"{_fmt(peak and round(peak))} | {_fmt(r.get('max_abs_err'), 2)} | "
                    f"{_fmt(r.get('compile_s'))} | {r.get('note', '')} |"
                )
        lines.append("")
    return "\n".join(lines)


def _rate(r: dict[str, Any]) -> float | None:
    """GFLOP/s of a timed row, None for rows without a FLOP count (decode, stream, packed)."""
    return r["flops"] / r["seconds"] / 1e9 if r.get("flops") else None


def _get(results, suite, method, n, key="seconds"):
    for r in results:
        if (r["suite"], r["method"], r["n"]) == (suite, method, n):
            return r.get(key)
    return None


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets that these results can judge: ``{target, measured, bound, met}``."""
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
    _ceiling_targets(results, out, ratio)
    out += ring_targets([r for r in results if r["suite"] == "ring"])
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


def _ceiling_targets(results, out: list[dict[str, Any]], ratio) -> None:
    """Issue 12's window targets at n = 16384, from the interleaved ``window-ceiling`` suite."""
    suite, n = "window-ceiling", 16384
    window = next(
        (r for r in results if (r["suite"], r["method"], r["n"]) == (suite, "window", n)), None
    )
    ceiling = next(
        (r for r in results if (r["suite"], r["method"], r["n"]) == (suite, "matmul", n)), None
    )
    if window and ceiling and "seconds" in window and "seconds" in ceiling:
        pct = 100 * _rate(window) / _rate(ceiling)
        out.append(
            dict(target="window n=16384 fwd: % of the matmul rate ≥ 65", measured=pct,
                 bound=65, met=pct >= 65)
        )  # fmt: skip
    flex = "flex" if _get(results, suite, "flex", n) else "flex (uncompiled)"
    ratio(suite, "window", flex, n, 0.8, f"window n=16384 fwd: / {flex} ≤ 0.8 (interleaved)")
    ratio(suite, "window", "local-attention", n, 0.2, "… / local-attention ≤ 0.2 (interleaved)")
    ratio(suite, "window fwd+bwd", "window", n, 3.0, "window n=16384: fwd+bwd / fwd ≤ 3")


def markdown(meta: dict[str, Any], results: list[dict[str, Any]], found: list[dict]) -> str:
    """results.md: the settings line, the tables and the targets."""
    md = [
        f"Measured with {meta['threads']} threads, fp32, batch 1, {meta['heads']} heads, "
        f"head_dim {meta['head_dim']}; {meta['machine']} at the end; torch {meta.get('torch')}.",
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
    return "\n".join(md)


def plot(results: list[dict[str, Any]], path: str | Path) -> Path:
    """PNG: seconds against n (log-log) per method, window and dense suites side by side."""
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
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
