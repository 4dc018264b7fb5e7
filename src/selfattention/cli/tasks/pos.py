"""``selfattention train|evaluate|predict pos``: options -> :mod:`selfattention.apps.text.pos`.

train     [--data FILE] [--limit N] [model, training options] -> metrics (also metrics.json)
evaluate  [--data FILE] [--limit N] -> test metrics (also CHECKPOINT/test_metrics.json)
predict   TEXT... | --file FILE -> a line of word/TAG per input
"""

from __future__ import annotations

import argparse
from pathlib import Path

from selfattention.apps.text import pos
from selfattention.apps.training import write_metrics
from selfattention.cli.tasks import (
    positive_float,
    positive_int,
    read_inputs,
    train_with_args,
)

__all__ = ["add_arguments", "evaluate", "predict", "train"]


def add_arguments(parser: argparse.ArgumentParser, mode: str) -> None:
    """Options for ``mode`` ("train", "evaluate" or "predict"): only training takes model sizes."""
    # One thread by default (in every mode): a 1M-parameter model on batches of ~1,300 tokens
    # leaves a second intra-op thread mostly waiting, and under load it stalls the first.
    parser.set_defaults(threads=1)
    if mode == "predict":
        return
    g = parser.add_argument_group("pos")
    g.add_argument("--data", type=Path, help="tagged corpus, word/TAG tokens (default: oanc-pos)")
    g.add_argument("--limit", type=positive_int, help="use only the first N sentences")
    if mode != "train":
        return
    d = pos.PosConfig()
    g.add_argument("--epochs", type=positive_int, default=d.epochs, help=f"({d.epochs})")
    g.add_argument(
        "--patience",
        type=positive_int,
        default=d.patience,
        help=f"epochs without dev gain ({d.patience})",
    )
    g.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    g.add_argument("--lr", type=positive_float, default=d.lr, help=f"peak learning rate ({d.lr})")
    g.add_argument("--dim", type=positive_int, default=d.dim, help=f"model width ({d.dim})")
    g.add_argument("--layers", type=positive_int, default=d.layers)
    g.add_argument("--heads", type=positive_int, default=d.heads)
    g.add_argument("--dropout", type=float, default=d.dropout)
    g.add_argument("--positions", choices=("learned", "sinusoidal", "rotary"), default=d.positions)
    g.add_argument("--no-glove", dest="glove", action="store_false", help="no GloVe vectors")
    g.add_argument(
        "--glove-words", type=positive_int, default=d.glove_words, help="extra GloVe words kept"
    )
    g.add_argument("--glove-path", type=Path, help="GloVe folder or text file (default: packaged)")
    g.add_argument("--no-chars", dest="chars", action="store_false", help="no character CNN")
    g.add_argument(
        "--time-limit",
        type=positive_float,
        default=d.time_limit,
        metavar="SECONDS",
        help=f"stop after this long ({d.time_limit:g})",
    )


def _config(args: argparse.Namespace) -> pos.PosConfig:
    return pos.PosConfig(
        dim=args.dim,
        layers=args.layers,
        heads=args.heads,
        dropout=args.dropout,
        positions=args.positions,
        glove=args.glove,
        glove_words=args.glove_words,
        glove_path=args.glove_path,
        chars=args.chars,
        epochs=args.epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        lr=args.lr,
        time_limit=args.time_limit,
        seed=args.seed,
    )


def train(args: argparse.Namespace) -> dict:
    # The config is checked before the data is read: a typo costs no waiting.
    config = _config(args)
    return train_with_args(pos.train, config, pos.load_data(args.data, args.limit), args)


def evaluate(args: argparse.Namespace) -> dict:
    metrics = pos.evaluate(args.checkpoint, pos.load_data(args.data, args.limit))
    write_metrics(Path(args.checkpoint) / "test_metrics.json", metrics)
    return metrics


def predict(args: argparse.Namespace) -> int:
    for tagged in pos.predict(args.checkpoint, read_inputs(args)):
        if tagged:
            print(" ".join(f"{word}/{tag}" for word, tag in tagged))
    return 0
