"""``selfattention viz``: draw attention weights saved to a file, or attention on images.

selfattention viz json attention.json --out DIR [--layers 0,5] [--heads 0-3]
    -> DIR/grid.png (layers × heads heatmaps; one PNG per sequence if there are several)
       and DIR/report.html (the interactive, self-contained report)
selfattention viz image ...
    -> the vision app's options (``selfattention viz image --help``)
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

__all__ = ["add_arguments", "run"]


class _LazyParser(argparse.ArgumentParser):
    """A sub-parser that adds its arguments only when it is used (``loader(parser)``), so that
    ``viz json`` never imports the vision app."""

    def __init__(self, *args, loader=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._loader = loader

    def parse_known_args(self, args=None, namespace=None):
        if self._loader is not None:
            loader, self._loader = self._loader, None
            loader(self)
        return super().parse_known_args(args, namespace)


def _load_vision(parser: argparse.ArgumentParser) -> None:
    name = "selfattention.apps.vision"
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        parser.error(
            f"'viz image' needs the vision app ({name}), which could not be imported: {exc}"
        )
    add = getattr(module, "add_viz_image_arguments", None)
    run_image = getattr(module, "run_viz_image", None)
    if add is None or run_image is None:
        parser.error(
            f"'viz image' needs {name}.add_viz_image_arguments and {name}.run_viz_image; "
            "this build of the vision app does not provide them"
        )
    add(parser)
    parser.set_defaults(_viz_image_run=run_image)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="viz_command", metavar="WHAT", parser_class=_LazyParser)
    j = sub.add_parser(
        "json",
        help="heatmap grid PNG and report.html from an attention.json file",
        description="Render the layers × heads grid (PNG) and the HTML report from an "
        "attention.json file (as written by `selfattention explain`).",
    )
    j.add_argument("path", type=Path, help="attention.json")
    j.add_argument("--out", type=Path, default=Path("results/viz"), help="output folder")
    j.add_argument(
        "--layers", default=None, help="layers to draw, e.g. '0,5' or '0-3' (default all)"
    )
    j.add_argument("--heads", default=None, help="heads to draw, e.g. '0-3' (default all)")
    j.add_argument("--title", default=None, help="report title (default: the file name)")
    j.add_argument("--dpi", type=float, default=110.0, help="PNG resolution")
    j.add_argument("--no-mean", action="store_true", help="leave out the 'mean of heads' column")
    sub.add_parser(
        "image",
        help="attention on image patches (the vision app; see `viz image --help`)",
        description="Attention of a chosen patch and attention rollout drawn over images.",
        loader=_load_vision,
    )
    parser.set_defaults(_viz_parser=parser)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:40] or "sequence"


def _fit(spec: str | None, n: int, name: str, record: str) -> list[int] | None:
    """``spec`` for one sequence: indices it lacks are dropped (a file may mix a 6-layer model
    with 1-layer GloVe attention); if none is left, all of its entries (None), with a note."""
    from selfattention.viz._inputs import parse_selection

    if spec is None:
        return None
    parse_selection(spec, 1 << 30, f"--{name}")  # syntax errors surface here, whatever n is
    kept = parse_selection(spec, n, f"--{name}", strict=False)
    if not kept:
        note = f"note: {record!r} has {n} {name}; --{name} {spec} selects none, showing all"
        print(note, file=sys.stderr)
        return None
    return kept


def _run_json(args: argparse.Namespace) -> int:
    from selfattention import viz

    out: Path = args.out
    written = []
    try:
        records = viz.load_json(args.path)
        for k, r in enumerate(records):
            r.layers = _fit(args.layers, r.weights.shape[0], "layers", r.name)
            r.heads = _fit(args.heads, r.weights.shape[1], "heads", r.name)
            fig = viz.grid(
                r.weights,
                r.tokens,
                query_labels=r.query_tokens,
                layers=r.layers,
                heads=r.heads,
                mean=not args.no_mean,
                title=r.name,
            )
            name = "grid.png" if len(records) == 1 else f"grid-{k:02d}-{_slug(r.name)}.png"
            written.append(viz.save(fig, out / name, dpi=args.dpi))
        written.append(
            viz.report(
                out / "report.html",
                records,
                title=args.title or args.path.stem,
                description=f"{len(records)} sequence(s) from {args.path.name}",
            )
        )
    except FileNotFoundError:
        print(f"error: no such file: {args.path}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for p in written:
        print(p)
    return 0


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "viz_command", None)
    if command == "json":
        return _run_json(args)
    if command == "image":
        return int(args._viz_image_run(args) or 0)
    args._viz_parser.print_help()
    return 2
