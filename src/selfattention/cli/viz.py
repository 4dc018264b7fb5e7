"""``selfattention viz``: draw attention weights saved to a file, or attention on images.

selfattention viz json attention.json --out DIR [--layers 0,5] [--heads 0-3]
    -> DIR/grid.png (layers × heads heatmaps; one PNG per sequence if there are several)
       and DIR/report.html (the interactive, self-contained report)
selfattention viz image -c results/images --index 0 7 [--patch ROW,COL] --out DIR
    -> DIR/image_<i>.png, DIR/image_<i>_grid.png, DIR/report.html
       (:mod:`selfattention.apps.vision.inspect`)

matplotlib and the vision app are imported by the run functions, not when the parser is built.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from selfattention.cli._common import EXIT_USAGE, error, one_line
from selfattention.cli._files import out_folder

__all__ = ["add_arguments", "run"]


def _add_json_arguments(j: argparse.ArgumentParser) -> None:
    j.add_argument("path", type=Path, help="attention.json")
    j.add_argument("--out", type=Path, default=Path("results/viz"), help="output folder")
    j.add_argument(
        "--layers", default=None, help="layers to draw, e.g. '0,5' or '0-3' (default all)"
    )
    j.add_argument("--heads", default=None, help="heads to draw, e.g. '0-3' (default all)")
    j.add_argument("--title", default=None, help="report title (default: the file name)")
    j.add_argument("--dpi", type=float, default=110.0, help="PNG resolution")
    j.add_argument("--no-mean", action="store_true", help="leave out the 'mean of heads' column")


def _add_image_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        "-c",
        type=Path,
        default=Path("results") / "images",
        help="checkpoint of `selfattention train images` (default: results/images)",
    )
    p.add_argument(
        "--index", "-i", type=int, nargs="+", default=[0], help="test image index(es) (default: 0)"
    )
    p.add_argument(
        "--patch",
        "-p",
        default=None,
        help="query patch: index (row-major) or ROW,COL; default: the centre patch",
    )
    p.add_argument("--layers", help="layers in the grid PNG, e.g. '0,3' or '1-2'")
    p.add_argument("--heads", help="heads in the grid PNG, e.g. '0-1'")
    p.add_argument("--data-dir", type=Path, help="folder with the Fashion-MNIST idx files")
    p.add_argument(
        "--out",
        "-o",
        type=Path,
        default=Path("results") / "viz-image",
        help="output folder (default: results/viz-image)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="viz_command", metavar="WHAT")
    _add_json_arguments(
        sub.add_parser(
            "json",
            help="heatmap grid PNG and report.html from an attention.json file",
            description="Render the layers × heads grid (PNG) and the HTML report from an "
            "attention.json file (as written by `selfattention explain`).",
        )
    )
    _add_image_arguments(
        sub.add_parser(
            "image",
            help="attention of a patch and attention rollout over test images",
            description="Where a vision transformer trained by `selfattention train images` "
            "looks: the attention of one patch, its rollout through the layers, a layers × "
            "heads grid and an HTML report, for each chosen test image.",
        )
    )
    parser.set_defaults(_viz_help=parser.format_help)


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

    written = []
    try:
        records = viz.load_json(args.path)
        out = out_folder(args.out)  # checked before drawing, after the cheap read of the input
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
        error(f"no such file: {args.path}")
        return EXIT_USAGE
    except UnicodeDecodeError:
        error(f"{args.path} is not a text file; expected an attention.json")
        return EXIT_USAGE
    except (ValueError, TypeError, OSError) as exc:
        error(one_line(exc))
        return EXIT_USAGE
    for p in written:
        print(p)
    return 0


def _run_image(args: argparse.Namespace) -> int:
    import torch

    from selfattention.apps.vision.classifier import load_classifier
    from selfattention.apps.vision.data import load_dataset
    from selfattention.apps.vision.inspect import ViewConfig, image_views, write_views

    if args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    config = ViewConfig(
        indices=tuple(args.index), patch=args.patch, layers=args.layers, heads=args.heads
    )
    torch.set_num_threads(args.threads)
    clf = load_classifier(args.checkpoint)
    out = out_folder(args.out)  # before loading the data and drawing: a bad --out costs no wait
    if args.data_dir is not None and clf.dataset != "fashion-mnist":
        raise ValueError(f"--data-dir is for fashion-mnist; the checkpoint uses {clf.dataset!r}")
    views = image_views(clf, load_dataset(clf.dataset, root=args.data_dir), config)
    for path in write_views(views, clf, out):
        print(path)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.viz_command == "json":
        return _run_json(args)
    if args.viz_command == "image":
        return _run_image(args)
    print(args._viz_help(), file=sys.stderr)
    return EXIT_USAGE
