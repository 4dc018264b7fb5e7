"""The geometric picture: how attention moves each word's vector.

A static embedding gives "bank" one vector whatever the sentence; self-attention replaces it with
a weighted mix of the sentence's vectors, so the contextual "bank" moves towards "river" or
"money". ``shift`` projects the static and the contextual vectors onto the same two principal
axes and draws an arrow from each static vector to its contextual one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from selfattention.viz._inputs import as_array, as_labels
from selfattention.viz.figures import literal, new_figure

__all__ = ["pca", "shift"]


def pca(x: Any, k: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal components by SVD of the centred data.

        X_c = X - mean(X) = U S Vᵀ,   coords = X_c V[:, :k],   ratio = S²[:k] / Σ S²

    Args:
        x: (m, d) rows are points.
        k: number of components (≤ min(m, d)).

    Returns:
        coords (m, k), components (k, d) (unit rows, sign fixed so each one's largest loading is
        positive, for reproducible plots), explained-variance ratio (k,).
    """
    x = as_array(x, "x", ndim=2)
    m, d = x.shape
    if not 1 <= k <= min(m, d):
        raise ValueError(
            f"k must be between 1 and min(m, d) = {min(m, d)} for x {x.shape}, got {k}"
        )
    xc = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    comps = vt[:k]
    signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    total = float((s**2).sum())
    ratio = (s[:k] ** 2) / total if total > 0 else np.zeros(k)
    return xc @ comps.T, comps, ratio


def _highlighted(highlight: Any, labels: list[str]) -> set[int]:
    if highlight is None:
        return set()
    items = [highlight] if isinstance(highlight, str | int | np.integer) else list(highlight)
    out: set[int] = set()
    for item in items:
        if isinstance(item, str):
            hits = [k for k, t in enumerate(labels) if t == item]
            if not hits:
                raise ValueError(f"highlight: {item!r} is not one of the labels {labels}")
            out.update(hits)
        elif isinstance(item, int | np.integer) and not isinstance(item, bool):
            if not -len(labels) <= item < len(labels):
                raise ValueError(f"highlight: index {item} is out of range for {len(labels)} words")
            out.add(int(item) % len(labels))
        else:
            raise TypeError(f"highlight must hold words or indices, got {item!r}")
    return out


def shift(
    static: Any,
    contextual: Any,
    labels: Any = None,
    *,
    highlight: Any = None,
    normalize: bool = False,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Static vs contextual vectors in one 2-D PCA plane, with an arrow from each static vector.

    Args:
        static: (n, dim) one vector per word before attention (e.g. token embeddings).
        contextual: (n, dim) after attention, or an ordered dict ``{stage name: (n, dim)}`` for
            several stages (e.g. ``{"self-attention": a, "layer 6": b}``); the arrows then run
            static → first stage → second stage ...
        labels: n words.
        highlight: words or indices to emphasise; the others are drawn faint.
        normalize: scale every vector to unit length first (when the stages' norms differ a lot,
            e.g. raw embeddings vs layer-normed outputs).

    The projection is fit on all vectors jointly (static and every stage), so distances in the
    plane compare like with like. Axis labels give each component's share of the variance.
    """
    s = as_array(static, "static", ndim=2)
    if isinstance(contextual, Mapping):
        if not contextual:
            raise ValueError("contextual is an empty dict; give at least one stage")
        stages = {str(k): as_array(v, f"contextual[{k!r}]", ndim=2) for k, v in contextual.items()}
    else:
        stages = {"contextual": as_array(contextual, "contextual", ndim=2)}
    for name, c in stages.items():
        if c.shape != s.shape:
            raise ValueError(
                f"contextual stage {name!r} has shape {c.shape}; "
                f"expected the static vectors' shape {s.shape}"
            )
    n = s.shape[0]
    words = as_labels(labels, n, "labels")
    marked = _highlighted(highlight, words)
    points = [s, *stages.values()]
    if normalize:
        points = [p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12) for p in points]
    if n * len(points) < 2 or s.shape[1] < 2:
        raise ValueError(
            f"need at least 2 points of dimension ≥ 2 for a 2-D projection, got {s.shape}"
        )
    coords, _, ratio = pca(np.concatenate(points), k=2)
    paths = coords.reshape(len(points), n, 2)  # (1 + stages, n, 2)

    if ax is None:
        fig = new_figure(8.0, 6.5)
        ax = fig.add_subplot()
    fig = ax.figure
    palette = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]
    faint = 0.25 if marked else 1.0
    strong = np.array([not marked or w in marked for w in range(n)])
    alphas = np.where(strong, 1.0, faint)

    def dots(xy: np.ndarray, color: str, label: str, size: float) -> None:
        ax.scatter(*xy[strong].T, s=size, color=color, zorder=3, label=label)
        if not strong.all():
            ax.scatter(*xy[~strong].T, s=size, color=color, zorder=3, alpha=faint)

    dots(paths[0], "#555555", "static", 28)
    for st, name in enumerate(stages, start=1):
        color = palette[(st - 1) % len(palette)]
        dots(paths[st], color, literal(name), 34)
        for w in range(n):
            ax.annotate(
                "",
                xy=paths[st, w],
                xytext=paths[st - 1, w],
                arrowprops={
                    "arrowstyle": "-|>",
                    "color": color,
                    "lw": 1.8 if w in marked else 1.0,
                    "alpha": alphas[w],
                    "shrinkA": 3,
                    "shrinkB": 3,
                    "mutation_scale": 11,
                },
                zorder=2,
            )
    halo = [patheffects.withStroke(linewidth=2.5, foreground="white")]  # legible over arrows
    for w, word in enumerate(words):
        bold = w in marked
        ax.annotate(
            literal(word),
            paths[0, w],
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=10 if bold else 8.5,
            fontweight="bold" if bold else "normal",
            alpha=1.0 if strong[w] else 0.45,
            path_effects=halo,
            zorder=4,
        )
        if bold:
            ax.annotate(
                literal(f"{word}′"),
                paths[-1, w],
                xytext=(6, -12),
                textcoords="offset points",
                fontsize=10,
                fontweight="bold",
                path_effects=halo,
                zorder=4,
                color=palette[(len(stages) - 1) % len(palette)],
            )
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.0f}% of variance)")
    ax.grid(True, color="#e5e5e5", lw=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(loc="best", frameon=False, fontsize=9)
    ax.set_title(literal(title) or "static → contextual vectors (PCA of all vectors)")
    return fig
