"""The smoothing picture: raw and smoothed series over a stretch, and the trade-off curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from selfattention.apps.smoothing.series import Series

__all__ = ["plot"]


def plot(
    series: Series,
    smoothed: dict[str, np.ndarray],
    rows: list[dict[str, Any]],
    path: str | Path,
    *,
    zoom: tuple[int, int] | None = None,
) -> Path:
    """PNG: the raw and smoothed series (zoomed to ``zoom`` = (start, stop) indices) and the
    trade-off curves (roughness against lag, and against tracking error)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = series.values
    lo, hi = zoom or (0, len(x))
    fig = plt.figure(figsize=(11, 7.5), dpi=90)
    grid = fig.add_gridspec(2, 2, height_ratios=(1.1, 1))
    top = fig.add_subplot(grid[0, :])
    t = np.arange(lo, hi)
    top.plot(t, x[lo:hi], color="0.6", lw=1.0, label="raw")
    colours = {"moving average": "C0", "EMA": "C2", "attention": "C3"}
    colours["attention, content only"] = "C1"
    for name, y in smoothed.items():
        method = name.split(" (")[0]
        top.plot(t, y[lo:hi], lw=1.4, color=colours.get(method), label=name)
    ticks = np.linspace(lo, hi - 1, 6).astype(int)
    top.set_xticks(ticks, [series.labels[i][:10] for i in ticks])
    top.set_ylabel(series.name)
    top.set_title("raw and smoothed, at equal roughness")
    top.legend(fontsize=8, loc="best")
    for col, key, label in ((0, "lag", "lag (days)"), (1, "tracking_error", "tracking error")):
        ax = fig.add_subplot(grid[1, col])
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = sorted((r for r in rows if r["method"] == method), key=lambda r: r["roughness"])
            ax.plot(
                [p["roughness"] for p in pts],
                [p[key] for p in pts],
                "o-",
                ms=3,
                color=colours.get(method),
                label=method,
            )
        ax.set_xlabel("roughness  std(Δy)/std(Δx)  (smoother ←)")
        ax.set_ylabel(label)
        ax.set_title(f"trade-off: roughness vs {label}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
