"""Heatmaps of attention weights: one map, or a grid of layers × heads.

Rows are queries (the token doing the looking), columns are keys (the token looked at); row i of
a softmax attention map sums to 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from selfattention.viz._inputs import as_array, as_labels, select, stack_layers, thin_ticks
from selfattention.viz.figures import literal, new_figure, text_color

__all__ = ["grid", "heatmap"]


def _label_size(cell_inches: float) -> float:
    """A tick-label font size (points) that fits a cell ``cell_inches`` tall."""
    return float(np.clip(cell_inches * 72 * 0.62, 4.5, 10.0))


def _ticks(ax: Axes, labels: list[str], axis: str, max_labels: int, size: float) -> None:
    idx = list(thin_ticks(len(labels), max_labels))
    if axis == "x":
        ax.set_xticks(idx, [literal(labels[k]) for k in idx], rotation=90, fontsize=size)
    else:
        ax.set_yticks(idx, [literal(labels[k]) for k in idx], fontsize=size)


def heatmap(
    weights: Any,
    x_labels: Any = None,
    y_labels: Any = None,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    annotate: bool | str = "auto",
    cmap: str = "Blues",
    vmin: float = 0.0,
    vmax: float | None = None,
    colorbar: bool = True,
    max_labels: int = 80,
) -> Figure:
    """One attention map as a heatmap.

    Args:
        weights: (i, j) tensor or array; row = query, column = key.
        x_labels: j key labels (tokens); default "0".."j-1".
        y_labels: i query labels; default ``x_labels`` when i == j.
        ax: draw into this Axes (its figure is returned) instead of a new figure.
        annotate: write each value in its cell; "auto" does so when the map has at most 16 × 16
            cells.
        vmax: top of the colour scale; default the largest weight shown.
        max_labels: at most this many tick labels per axis (every k-th token beyond that).

    Returns:
        the matplotlib Figure (save it with ``selfattention.viz.save``).
    """
    w = as_array(weights, "weights", ndim=2)
    n_i, n_j = w.shape
    xl = as_labels(x_labels, n_j, "x_labels")
    if y_labels is None and x_labels is not None and n_i == n_j:
        yl = xl
    else:
        yl = as_labels(y_labels, n_i, "y_labels")
    if annotate == "auto":
        annotate = max(n_i, n_j) <= 16
    elif not isinstance(annotate, bool):
        raise ValueError(f"annotate must be True, False or 'auto', got {annotate!r}")

    cell = float(np.clip(7.0 / max(n_i, n_j), 0.12, 0.5))
    if ax is None:
        longest = max(len(t) for t in xl + yl)
        pad = min(2.5, 0.25 + 0.075 * longest * _label_size(cell) / 8)
        fig = new_figure(cell * n_j + pad + (1.2 if colorbar else 0.3), cell * n_i + pad + 0.5)
        ax = fig.add_subplot()
    fig = ax.figure
    top = float(w.max()) if vmax is None else float(vmax)
    im = ax.imshow(w, cmap=cmap, vmin=vmin, vmax=max(top, vmin + 1e-12), aspect="equal")
    size = _label_size(cell)
    _ticks(ax, xl, "x", max_labels, size)
    _ticks(ax, yl, "y", max_labels, size)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if annotate:
        colors = im.cmap(im.norm(w))
        for r in range(n_i):
            for c in range(n_j):
                ax.text(
                    c,
                    r,
                    f"{w[r, c]:.2f}".lstrip("0") if w[r, c] < 1 else f"{w[r, c]:.1f}",
                    ha="center",
                    va="center",
                    fontsize=max(4.5, size - 1),
                    color=text_color(colors[r, c]),
                )
    if title:
        ax.set_title(literal(title))
    if colorbar:
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="attention weight")
    return fig


def grid(
    weights: Any,
    labels: Any = None,
    *,
    layers: Any = None,
    heads: Any = None,
    query_labels: Any = None,
    mean: bool = False,
    cmap: str = "Blues",
    vmax: float | None = None,
    title: str | None = None,
    max_labels: int = 40,
) -> Figure:
    """A grid of heatmaps: one row per layer, one column per head.

    Args:
        weights: (L, H, i, j), a list per layer of (H, i, j) or (1, H, i, j), or (H, i, j) / (i, j).
        labels: j key labels (tokens); also the query labels unless ``query_labels`` is given.
        layers, heads: which to draw: None (all), an int, a list, a slice or a string "0,5" /
            "0-3" (negative indices count from the end). Filter them for long inputs.
        mean: add a last column with the mean over *all* heads of the layer.
        vmax: top of the shared colour scale; default the largest weight shown.
        max_labels: at most this many token labels per axis (every k-th token beyond that).

    Token labels are drawn on the left column (queries) and the bottom row (keys) only; panels
    grow with the number of tokens up to a cap, so 100+ tokens stay legible in the saved PNG.
    """
    w_all = stack_layers(weights)
    w, layer_ids, head_ids = select(w_all, layers, heads)
    panels = [w[:, k] for k in range(len(head_ids))]
    col_titles = [f"head {h}" for h in head_ids]
    if mean:
        panels.append(w_all[layer_ids].mean(axis=1))
        col_titles.append("mean of heads")
    n_i, n_j = w.shape[2:]
    xl = as_labels(labels, n_j, "labels")
    if query_labels is not None:
        yl = as_labels(query_labels, n_i, "query_labels")
    elif labels is not None and n_i == n_j:
        yl = xl
    else:
        yl = as_labels(None, n_i, "query_labels")

    n_rows, n_cols = len(layer_ids), len(panels)
    # panels big enough for ~7 pt token labels, within about 24 × 18 inches for the whole grid
    panel = float(np.clip(0.16 * max(n_i, n_j), 1.5, 5.0))
    panel = max(1.1, min(panel, 24.0 / n_cols, 18.0 / n_rows))
    label_room = min(1.6, 0.2 + 0.055 * max(len(t) for t in xl + yl))
    fig = new_figure(
        panel * n_cols + label_room + 1.3, panel * n_rows + label_room + (0.9 if title else 0.5)
    )
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    top = max(float(p.max()) for p in panels) if vmax is None else float(vmax)
    # tick labels are thinned to max_labels per axis: size them by the gap between shown labels
    shown = len(range(0, max(n_i, n_j), max(1, -(-max(n_i, n_j) // max_labels))))
    size = _label_size(panel / max(1, shown))
    im = None
    for r, layer in enumerate(layer_ids):
        for c in range(n_cols):
            ax = axes[r, c]
            im = ax.imshow(panels[c][r], cmap=cmap, vmin=0.0, vmax=max(top, 1e-12), aspect="equal")
            ax.tick_params(length=0)
            if c == 0:
                _ticks(ax, yl, "y", max_labels, size)
                ax.set_ylabel(f"layer {layer}", fontsize=10, fontweight="bold")
            else:
                ax.set_yticks([])
            if r == n_rows - 1:
                _ticks(ax, xl, "x", max_labels, size)
            else:
                ax.set_xticks([])
            if r == 0:
                ax.set_title(col_titles[c], fontsize=10)
    fig.subplots_adjust(
        left=label_room / fig.get_figwidth() + 0.02,
        right=1 - 1.2 / fig.get_figwidth(),
        bottom=label_room / fig.get_figheight() + 0.01,
        top=1 - (0.8 if title else 0.4) / fig.get_figheight(),
        wspace=0.06,
        hspace=0.06,
    )
    cax = fig.add_axes((1 - 1.0 / fig.get_figwidth(), 0.25, 0.15 / fig.get_figwidth(), 0.5))
    fig.colorbar(im, cax=cax, label="attention weight")
    if title:
        fig.suptitle(literal(title), fontsize=12)
    return fig
