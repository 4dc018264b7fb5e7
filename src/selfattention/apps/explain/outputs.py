"""The files of an ``explain`` run: report.html, grid_*.png, shift.png and attention.json.

``prepare_out`` checks the folder before the compute starts (a typo in the output path should not
cost the whole run); ``write_outputs`` writes each file atomically (a temporary file in the same
folder, then ``os.replace``), so an interrupted run leaves either the old file or the new one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from selfattention import viz
from selfattention.apps.explain.compare import parameter_free
from selfattention.apps.explain.compute import ExplainResult
from selfattention.apps.explain.figures import grid_figures, shift_figure, view_figures

__all__ = ["prepare_out", "write_outputs"]


def prepare_out(out: str | Path) -> Path:
    """Create the folder ``out`` (with its parents) and check that a file can be written in it.

    Raises:
        ValueError: naming ``out`` and the reason: it is a file, a parent is a file, or the
            folder cannot be created or written (permissions, read-only file system, ...).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker else "a part of it is not a folder"
        raise ValueError(f"cannot create the folder {out}: {why}") from None
    except OSError as exc:
        raise ValueError(f"cannot create the folder {out}: {exc.strerror or exc}") from None
    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise ValueError(f"cannot write in the folder {out}: {exc.strerror or exc}") from None
    return out


def write_outputs(result: ExplainResult, out: str | Path) -> list[Path]:
    """Write the run's files into ``out`` (created if needed); returns their paths in order:
    attention.json, grid_1.png ... grid_n.png (grid_k_layer_l.png per layer for a long
    sentence), shift.png, neuron.png, value_weighted.png, flow.png (up to 64 tokens),
    report.html. ``config.layers`` / ``config.heads`` filter the grids and the report.

    attention.json holds, per sentence, the encoder's tokens and weights [layer][head][query][key]
    and the parameter-free GloVe weights softmax(X Xᵀ); under "meta" the word, the sentences, the
    model and the similarity table.
    """
    out = prepare_out(out)
    sequences = _sequences(result)
    written = [viz.dump_json(out / "attention.json", sequences, meta=_meta(result))]
    cfg = result.config
    for stem, fig in grid_figures(result, layers=cfg.layers, heads=cfg.heads):
        written.append(viz.save(fig, out / f"{stem}.png"))
    shift_png = viz.save(shift_figure(result), out / "shift.png")
    written.append(shift_png)
    figures = [("Static → contextual vectors (PCA)", shift_png)]
    for stem, caption, fig in view_figures(result):
        png = viz.save(fig, out / f"{stem}.png")
        written.append(png)
        figures.append((caption, png))
    written.append(
        viz.report(
            out / "report.html",
            sequences,
            title=f"How self-attention moves '{result.word}'",
            description="   ".join(f"{k}. {s.text}" for k, s in enumerate(result.sentences, 1)),
            tables=_tables(result),
            figures=figures,
        )
    )
    return written


def _sequences(result: ExplainResult) -> list[dict[str, Any]]:
    sequences = [
        {
            "name": f"sentence {k}: model",
            "tokens": enc.tokens,
            "weights": enc.weights,
            "queries": enc.queries,
            "keys": enc.keys,
            "scale": enc.scale,
            "value_norms": enc.value_norms,
            # the filters apply to the model's maps, not to the one-layer GloVe ones
            "layers": result.config.layers,
            "heads": result.config.heads,
        }
        for k, enc in enumerate(result.encoded, 1)
    ]
    for k, s in enumerate(result.sentences, 1):
        if len(s.known):
            _, w = parameter_free(s.x, "1")
            sequences.append(
                {
                    "name": f"sentence {k}: GloVe softmax(XXᵀ)",
                    "tokens": [s.words[i] for i in s.known],
                    "weights": w,
                }
            )
    return sequences


def _tables(result: ExplainResult) -> list[tuple[str, list[str], list[list[Any]]]]:
    word = result.word
    tables = [
        (
            f"Cosine similarity of '{word}' across sentences",
            ["representation", *result.pairs],
            [
                [name, *(None if v is None else round(v, 4) for v in vals)]
                for name, vals in result.similarity
            ],
        )
    ]
    for k, top in result.top.items():
        tables.append(
            (
                f"Sentence {k + 1}: words '{word}' attends to most (layer × head)",
                ["layer", *(f"head {h}" for h in range(len(top[0])))],
                [
                    [f"{L}", *(", ".join(f"{t} {v:.2f}" for t, v in cell) for cell in layer)]
                    for L, layer in enumerate(top)
                ],
            )
        )
    return tables


def _meta(result: ExplainResult) -> dict[str, Any]:
    return {
        "word": result.word,
        "sentences": [s.text for s in result.sentences],
        "model": result.model.name,
        "similarity": {
            "pairs": result.pairs,
            "rows": [[name, vals] for name, vals in result.similarity],
        },
    }
