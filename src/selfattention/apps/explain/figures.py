"""The figures of an ``explain`` result: a layer × head grid per sentence and the shift plot.

Figures are matplotlib ``Figure`` objects built by ``selfattention.viz`` (no pyplot, no display);
``outputs.write_outputs`` saves them.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from selfattention import viz
from selfattention.apps.explain.compare import SCALES, parameter_free
from selfattention.apps.explain.compute import ExplainResult
from selfattention.viz.figures import new_figure

__all__ = ["grid_figures", "shift_figure"]

_DIGITS = "⁰¹²³⁴⁵⁶⁷⁸⁹"
_SUPERSCRIPTS = str.maketrans("0123456789", _DIGITS)


def grid_figures(result: ExplainResult) -> list[Figure]:
    """One heatmap grid per sentence: every layer (rows) × head (columns) of the encoder."""
    return [
        viz.grid(enc.weights, enc.tokens, title=f"sentence {k}: {s.text}")
        for k, (s, enc) in enumerate(zip(result.sentences, result.encoded, strict=True), 1)
    ]


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
