"""``selfattention train|evaluate|predict polarity``: options -> ``apps.text.polarity``.

train     [--data CSV] [--limit N] [--pretrained] [model and training options] -> metrics
evaluate  [--data CSV] [--limit N] -> test metrics (also CHECKPOINT/test_metrics.json)
predict   TEXT... | --file FILE -> label<TAB>probability<TAB>text per input
"""

from __future__ import annotations

import argparse
from pathlib import Path

from selfattention.apps.text import polarity
from selfattention.apps.text.model import POOLINGS
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
    # Measured under load: a second intra-op thread made MiniLM's training step 2.8x
    # slower (6.4 s vs 2.3 s: the threads wait for each other), and the small encoder gains
    # nothing from it; one thread is the default (in every mode).
    parser.set_defaults(threads=1)
    if mode == "predict":
        return
    g = parser.add_argument_group("polarity")
    g.add_argument("--data", type=Path, help="label,text CSV (default: pang-lee-polarity)")
    g.add_argument("--limit", type=positive_int, help="use only N sentences (spread over the file)")
    g.add_argument("--glove-path", type=Path, help="GloVe folder or text file (default: packaged)")
    if mode != "train":
        return
    d = polarity.PolarityConfig()
    g.add_argument("--pretrained", action="store_true", help="fine-tune the packaged MiniLM")
    g.add_argument("--epochs", type=positive_int, help="default 30, or 3 with --pretrained")
    g.add_argument("--patience", type=positive_int, help="default 6, or 2 with --pretrained")
    g.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    g.add_argument("--lr", type=positive_float, help="default 1e-3, or 4e-5 with --pretrained")
    g.add_argument(
        "--word-dim", type=int, default=d.word_dim, help="trained word vectors (0 = none)"
    )
    g.add_argument("--dim", type=positive_int, default=d.dim)
    g.add_argument("--layers", type=positive_int, default=d.layers)
    g.add_argument("--heads", type=positive_int, default=d.heads)
    g.add_argument("--dropout", type=float, default=d.dropout)
    g.add_argument(
        "--word-dropout",
        type=float,
        default=d.word_dropout,
        help="share of words replaced by <unk> while training",
    )
    g.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    g.add_argument("--pooling", choices=POOLINGS, default=d.pooling)
    g.add_argument(
        "--ensemble",
        type=positive_int,
        help=f"train N models (seeds SEED, SEED+1, ...) that average their "
        f"probabilities (default {polarity.ENSEMBLE}; not with --pretrained)",
    )
    g.add_argument("--positions", choices=("learned", "sinusoidal", "rotary"), default=d.positions)
    g.add_argument("--no-glove", dest="glove", action="store_false", help="no GloVe vectors")
    g.add_argument("--glove-words", type=int, default=d.glove_words, help="extra GloVe words kept")
    g.add_argument(
        "--time-limit",
        type=positive_float,
        default=d.time_limit,
        metavar="SECONDS",
        help=f"stop after this long, all members together ({d.time_limit:g})",
    )


def _config(args: argparse.Namespace) -> polarity.PolarityConfig:
    return polarity.PolarityConfig(
        pretrained=args.pretrained,
        epochs=args.epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        lr=args.lr,
        word_dim=args.word_dim,
        dim=args.dim,
        layers=args.layers,
        heads=args.heads,
        dropout=args.dropout,
        word_dropout=args.word_dropout,
        label_smoothing=args.label_smoothing,
        pooling=args.pooling,
        ensemble=args.ensemble,
        positions=args.positions,
        glove=args.glove,
        glove_words=args.glove_words,
        glove_path=args.glove_path,
        time_limit=args.time_limit,
        seed=args.seed,
    )


def train(args: argparse.Namespace) -> dict:
    # The config is checked before the data is read: a typo costs no waiting.
    config = _config(args)
    return train_with_args(polarity.train, config, polarity.load_data(args.data, args.limit), args)


def evaluate(args: argparse.Namespace) -> dict:
    data = polarity.load_data(args.data, args.limit)
    metrics = polarity.evaluate(args.checkpoint, data, glove_path=args.glove_path)
    write_metrics(Path(args.checkpoint) / "test_metrics.json", metrics)
    return metrics


def predict(args: argparse.Namespace) -> int:
    texts = read_inputs(args)
    for text, p in zip(texts, polarity.predict(args.checkpoint, texts), strict=True):
        print(f"{p.label}\t{p.probability:.3f}\t{text}")
    return 0
