"""Attention over image patches: one patch's attention, and attention rollout, drawn on the image.

A vision transformer cuts an image (H, W) into a grid (gh, gw) of patches of (H/gh, W/gw) pixels,
flattened row by row; position p is patch (p // gw, p % gw). With a class token, position 0 is
the token and the patches follow.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from selfattention.viz._inputs import as_array, select, stack_layers
from selfattention.viz.figures import literal, new_figure

__all__ = ["check_grid", "image_attention", "image_grid", "patches", "rollout"]


def rollout(weights: Any, add_residual: bool = True, *, cumulative: bool = False) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020): how much each output position draws on each input.

        Ā_l = mean over heads of W_l,    Â_l = rownorm(Ā_l + I) (if add_residual, else Ā_l),
        R = Â_L · … · Â_2 · Â_1

    Adding I accounts for the residual connection around attention; renormalising keeps rows
    summing to 1 (a row that sums to 0, e.g. a fully masked query, stays 0).

    Args:
        weights: per layer (H, n, n) (list, or array (L, H, n, n); (1, H, n, n) entries are fine).
        add_residual: add the identity before renormalising.
        cumulative: return every prefix product (L, n, n), entry l = rollout through layer l.

    Returns:
        R (n, n) (row = output position, column = input position), or (L, n, n).
    """
    w = stack_layers(weights)
    n_layers, _, n_i, n_j = w.shape
    if n_i != n_j:
        raise ValueError(f"rollout needs square self-attention maps (n, n), got ({n_i}, {n_j})")
    eye = np.eye(n_i)
    result = eye
    prefixes = []
    for layer in range(n_layers):
        a = w[layer].mean(axis=0)
        if add_residual:
            a = a + eye
        rows = a.sum(axis=-1, keepdims=True)
        a = np.divide(a, rows, out=np.zeros_like(a), where=rows > 0)
        result = a @ result
        prefixes.append(result)
    return np.stack(prefixes) if cumulative else result


def check_grid(grid: Any, n_positions: int, cls_token: bool, name: str = "grid") -> tuple[int, int]:
    """(gh, gw) as ints, checked against the number of positions in the weights."""
    try:
        gh, gw = (int(g) for g in grid)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair (rows, columns) of patches, got {grid!r}") from None
    if gh < 1 or gw < 1:
        raise ValueError(f"{name} must be positive, got {(gh, gw)}")
    expected = gh * gw + int(cls_token)
    if n_positions != expected:
        cls = " + 1 class token" if cls_token else ""
        raise ValueError(
            f"weights cover {n_positions} positions but {name}={(gh, gw)}{cls} gives {expected}"
        )
    return gh, gw


def _image(image: Any) -> np.ndarray:
    img = as_array(image, "image", ndim=(2, 3))
    if img.ndim == 3:
        if img.shape[2] not in (1, 3, 4):
            raise ValueError(
                f"image must be (H, W) or (H, W, C) with C in 1, 3, 4; got {img.shape}"
            )
        if img.shape[2] == 1:
            img = img[..., 0]
    lo, hi = float(img.min()), float(img.max())
    if img.ndim == 3 and (lo < 0 or hi > 1):  # RGB(A) must be in [0, 1] for imshow
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    return img


def patches(image: Any, grid: Any) -> list[np.ndarray]:
    """The image cut into ``grid`` = (gh, gw) patches, row by row: gh·gw arrays (ph, pw[, C])."""
    img = as_array(image, "image", ndim=(2, 3))
    try:
        gh, gw = (int(g) for g in grid)
    except (TypeError, ValueError):
        raise TypeError(f"grid must be a pair (rows, columns) of patches, got {grid!r}") from None
    h, w = img.shape[:2]
    if gh < 1 or gw < 1 or h % gh or w % gw:
        raise ValueError(f"image of {h}×{w} pixels cannot be cut into a {gh}×{gw} grid evenly")
    ph, pw = h // gh, w // gw
    return [img[r * ph : (r + 1) * ph, c * pw : (c + 1) * pw] for r in range(gh) for c in range(gw)]


def _query_row(
    w: np.ndarray, query: Any, cls_token: bool, n_patches: int
) -> tuple[np.ndarray, Any]:
    """The attention row drawn and a description of the query (patch index, "cls" or None)."""
    if query is None:
        if cls_token:
            return w[0], "cls"
        return w.mean(axis=0), None
    if isinstance(query, str):
        if query != "cls" or not cls_token:
            raise ValueError(
                f"query must be a patch index (or 'cls' with cls_token=True), got {query!r}"
            )
        return w[0], "cls"
    if isinstance(query, bool) or not isinstance(query, int | np.integer):
        raise TypeError(f"query must be a patch index, 'cls' or None, got {query!r}")
    if not 0 <= query < n_patches:
        raise ValueError(f"query patch {query} is out of range for {n_patches} patches")
    return w[int(query) + int(cls_token)], int(query)


def _draw(
    ax: Axes,
    img: np.ndarray,
    heat: np.ndarray,
    query: Any,
    gw: int,
    *,
    alpha: float,
    cmap: str,
) -> Any:
    h, w = img.shape[:2]
    gh = heat.shape[0]
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, extent=(0, w, h, 0))
    top = max(float(heat.max()), 1e-12)
    # opacity grows with the weight: patches that get little attention leave the image visible
    im = ax.imshow(
        heat,
        cmap=cmap,
        alpha=alpha * np.clip(heat / top, 0.0, 1.0) ** 0.7,
        extent=(0, w, h, 0),
        interpolation="nearest",
        vmin=0.0,
        vmax=top,
    )
    if isinstance(query, int):
        ph, pw = h / gh, w / gw
        r, c = divmod(query, gw)
        ax.add_patch(Rectangle((c * pw, r * ph), pw, ph, fill=False, ec="#00e5ff", lw=2.0))
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def image_attention(
    image: Any,
    weights: Any,
    grid: Any,
    *,
    query: int | str | None = None,
    cls_token: bool = False,
    ax: Axes | None = None,
    alpha: float = 0.85,
    cmap: str = "inferno",
    title: str | None = None,
) -> Figure:
    """Where one patch looks, drawn over the image.

    Args:
        image: (H, W) grey or (H, W, C) colour.
        weights: (i, j) over positions (gh·gw patches, plus a class token first if
            ``cls_token``); or per-layer maps (list of (H, n, n), or (L, H, n, n)), which are
            combined by ``rollout``.
        grid: (gh, gw) patches per column and per row.
        query: the patch whose attention row is drawn (outlined in cyan); "cls" for the class
            token; None → the class token's row if there is one, else the mean over all queries
            (how much attention each patch receives).
        cls_token: position 0 is a class token (its column is left out of the map).
    """
    first = weights[0] if isinstance(weights, list | tuple) and weights else None
    # a list of per-layer maps (each ≥ 2-d), not a nested list holding one (i, j) map
    per_layer = (
        first is not None and (first.ndim if hasattr(first, "ndim") else np.ndim(first)) >= 2
    )
    w = None if per_layer else as_array(weights, "weights", ndim=(2, 3, 4))
    if w is None or w.ndim > 2:
        w, what = rollout(weights), "rollout"
    else:
        what = "attention"
    gh, gw = check_grid(grid, w.shape[1], cls_token)
    img = _image(image)
    row, q = _query_row(w, query, cls_token, gh * gw)
    heat = row[int(cls_token) :].reshape(gh, gw)
    if ax is None:
        fig = new_figure(4.6, 4.0)
        ax = fig.add_subplot()
    im = _draw(ax, img, heat, q, gw, alpha=alpha, cmap=cmap)
    label = {None: "mean over queries", "cls": "class token"}.get(q, f"patch {q}")
    ax.set_title(literal(title) or f"{what} of {label}", fontsize=10)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    return ax.figure


def image_grid(
    image: Any,
    weights: Any,
    grid: Any,
    *,
    query: int | str | None = None,
    cls_token: bool = False,
    layers: Any = None,
    heads: Any = None,
    alpha: float = 0.85,
    cmap: str = "inferno",
    title: str | None = None,
) -> Figure:
    """A PNG-ready grid: one row per layer; a column per head, the head mean, and the rollout
    through that layer, each drawn over the image for the chosen ``query`` (see
    ``image_attention``). Each panel's colours run from 0 to its own maximum.

    Args:
        weights: (L, H, n, n) or a list per layer of (H, n, n) / (1, H, n, n).
        layers, heads: which to draw (None = all; int, list, slice or "0,5" / "0-3").
    """
    w_all = stack_layers(weights)
    w, layer_ids, head_ids = select(w_all, layers, heads)
    gh, gw = check_grid(grid, w.shape[-1], cls_token)
    img = _image(image)
    rolled = rollout(w_all, cumulative=True)
    cols = [f"head {h}" for h in head_ids] + ["mean of heads", "rollout"]
    panel = 1.7
    fig = new_figure(panel * len(cols) + 0.6, panel * len(layer_ids) + (0.9 if title else 0.5))
    axes = fig.subplots(len(layer_ids), len(cols), squeeze=False)
    q = None
    for r, layer in enumerate(layer_ids):
        maps = [w[r, c] for c in range(len(head_ids))] + [w_all[layer].mean(0), rolled[layer]]
        for c, m in enumerate(maps):
            row, q = _query_row(m, query, cls_token, gh * gw)
            _draw(
                axes[r, c],
                img,
                row[int(cls_token) :].reshape(gh, gw),
                q,
                gw,
                alpha=alpha,
                cmap=cmap,
            )
            if r == 0:
                axes[r, c].set_title(cols[c], fontsize=9)
        axes[r, 0].set_ylabel(f"layer {layer}", fontsize=9, fontweight="bold")
    label = {None: "mean over queries", "cls": "class token"}.get(q, f"patch {q}")
    fig.suptitle(literal(title) or f"attention of {label}", fontsize=11)
    fig.subplots_adjust(wspace=0.04, hspace=0.06, left=0.05, right=0.99, bottom=0.02, top=0.9)
    return fig
