"""The ``ring`` suite's table and targets, from the rows of ``apps.bench.ring.measure``."""

from __future__ import annotations

from typing import Any

from selfattention.apps.bench.ring import (
    KINDS,
    RING_WINDOW,
    SIDE_N,
    SIDE_RING,
    SIDE_SINGLE,
    TRANSFER,
)

__all__ = ["ring_table", "ring_targets", "window_bound"]

Row = dict[str, Any]


def window_bound(head_dim: int) -> int:
    """Bytes a rank may send for the window kind: (left + right) · 2 (k and v) · d · 4 (fp32),
    b = h = 1, whatever n and P."""
    return sum(RING_WINDOW) * 2 * head_dim * 4


def ring_table(rows: list[Row]) -> str:
    """Markdown: one line per (P, n, kind) and the side-by-side, errors in place of times."""
    head_dim = rows[0].get("head_dim", 64) if rows else 64
    left, right = RING_WINDOW
    lines = [
        f"### ring attention on loopback (gloo, 1 thread per process), forward, b=1 h=1 "
        f"d={head_dim} fp32, window ({left}, {right})",
        "",
        "| P | n | kind | time (s) | sent per rank (MiB) | peak per rank (MiB) |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    sweep = [r for r in rows if r["method"] not in (SIDE_RING, SIDE_SINGLE)]
    order = [*KINDS, TRANSFER, ""]
    for r in sorted(
        sweep, key=lambda r: (r.get("world", 0), r["n"], order.index(r.get("kind", "")))
    ):
        if "error" in r:
            lines.append(
                f"| {r.get('world', '')} | {r['n']} | {r['method']} | {r['error'][:90]} | | |"
            )
            continue
        kind, peak = r["kind"], f"{r['peak_mb']:.0f}"
        if kind == TRANSFER:  # a block alone: its rate, no memory worth a column
            kind, peak = f"{kind} ({r['sent_bytes'] / r['seconds'] / 1e9:.2f} GB/s)", "–"
        lines.append(
            f"| {r['world']} | {r['n']} | {kind} | {r['seconds']:.4g} | "
            f"{r['sent_bytes'] / 2**20:.4g} | {peak} |"
        )
    window = sorted({r["sent_bytes"] for r in sweep if r.get("kind") == "window"})
    lines += ["", f"window bytes sent per rank, distinct values over P and n: {window} "
              f"(bound (left + right)·2·d·4 = {window_bound(head_dim)})"]  # fmt: skip
    side = [r for r in rows if r["method"] in (SIDE_RING, SIDE_SINGLE)]
    if side:
        lines += ["", "| side by side, interleaved, full fp32 | n | best time (s) | note |",
                  "|---|---:|---:|---|"]  # fmt: skip
        for r in side:
            shown = r.get("error") or f"{r['seconds']:.4g}"
            lines.append(f"| {r['method']} | {r['n']} | {shown} | {r.get('note', '')} |")
    lines.append("")
    return "\n".join(lines)


def ring_targets(rows: list[Row]) -> list[dict[str, Any]]:
    """The issue's ring targets these rows can judge: ``{target, measured, bound, met}``."""
    head_dim = rows[0].get("head_dim", 64) if rows else 64
    out = []
    timed = {(r["method"], r["n"]): r["seconds"] for r in rows if "seconds" in r}
    ring, single = timed.get((SIDE_RING, SIDE_N)), timed.get((SIDE_SINGLE, SIDE_N))
    if ring and single:
        ratio = ring / single
        out.append(
            dict(
                target=f"ring full n={SIDE_N}: 2 procs x 1 thread / sa.attention 2 threads ≤ 1.3",
                measured=ratio,
                bound=1.3,
                met=ratio <= 1.3,
            )
        )
    window = [r["sent_bytes"] for r in rows if r.get("kind") == "window" and "sent_bytes" in r]
    if window:
        worst = max(window) / window_bound(head_dim)
        out.append(
            dict(
                target="ring window: bytes per rank / ((left + right)·2·d·4) ≤ 1",
                measured=worst,
                bound=1.0,
                met=worst <= 1.0,
            )
        )
    return out
