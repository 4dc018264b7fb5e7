"""``selfattention ladder``: the textbook ladder, rung by rung, on three words to check by hand.

Each rung prints its formula and the scores, weights and outputs as tables. Everything comes from
``selfattention.reference`` (NumPy float64), so the numbers are the oracle's own.
"""

from __future__ import annotations

import argparse

import numpy as np

from selfattention import reference as R

DEFAULT_WORDS = ("river", "money", "bank")
DEFAULT_VECTORS = "1,0 0,1 1,1"  # "bank" shares a direction with both neighbours


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--words", nargs="+", default=list(DEFAULT_WORDS), help="the words (default: %(default)s)"
    )
    parser.add_argument(
        "--vectors",
        default=DEFAULT_VECTORS,
        help="one comma-separated vector per word, space-separated (default: '%(default)s')",
    )
    parser.add_argument("--rung", type=int, action="append", help="only these rungs (1-7)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the projection matrices")
    parser.add_argument("--digits", type=int, default=3, help="decimals shown (default: 3)")


def _parse_vectors(text: str, n_words: int) -> np.ndarray:
    try:
        rows = [[float(v) for v in word.split(",")] for word in text.split()]
    except ValueError as err:
        raise ValueError(f"--vectors must look like '1,0 0,1 1,1', got {text!r}") from err
    if len(rows) != n_words or len({len(r) for r in rows}) != 1:
        raise ValueError(
            f"--vectors needs {n_words} vectors of one size (one per word), got {text!r}"
        )
    return np.array(rows)


def rungs(x: np.ndarray, seed: int = 0) -> list[dict]:
    """The ladder on word vectors x (n, d): a list of {title, formula, tables: {name: array}}."""
    n, d = x.shape
    rng = np.random.default_rng(seed)
    out = []

    uniform = np.full((n, n), 1.0 / n)
    out.append(
        dict(
            title="Re-weighting",
            formula="Y = W X, W chosen by hand (here: the plain average of all words)",
            tables={"weights W": uniform, "outputs Y": R.reweight(x, uniform)},
        )
    )
    s = R.scores(x, x)
    rung = dict(
        title="Relevance by dot product",
        formula="S = X Xᵀ;  W = S / rowsum(S)  (relevances /= sum(relevances));  Y = W X",
        tables={"scores S": s},
    )
    try:
        w = R.normalize(s, "sum")
        rung["tables"].update({"weights W": w, "outputs Y": R.reweight(x, w)})
    except ValueError:
        rung["formula"] += "\n  a row of S sums to <= 0 here, so it cannot be normalised by its sum"
    out.append(rung)
    y, w = R.self_attention(x, return_weights=True)
    out.append(
        dict(
            title="Self-attention, no parameters",
            formula="Y = softmax(X Xᵀ) X",
            tables={"scores S": s, "weights W": w, "outputs Y": y},
        )
    )
    wq, wk, wv = (rng.standard_normal((d, d)) / np.sqrt(d) for _ in range(3))
    y, w = R.projected_self_attention(x, wq, wk, wv)
    q, k = x @ wq, x @ wk
    out.append(
        dict(
            title="Queries, keys, values (learnable Wq, Wk, Wv; here random, seeded)",
            formula="Q = X Wq, K = X Wk, V = X Wv;  Y = softmax(Q Kᵀ / √d) V",
            tables={
                "scores Q Kᵀ/√d": R.scores(q, k, 1 / np.sqrt(d)),
                "weights W": w,
                "outputs Y": y,
            },
        )
    )
    heads = 2
    wqh, wkh, wvh = (rng.standard_normal((heads, d, d)) / np.sqrt(d) for _ in range(3))
    wo = rng.standard_normal((heads * d, d)) / np.sqrt(heads * d)
    y, ws = R.multi_head_self_attention(x, wqh, wkh, wvh, wo)
    tables = {f"weights, head {h + 1}": wh for h, wh in enumerate(ws)}
    out.append(
        dict(
            title=f"Multi-head ({heads} heads)",
            formula="head_h = softmax(X Wq_h (X Wk_h)ᵀ / √d) X Wv_h;  Y = [head_1 … head_H] Wo",
            tables={**tables, "outputs Y": y},
        )
    )
    xp = x + R.sinusoidal_positions(n, d)
    y, w = R.self_attention(xp, return_weights=True)
    out.append(
        dict(
            title="Positions (sinusoidal, added to the words)",
            formula="X' = X + PE,  PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(…);"
            "  Y = softmax(X' X'ᵀ) X'",
            tables={"X + PE": xp, "weights W": w, "outputs Y": y},
        )
    )
    y, w = R.attention(x, x, x, scale=1.0, window=(1, 0))
    out.append(
        dict(
            title="Window (left 1, right 0): each word sees itself and the word before",
            formula="S_ij = x_i · x_j if i - 1 <= j <= i, else masked;  Y = softmax(S) X",
            tables={"weights W": w, "outputs Y": y},
        )
    )
    return out


def _table(name: str, arr: np.ndarray, rows: list[str], cols: list[str] | None, digits: int):
    from rich.table import Table

    table = Table(title=name, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("")
    for c in cols or [f"dim {m}" for m in range(arr.shape[1])]:
        table.add_column(c, justify="right")
    for label, row in zip(rows, arr, strict=True):
        table.add_row(label, *(f"{v:.{digits}f}" for v in row))
    return table


def run(args: argparse.Namespace) -> int:
    from rich.columns import Columns
    from rich.console import Console
    from rich.rule import Rule

    console = Console()
    try:
        x = _parse_vectors(args.vectors, len(args.words))
    except ValueError as err:
        console.print(f"[red]error:[/red] {err}")
        return 2
    ladder = rungs(x, args.seed)
    chosen = args.rung or list(range(1, len(ladder) + 1))
    bad = [r for r in chosen if not 1 <= r <= len(ladder)]
    if bad:
        console.print(f"[red]error:[/red] --rung must be in 1..{len(ladder)}, got {bad}")
        return 2
    words = list(args.words)
    console.print(_table("word vectors X", x, words, None, args.digits))
    for number in chosen:
        rung = ladder[number - 1]
        console.print(Rule(f"[bold]{number}. {rung['title']}"))
        console.print(f"  {rung['formula']}\n", markup=False)  # formulas hold [ ]
        tables = []
        for name, arr in rung["tables"].items():
            by_word = not name.startswith(("outputs", "X"))  # (n, n) word-by-word tables
            tables.append(_table(name, arr, words, words if by_word else None, args.digits))
        console.print(Columns(tables, padding=(0, 4)))
    return 0
