"""``selfattention explain``: static vs contextual word vectors, with real vectors and a real model.

argv -> ``ExplainConfig`` -> ``explain`` -> tables on the terminal -> ``write_outputs``. The
numbers come from :mod:`selfattention.apps.explain`; user text is printed as text, never markup.
"""

from __future__ import annotations

import argparse

from rich.text import Text

from selfattention.cli._common import EXIT_USAGE, console, error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sentences",
        nargs="*",
        metavar="SENTENCE",
        help="sentences to compare (default: a river bank and a money bank)",
    )
    parser.add_argument("--word", help="the word to follow (default: the longest shared word)")
    parser.add_argument(
        "--out",
        default="results/explain",
        help="folder for report.html, PNGs, attention.json (default: %(default)s)",
    )
    parser.add_argument(
        "--model",
        help="a BERT, RoBERTa, DistilBERT, ALBERT or ELECTRA folder (config.json, "
        "model.safetensors, tokenizer.json); default: the packaged all-MiniLM-L6-v2",
    )
    parser.add_argument("--glove", help="a GloVe .txt file (default: packaged GloVe 6B 50-d)")
    parser.add_argument(
        "--scale",
        choices=("1", "sqrt"),
        default="1",
        help="scores in the printed GloVe ladder: X Xᵀ as the write-ups (1) or X Xᵀ/√d (sqrt)",
    )
    parser.add_argument("--top", type=int, default=2, help="attended words shown per head")
    parser.add_argument(
        "--layers",
        help="layers in the grid PNGs and the report, e.g. '0,5' or '0-2' (default: all)",
    )
    parser.add_argument(
        "--heads", help="heads in the grid PNGs and the report, e.g. '0-3' (default: all)"
    )


def run(args: argparse.Namespace) -> int:
    from selfattention.apps import explain as app  # torch, matplotlib: only when used
    from selfattention.cli._explain_tables import print_result

    try:  # bad arguments and an unusable --out fail here, before anything loads
        config = app.ExplainConfig(
            sentences=tuple(args.sentences) or app.DEFAULT_SENTENCES,
            word=args.word,
            model=args.model,
            glove=args.glove,
            scale=args.scale,
            top=args.top,
            out=args.out,
            layers=args.layers,
            heads=args.heads,
        )
    except (TypeError, ValueError) as exc:
        error(_flag(str(exc)))
        return EXIT_USAGE
    try:
        app.prepare_out(config.out)
    except ValueError as exc:
        error(f"--out: {exc}")
        return EXIT_USAGE
    result = app.explain(config)
    out = console()
    print_result(out, result)
    written = app.write_outputs(result, config.out)
    out.print(Text.assemble("\n", ("Written:", "bold"), " " + ", ".join(map(str, written))))
    return 0


def _flag(message: str) -> str:
    """The config's field names as the options a user typed (word -> --word, top -> --top)."""
    for name in ("word", "top", "scale", "layers", "heads"):
        if message.startswith((f"{name} ", f"{name}=", f"{name}:")):
            return f"--{message}"
    return message.replace("choose the word to follow", "choose the word to follow with --word")
