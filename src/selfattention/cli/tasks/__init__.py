"""The task adapters of ``selfattention train|evaluate|predict TASK``, one module per task.

Each module provides

    add_arguments(parser, mode)  # its own options for mode ("train", "evaluate", "predict");
                                 # its thread default with parser.set_defaults(threads=N)
    train(args) -> dict          # options -> the task's frozen config, calls apps, returns metrics
    evaluate(args) -> dict       # test metrics of args.checkpoint
    predict(args) -> int         # prints a line per input, returns the exit code

and receives the options :mod:`selfattention.cli.train` adds to every task: ``args.checkpoint``
(Path), ``args.seed``, ``args.threads``, ``args.progress``; ``args.resume`` when training;
``args.inputs`` and ``args.file`` when predicting. This module holds what the adapters share.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "epoch_printer",
    "positive_float",
    "positive_int",
    "read_inputs",
    "train_with_args",
]


def positive_int(text: str) -> int:
    """argparse type: an int >= 1 (``--epochs 0`` is a usage error naming the option)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def read_inputs(args: argparse.Namespace) -> list[str]:
    """Lines to predict: the TEXT arguments, then the non-empty lines of ``--file`` (>= 1)."""
    lines = [t for t in (args.inputs or []) if t.strip()]
    if args.file is not None:
        path = Path(args.file)
        if not path.is_file():
            raise FileNotFoundError(f"input file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"input file {path} is not UTF-8 text ({e.reason})") from e
        lines += [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ValueError("nothing to predict: give TEXT arguments or --file")
    return lines


def epoch_printer(progress: bool) -> Callable[[dict, bool], None] | None:
    """With ``progress``, a ``fit`` callback printing one line per epoch (``*`` = new best)."""
    if not progress:
        return None
    from selfattention.apps.training import format_epoch

    def show(row: dict, improved: bool) -> None:
        print(format_epoch(row, improved), flush=True)

    return show


def train_with_args(
    train: Callable[..., dict], config: Any, data: Any, args: argparse.Namespace
) -> dict:
    """``train(config, data, args.checkpoint, ...)`` with the shared train options: ``--resume``,
    ``--progress`` and the per-epoch printer."""
    return train(
        config,
        data,
        args.checkpoint,
        resume=args.resume,
        progress=args.progress,
        on_epoch=epoch_printer(args.progress),
    )
