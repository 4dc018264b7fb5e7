"""The tables ``selfattention explain`` prints, from an ``ExplainResult``.

Every user string (sentences, words, paths) goes into ``rich.text.Text`` objects or plain cells of
a console made by ``cli._common.console()`` (markup off), so "[/]" or "bank [on Monday]" print as
typed.
"""

from __future__ import annotations

import numpy as np
from rich.table import Table
from rich.text import Text

from selfattention.apps.explain import SCALES, ExplainResult, Ladder
from selfattention.apps.explain.compare import cosine

__all__ = ["print_result"]


def print_result(out, r: ExplainResult) -> None:
    """The header, the GloVe ladder (1), the similarity table (2) and the top words (3)."""
    _print_header(out, r)
    if r.ladder is not None:
        _print_ladder(out, r.ladder)
    _print_similarity(out, r)
    for k, top in r.top.items():
        _print_top(out, r, k, top)


def _rule(out, title: str) -> None:
    out.rule(Text(title, style="bold"))


def _table(**kwargs) -> Table:
    return Table(box=None, padding=(0, 1), **kwargs)


def _print_header(out, r: ExplainResult) -> None:
    _rule(out, f"How self-attention moves '{r.word}'")
    for k, s in enumerate(r.sentences, 1):
        mark = "" if s.target is not None else f"  (no '{r.word}')"
        out.print(Text.assemble(f"  {k}. ", s.text, (mark, "dim")))
    g, m = r.glove, r.model
    out.print(
        Text(
            f"  static vectors: GloVe {g.dim}-d, {g.size:,} words ({g.source})\n"
            f"  model: {m.name}, {m.layers} layers × {m.heads} heads, dim {m.hidden}",
            style="dim",
        )
    )
    note = ("  note:", "yellow")
    for k in range(len(r.sentences)):
        if unknown := r.unknown_words(k):
            out.print(
                Text.assemble(
                    note,
                    f" GloVe does not know {', '.join(map(repr, unknown))} "
                    f"in sentence {k + 1}: dropped from the GloVe rows (the model still reads "
                    "them, as word pieces)",
                )
            )
    if r.glove_lacks_word:
        out.print(Text.assemble(note, f" GloVe has no vector for '{r.word}': its rows are blank"))


def _matrix(labels: list[str], m, fmt: str) -> Table:
    t = _table(pad_edge=False)
    t.add_column("", style="bold")
    for lab in labels:
        t.add_column(Text(lab), justify="right", max_width=8, no_wrap=True)
    for lab, row in zip(labels, m, strict=True):
        t.add_row(Text(lab), *(format(v, fmt) for v in row))
    return t


def _print_ladder(out, lad: Ladder) -> None:
    d, sqrt = lad.x.shape[1], lad.scale == "sqrt"
    _rule(out, f"1. The ladder on GloVe vectors, no parameters: Y = {SCALES[lad.scale]}")
    out.print(Text.assemble(("Scores X Xᵀ", "bold"), " (dot products)"))
    out.print(_matrix(lad.labels, lad.scores, ".1f"))
    title = f"Weights W = softmax(X Xᵀ{'/√d' if sqrt else ''}), rows sum to 1"
    out.print(Text("\n" + title, style="bold"))
    out.print(_matrix(lad.labels, lad.weights, ".2f"))
    if not sqrt:
        out.print(
            Text(
                f"  Raw {d}-d GloVe dot products are large (|x|² ≈ "
                f"{np.median(np.diag(lad.scores)):.0f}), so softmax is nearly one-hot: the "
                f"mean weight of a word on itself is {np.mean(np.diag(lad.weights)):.3f}. "
                "Dividing by √d (--scale sqrt; what transformers do) lets words mix.",
                style="dim",
            )
        )
    out.print(
        Text.assemble(
            "\n", ("Re-weighted vectors Y = W X", "bold"), " (each word becomes a weighted mix)"
        )
    )
    t = _table()
    t.add_column("word", style="bold")
    t.add_column(f"x (first 4 of {d})")
    t.add_column("y = Σ w·x (first 4)")
    t.add_column("cos(x, y)", justify="right")
    t.add_column("most weight from", no_wrap=True)
    for row, lab in enumerate(lad.labels):
        x, y = lad.x[row], lad.y[row]
        t.add_row(
            Text(lab),
            " ".join(f"{v:+.2f}" for v in x[:4]),
            " ".join(f"{v:+.2f}" for v in y[:4]),
            f"{cosine(x, y):.3f}",
            Text(", ".join(f"{u} {v:.2f}" for u, v in lad.sources(row))),
        )
    out.print(t)


def _print_similarity(out, r: ExplainResult) -> None:
    _rule(out, f"2. Is '{r.word}' the same vector in every sentence? (cosine similarity)")
    if not r.pairs:
        out.print(Text(f"  only one sentence contains '{r.word}': give two to compare", "dim"))
        return
    t = _table()
    t.add_column("representation", style="bold")
    for p in r.pairs:
        t.add_column(f"sentences {p}", justify="right")
    for name, vals in r.similarity:
        t.add_row(name, *("—" if v is None else f"{v:.4f}" for v in vals))
    out.print(t)


def _print_top(out, r: ExplainResult, k: int, top: list) -> None:
    _rule(out, f"3. Sentence {k + 1}: what '{r.word}' attends to, per layer and head")
    t = _table()
    t.add_column("head", justify="right", style="bold")
    for L in range(len(top)):
        t.add_column(f"layer {L}", no_wrap=True)
    for h in range(len(top[0])):
        cells = ("\n".join(f"{tok} {v:.2f}" for tok, v in layer[h]) for layer in top)
        t.add_row(str(h), *map(Text, cells))
    out.print(
        "top words per head, weights summed over word pieces and repeats ([CLS]/[SEP] not ranked)"
    )
    out.print(t)
    share = ", ".join(f"layer {L} {v:.2f}" for L, v in enumerate(r.special_share[k]))
    out.print(
        Text(
            f"  Weight '{r.word}' puts on [CLS]/[SEP] (where idle heads rest), mean over "
            f"heads: {share}",
            style="dim",
        )
    )
