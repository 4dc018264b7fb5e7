"""The ``selfattention`` command. Each subcommand lives in its own module here and provides
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when used."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# name -> (module, one-line help). A module that does not exist yet is simply not offered.
COMMANDS: dict[str, tuple[str, str]] = {
    "explain": ("selfattention.cli.explain", "static vs contextual embeddings, step by step"),
    "ladder": ("selfattention.cli.ladder", "print the textbook ladder on a tiny example"),
    "bench": ("selfattention.cli.bench", "benchmark backends against torch and peers"),
    "smooth": ("selfattention.cli.smooth", "smooth a noisy series with self-attention"),
    "train": ("selfattention.cli.train", "train a model (pos, polarity, images)"),
    "evaluate": ("selfattention.cli.train", "evaluate a trained checkpoint"),
    "predict": ("selfattention.cli.train", "predict with a trained checkpoint"),
    "data": ("selfattention.cli.data", "fetch and check the offline data sets"),
    "viz": ("selfattention.cli.viz", "draw attention (heatmaps, images)"),
    "speech": ("selfattention.cli.speech", "truncated attention over real speech"),
}


def _available() -> dict[str, tuple[str, str]]:
    return {n: c for n, c in COMMANDS.items() if importlib.util.find_spec(c[0]) is not None}


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="selfattention", description="Self-attention, from the textbook ladder to real data."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser, {"sub": sub}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser, parts = build_parser()
    sub = parts["sub"]
    commands = _available()
    # Only the chosen subcommand's module is imported (they pull in heavy optional deps).
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            add = getattr(module, f"add_{name}_arguments", None) or module.add_arguments
            add(p)
            p.set_defaults(_run=getattr(module, f"run_{name}", None) or module.run)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if chosen is None else 2
    return int(args._run(args) or 0)
