"""``selfattention ladder``: print the textbook ladder (``selfattention.apps.ladder``) as tables.

Words are user text: they are printed as text (``cli._common.console``, ``rich.text.Text``),
never read as markup, so "bank [on Monday]" prints as typed.
"""

from __future__ import annotations

import argparse

import numpy as np

from selfattention.apps.ladder import DEFAULT_VECTORS, DEFAULT_WORDS, LadderConfig, climb
from selfattention.apps.ladder import parse_vectors as _parse_vectors
from selfattention.cli._common import EXIT_USAGE, console, error, one_line

__all__ = ["add_arguments", "run"]


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
    parser.add_argument("--digits", type=int, default=3, help="decimals shown, 0-12 (default: 3)")


def _table(name: str, arr: np.ndarray, rows: list[str], cols: list[str] | None, digits: int):
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(name), title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("")
    for c in cols or [f"dim {m}" for m in range(arr.shape[1])]:
        table.add_column(Text(c), justify="right")
    for label, row in zip(rows, arr, strict=True):
        table.add_row(Text(label), *(f"{v:.{digits}f}" for v in row))
    return table


def run(args: argparse.Namespace) -> int:
    from rich.columns import Columns
    from rich.rule import Rule
    from rich.text import Text

    try:
        if not 0 <= args.digits <= 12:
            raise ValueError(f"--digits must be in 0..12, got {args.digits}")
        config = LadderConfig(
            words=tuple(args.words),
            vectors=_parse_vectors(args.vectors),
            seed=args.seed,
            rungs=tuple(args.rung) if args.rung else None,
        )
    except ValueError as e:
        error(one_line(e))
        return EXIT_USAGE
    out = console()
    words = list(config.words)
    out.print(_table("word vectors X", config.x, words, None, args.digits))
    for number, rung in climb(config):
        out.print(Rule(Text(f"{number}. {rung['title']}", style="bold")))
        out.print(Text(f"  {rung['formula']}\n"))
        tables = []
        for name, arr in rung["tables"].items():
            by_word = not name.startswith(("outputs", "X"))  # (n, n) word-by-word tables
            tables.append(_table(name, arr, words, words if by_word else None, args.digits))
        out.print(Columns(tables, padding=(0, 4)))
    return 0
