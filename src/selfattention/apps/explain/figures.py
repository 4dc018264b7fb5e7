"""The figures of an ``explain`` result: a layer × head grid per sentence and the shift plot.

Figures are matplotlib ``Figure`` objects built by ``selfattention.viz`` (no pyplot, no display);
``outputs.write_outputs`` saves them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from selfattention import viz
from selfattention.apps.explain.compare import SCALES, parameter_free
from selfattention.apps.explain.compute import ExplainResult
from selfattention.viz._inputs import parse_selection
from selfattention.viz.figures import literal, new_figure

__all__ = ["PAGE_TOKENS", "grid_figures", "shift_figure", "view_figures"]

PAGE_TOKENS = 64  # longer sentences get one grid PNG per layer (72 panels of 512² are unreadable)

_DIGITS = "⁰¹²³⁴⁵⁶⁷⁸⁹"
_SUPERSCRIPTS = str.maketrans("0123456789", _DIGITS)


def grid_figures(
    result: ExplainResult, *, layers: Any = None, heads: Any = None
) -> list[tuple[str, Figure]]:
    """Heatmap grids of the encoder's weights, as (file stem, figure): per sentence k one grid of
    every layer (rows) × head (columns), "grid_k"; a sentence longer than ``PAGE_TOKENS`` tokens
    gets one page per layer instead, "grid_k_layer_l", so each panel stays large enough to read.
    ``layers`` / ``heads`` keep only those (as ``viz.grid``)."""
    out = []
    for k, (s, enc) in enumerate(zip(result.sentences, result.encoded, strict=True), 1):
        text = s.text if len(s.text) <= 90 else s.text[:87] + "..."  # a title, not the text
        title = f"sentence {k}: {text}"
        if len(enc.tokens) <= PAGE_TOKENS:
            grid = viz.grid(enc.weights, enc.tokens, layers=layers, heads=heads, title=title)
            out.append((f"grid_{k}", grid))
            continue
        head_ids = parse_selection(heads, enc.weights.shape[1], "heads")
        for layer in parse_selection(layers, enc.weights.shape[0], "layers"):
            page = _layer_page(enc.weights[layer], enc.tokens, head_ids, f"{title}, layer {layer}")
            out.append((f"grid_{k}_layer_{layer}", page))
    return out


def _layer_page(w: np.ndarray, tokens: list[str], heads: list[int], title: str) -> Figure:
    """One layer's heads (H, n, n) as a grid of up to 4 columns, 5 inches per panel, each on its
    own colour scale: a long sentence's patterns (diagonals, [CLS]/[SEP] columns) stay visible;
    labels thinned to 40 per axis."""
    cols = min(4, len(heads))
    rows = -(-len(heads) // cols)
    fig = new_figure(5.2 * cols + 1.0, 5.2 * rows + 0.8)
    axes = fig.subplots(rows, cols, squeeze=False)
    for a, ax in enumerate(axes.flat):
        if a >= len(heads):
            ax.set_axis_off()
            continue
        h = heads[a]
        # a 500-token row spreads its weight thin: the top of the scale is each head's 99.5th
        # percentile (a few sink cells would otherwise leave every other cell white)
        top = max(float(np.quantile(w[h], 0.995)), 1e-12)
        viz.heatmap(w[h], tokens, ax=ax, title=f"head {h}", colorbar=False, max_labels=40, vmax=top)
        ax.set_xlabel("")
        ax.set_ylabel("")
    note = "colour: 0 to each head's 99.5th percentile"
    fig.suptitle(f"{literal(title)}\n{note}", fontsize=12)
    fig.subplots_adjust(hspace=0.35, wspace=0.35)
    return fig


def view_figures(result: ExplainResult) -> list[tuple[str, str, Figure]]:
    """The "why" views of the first sentence with the followed word, as (file stem, caption,
    figure): the neuron view of the word and the key it attends to most in the last layer's
    mean, raw vs value-weighted attention of the last layer, and rollout vs flow (up to
    ``viz.MAX_FLOW_TOKENS`` tokens)."""
    k = next(k for k, s in enumerate(result.sentences) if s.target is not None)
    s, enc = result.sentences[k], result.encoded[k]
    out: list[tuple[str, str, Figure]] = []
    last = enc.weights.shape[0] - 1
    if enc.queries is not None and len(enc.pieces(s.target)):
        i = int(enc.pieces(s.target)[0])
        j = int(np.argmax(enc.weights[last, :, i].mean(0)))
        fig = viz.neuron_figure(
            enc.queries[last], enc.keys[last], i, j, enc.tokens, scale=enc.scale
        )
        cap = f"Neuron view, layer {last}: {enc.tokens[i]} → {enc.tokens[j]}, q·k by dimension"
        out.append(("neuron", cap, fig))
    if enc.value_norms is not None:
        fig = viz.value_weighted_figure(enc.weights, enc.value_norms, enc.tokens, layer=last)
        out.append(("value_weighted", f"Layer {last}: weight α vs ‖α v W_o‖", fig))
    if len(enc.tokens) <= viz.MAX_FLOW_TOKENS:
        fig = viz.flow_figure(enc.weights, enc.tokens, title=f"sentence {k + 1}: all layers")
        out.append(("flow", "Attention rollout vs attention flow", fig))
    return out


def shift_figure(result: ExplainResult) -> Figure:
    """Two panels: GloVe -> parameter-free attention softmax(X Xᵀ/√d) X, and the encoder's
    embeddings -> its last layer. Each word of each sentence once; the followed word is marked
    with its sentence number (bank¹, bank²)."""
    fig = new_figure(15.0, 6.5)
    ax_glove, ax_model = fig.subplots(1, 2)
    word, sents = result.word, result.sentences

    labels, static, moved = [], [], []
    for k, s in enumerate(sents, 1):
        if not len(s.known):
            continue
        y, _ = parameter_free(s.x, "sqrt")
        seen = set()
        for row, i in enumerate(s.known):
            w = s.words[i]
            if w in seen or not w.isalnum():
                continue  # repeated words share one vector here; punctuation adds clutter
            seen.add(w)
            labels.append(_mark(w, k) if i == s.target else w)
            static.append(s.x[row])
            moved.append(y[row])
    if len(static) >= 2:
        viz.shift(
            np.array(static),
            {SCALES["sqrt"]: np.array(moved)},
            labels,
            highlight=_targets(labels, word),
            ax=ax_glove,
            title=f"GloVe {result.glove.dim}-d: each word → {SCALES['sqrt']}",
        )
    else:
        ax_glove.set_axis_off()
        ax_glove.text(0.5, 0.5, "GloVe knows fewer than 2 of these words", ha="center")

    labels, static, moved = [], [], []
    for k, (s, enc) in enumerate(zip(sents, result.encoded, strict=True), 1):
        seen = set()
        for i, w in enumerate(s.words):
            if w in seen or not w.isalnum() or not len(enc.pieces(i)):
                continue
            seen.add(w)
            labels.append(_mark(w, k) if i == s.target else w)
            static.append(enc.word_vector(i, 0))
            moved.append(enc.word_vector(i, enc.hidden.shape[0] - 1))
    viz.shift(
        _centred(np.array(static)),
        {"last layer": _centred(np.array(moved))},
        labels,
        highlight=_targets(labels, word),
        ax=ax_model,
        title="pretrained model: embeddings → after the last layer",
    )
    return fig


def _mark(word: str, k: int) -> str:
    return word + str(k).translate(_SUPERSCRIPTS)


def _targets(labels: list[str], word: str) -> list[str] | None:
    return [lab for lab in labels if lab.rstrip(_DIGITS) == word] or None


def _centred(v: np.ndarray) -> np.ndarray:
    """Unit vectors minus their mean: every layer shares a common direction (a drift of all
    words together) that would otherwise dominate the projection."""
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return v - v.mean(0)
