"""Views that explain a weight, not only show it: the neuron view and value-weighted attention.

Legend: L layers, H heads, i queries, j keys, d head_dim, e model width.

*Neuron view*: a score is a dot product, s_ij = scale · Σ_d q_i[d] k_j[d]; the per-dimension
terms p_ij[d] = scale · q_i[d] k_j[d] show which dimensions make query i look at key j (and which
push against it). ``neuron_products`` returns them; they add up to the score exactly.

*Value-weighted attention* (Kobayashi et al., 2020): what a head moves from j into i is
α_ij · f(x_j) with f(x_j) = v_j W_o^h (the head's value, through its slice of the output
projection); its size ‖α_ij v_j W_o^h‖ = α_ij ‖v_j W_o^h‖. A head that puts most of its weight on
[CLS]/[SEP] but whose value there is tiny moves almost nothing, which the raw α_ij hides.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from selfattention.viz._inputs import as_array, as_labels, stack_layers
from selfattention.viz.figures import literal, new_figure

__all__ = [
    "flow_figure",
    "neuron_figure",
    "neuron_products",
    "value_norms",
    "value_weighted",
    "value_weighted_figure",
]


def _index(v: Any, n: int, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer):
        raise TypeError(f"{name} must be an int position, got {v!r}")
    if not -n <= v < n:
        raise ValueError(f"{name} must be a position in 0..{n - 1}, got {v}")
    return int(v) % n


def _heads(x: Any, name: str) -> np.ndarray:
    a = as_array(x, name, ndim=(2, 3, 4))
    if a.ndim == 4:  # (1, H, n, d): a batch of one
        if a.shape[0] != 1:
            raise ValueError(f"{name} has shape {a.shape}: select one sequence first")
        a = a[0]
    return a if a.ndim == 3 else a[None]


def neuron_products(
    queries: Any, keys: Any, query: int, key: int, *, scale: float | None = None
) -> np.ndarray:
    """Per-head, per-dimension terms of one score: p[h, d] = scale · q_query[h, d] · k_key[h, d].

    Args:
        queries: (H, i, d) (or (i, d) one head), the projected queries of one layer.
        keys: (H, j, d), the projected keys.
        query, key: the positions i and j.
        scale: the score scale (default 1/√d, as the attention that produced them).

    Returns:
        p (H, d) with p.sum(-1) = scale · q_i · k_j, the score before softmax (no bias/mask).
    """
    q, k = _heads(queries, "queries"), _heads(keys, "keys")
    if q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(
            f"queries (H, i, d) and keys (H, j, d) must share H and d, got {q.shape} and {k.shape}"
        )
    i = _index(query, q.shape[1], "query")
    j = _index(key, k.shape[1], "key")
    s = 1.0 / np.sqrt(q.shape[2]) if scale is None else float(scale)
    return s * q[:, i, :] * k[:, j, :]


def value_norms(values: Any, out_weight: Any) -> np.ndarray:
    """‖v_j W_o^h‖ for every head h and position j.

    Args:
        values: (H, j, d) (or (L, H, j, d)) the projected values, bias included.
        out_weight: the output projection's weight (e, H·d) as ``torch.nn.Linear`` stores it
            (out = concat_h(o_h) Wᵀ + b), or (L, e, H·d) with per-layer values. Head h's slice
            is W[:, h d:(h + 1) d]; the output bias is added once, not per token, so it is left out.

    Returns:
        (H, j) (or (L, H, j)) norms.
    """
    v = as_array(values, "values", ndim=(3, 4))
    w = as_array(out_weight, "out_weight", ndim=(2, 3))
    if (v.ndim == 4) != (w.ndim == 3):
        raise ValueError(
            f"values {v.shape} and out_weight {w.shape}: give one layer of each (H, j, d) and "
            "(e, H·d), or L layers of each (L, H, j, d) and (L, e, H·d)"
        )
    if v.ndim == 3:
        return value_norms(v[None], w[None])[0]
    n_layers, n_heads, _, d = v.shape
    if w.shape[0] != n_layers or w.shape[2] != n_heads * d:
        raise ValueError(
            f"out_weight must be (L={n_layers}, e, H·d={n_heads * d}) for values {v.shape}, "
            f"got {w.shape}"
        )
    w_h = w.reshape(n_layers, w.shape[1], n_heads, d)  # (L, e, H, d)
    moved = np.einsum("lhjd,lehd->lhje", v, w_h)  # v_j W_o^h for every head and token
    return np.linalg.norm(moved, axis=-1)


def value_weighted(weights: Any, norms: Any) -> np.ndarray:
    """‖α_ij v_j W_o^h‖ = α_ij · ‖v_j W_o^h‖ (Kobayashi et al., 2020).

    Args:
        weights: α (L, H, i, j) (or any layout ``stack_layers`` takes).
        norms: ‖v_j W_o^h‖ (L, H, j) (``value_norms``), or (H, j) for one layer.

    Returns:
        (L, H, i, j), same layout as the stacked weights.
    """
    w = stack_layers(weights)
    nv = as_array(norms, "norms", ndim=(1, 2, 3))
    while nv.ndim < 3:
        nv = nv[None]
    if nv.shape != (w.shape[0], w.shape[1], w.shape[3]):
        raise ValueError(
            f"norms must be (L, H, j) = {(w.shape[0], w.shape[1], w.shape[3])} for weights of "
            f"shape {w.shape}, got {nv.shape}"
        )
    return w * nv[:, :, None, :]


def neuron_figure(
    queries: Any,
    keys: Any,
    query: int,
    key: int,
    tokens: Any = None,
    *,
    scale: float | None = None,
    top: int = 8,
    title: str | None = None,
) -> Figure:
    """One bar chart per head: the ``top`` dimensions with the largest |q_i[d] k_j[d]| (scaled),
    and in the panel title the score they add up to (all d, not only those shown)."""
    p = neuron_products(queries, keys, query, key, scale=scale)
    q = _heads(queries, "queries")
    n = q.shape[1]
    labels = as_labels(tokens, max(n, _heads(keys, "keys").shape[1]), "tokens")
    i, j = query % n, key % len(labels)
    n_heads = p.shape[0]
    cols = min(4, n_heads)
    rows = -(-n_heads // cols)
    fig = new_figure(3.2 * cols, 2.3 * rows + 0.8)
    axes = fig.subplots(rows, cols, squeeze=False)
    for h in range(rows * cols):
        ax = axes[h // cols, h % cols]
        if h >= n_heads:
            ax.set_axis_off()
            continue
        order = np.argsort(-np.abs(p[h]))[:top]
        vals = p[h, order]
        ax.barh(range(len(order)), vals, color=["#2563eb" if v >= 0 else "#dc2626" for v in vals])
        ax.set_yticks(range(len(order)), [f"d{d}" for d in order], fontsize=7)
        ax.invert_yaxis()
        ax.axvline(0, color="#888", lw=0.6)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"head {h}: score {p[h].sum():.3f}", fontsize=9)
    fig.suptitle(
        literal(title or f"q·k by dimension: {labels[i]!s} (query {i}) → {labels[j]!s} (key {j})"),
        fontsize=11,
    )
    fig.subplots_adjust(hspace=0.6, wspace=0.45)
    return fig


def value_weighted_figure(
    weights: Any, norms: Any, tokens: Any = None, *, layer: int = 0, title: str | None = None
) -> Figure:
    """Two rows for one layer: raw α (top) and ‖α v W_o‖ (bottom), one column per head, each row
    on its own colour scale (the two measure different things)."""
    from selfattention.viz.heatmap import _ticks

    w = stack_layers(weights)
    vw = value_weighted(w, norms)
    layer = _index(layer, w.shape[0], "layer")
    n_heads, _n_i, n_j = w.shape[1:]
    labels = as_labels(tokens, n_j, "tokens")
    panel = float(np.clip(0.14 * n_j, 1.4, 3.0))
    panel = min(panel, 24.0 / n_heads)
    fig = new_figure(panel * n_heads + 2.0, 2 * panel + 1.6)
    axes = fig.subplots(2, n_heads, squeeze=False)
    for r, (maps, name) in enumerate(((w, "weight α"), (vw, "‖α v W_o‖"))):
        top = max(float(maps[layer].max()), 1e-12)
        for h in range(n_heads):
            ax = axes[r, h]
            im = ax.imshow(maps[layer, h], cmap="Blues", vmin=0, vmax=top)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"head {h}", fontsize=9)
            if h == 0:
                ax.set_ylabel(name, fontsize=9)
            if r == 1 and n_j <= 24:
                _ticks(ax, labels, "x", 24, 5.5)
        fig.colorbar(im, ax=list(axes[r]), fraction=0.02, pad=0.01)
    fig.suptitle(literal(title or f"layer {layer}: attention weight vs what it moves"), fontsize=11)
    return fig


def flow_figure(
    weights: Any, tokens: Any = None, *, flow: Any = None, title: str | None = None
) -> Figure:
    """Rollout (left) and attention flow (right) over all layers, side by side (n ≤ 64 tokens for
    flow; pass a precomputed ``flow`` (n, n) to skip the max-flows)."""
    from selfattention.viz.flow import attention_flow
    from selfattention.viz.heatmap import heatmap
    from selfattention.viz.images import rollout

    w = stack_layers(weights)
    n = w.shape[-1]
    f = attention_flow(w) if flow is None else as_array(flow, "flow", ndim=2)
    cell = float(np.clip(6.0 / n, 0.12, 0.45))
    fig = new_figure(2 * cell * n + 4.5, cell * n + 2.2)
    ax_r, ax_f = fig.subplots(1, 2)
    labels = as_labels(tokens, n, "tokens")
    heatmap(rollout(w), labels, ax=ax_r, title="rollout (0.5·A + 0.5·I, product)", colorbar=False)
    heatmap(f, labels, ax=ax_f, title="attention flow (max-flow)", colorbar=False)
    fig.suptitle(literal(title or f"input → output over all {w.shape[0]} layers"), fontsize=11)
    return fig
