"""The ``selfattention`` command: one literal table of subcommands.

Every subcommand is a thin adapter module in this package with ``add_arguments(parser)`` and
``run(args) -> int``: it turns argv into the feature's frozen config, calls the feature's home in
:mod:`selfattention.apps`, prints, and returns an exit code. Failures that reach :func:`main` are
printed as one line (``error: ...``); Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

from selfattention.cli import bench, data, explain, ladder, smooth, speech, train, viz
from selfattention.cli._common import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    debug,
    error,
    one_line,
)

__all__ = ["COMMANDS", "Command", "build_parser", "main"]


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: tuple[Command, ...] = (
    Command("explain", "static vs contextual embeddings, step by step", explain.add_arguments,
            explain.run),
    Command("ladder", "print the textbook ladder on a tiny example", ladder.add_arguments,
            ladder.run),
    Command("bench", "benchmark backends against torch and peers", bench.add_arguments,
            bench.run),
    Command("smooth", "smooth a noisy series with self-attention", smooth.add_arguments,
            smooth.run),
    Command("train", "train a model (pos, polarity, images)", train.add_train_arguments,
            train.run),
    Command("evaluate", "evaluate a trained checkpoint", train.add_evaluate_arguments,
            train.run),
    Command("predict", "predict with a trained checkpoint", train.add_predict_arguments,
            train.run),
    Command("data", "list and fetch the offline data sets", data.add_arguments, data.run),
    Command("viz", "draw attention (heatmaps, images)", viz.add_arguments, viz.run),
    Command("speech", "truncated attention over real speech", speech.add_arguments, speech.run),
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfattention", description="Self-attention, from the textbook ladder to real data."
    )
    parser.set_defaults(_run=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(_run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args._run is None:
        parser.print_help()
        return EXIT_USAGE
    # Errors a user can act on are one line; anything else is a bug, still one line unless
    # SELFATTENTION_DEBUG asks for the traceback.
    from selfattention.apps.datasets import DataUnavailable

    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt as exc:
        detail = one_line(exc) if exc.args else ""
        print("interrupted" + (f": {detail}" if detail else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `selfattention ... | head`
        return 0
    except (DataUnavailable, ValueError, KeyError, OSError) as exc:
        error(one_line(exc))
        return EXIT_FAILURE
    except Exception as exc:
        if debug():
            raise
        error(f"unexpected {type(exc).__name__}: {one_line(exc)} "
              "(SELFATTENTION_DEBUG=1 shows the traceback)")  # fmt: skip
        return EXIT_FAILURE
