"""The report's parts that Python writes as HTML: tables and figures.

Every user string passes through ``html.escape``; figures become ``data:`` URIs (PNG or JPEG
only), so the page fetches nothing.
"""

from __future__ import annotations

import base64
import html
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["figures_html", "tables_html"]


def _cell(v: Any) -> tuple[str, bool]:
    """Display text of one table cell, and whether it is a number (right-aligned)."""
    if v is None:
        return "—", False
    if isinstance(v, bool | np.bool_):
        return str(bool(v)), False
    if isinstance(v, numbers.Integral):
        return str(int(v)), True
    if isinstance(v, numbers.Real):
        f = float(v)
        return (f"{f:.3f}" if abs(f) >= 1e-3 or f == 0 else f"{f:.2e}"), True
    return str(v), False


def tables_html(tables: Sequence[Any] | None) -> str:
    if not tables:
        return ""
    parts = ['<section class="card"><h2>Tables</h2>']
    for k, t in enumerate(tables):
        try:
            caption, header, rows = t
        except (TypeError, ValueError):
            raise ValueError(
                f"tables[{k}] must be (caption, header list, rows), got {t!r:.80}"
            ) from None
        header = [str(h) for h in header]
        cap = html.escape(str(caption))
        parts.append(f'<div class="table-wrap"><table class="data"><caption>{cap}</caption>')
        parts.append(
            "<thead><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in header)
            + "</tr></thead><tbody>"
        )
        for rk, row in enumerate(rows):
            row = list(row)
            if len(row) != len(header):
                raise ValueError(
                    f"tables[{k}] row {rk} has {len(row)} cells; the header has {len(header)}"
                )
            cells = []
            for v in row:
                text, num = _cell(v)
                cells.append(
                    f'<td class="num">{html.escape(text)}</td>'
                    if num
                    else f"<td>{html.escape(text)}</td>"
                )
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table></div>")
    parts.append("</section>")
    return "".join(parts)


def _image_uri(fig: Any, k: int) -> str:
    from matplotlib.figure import Figure

    from selfattention.viz.figures import png_bytes

    if isinstance(fig, Figure):
        data = png_bytes(fig)
    elif isinstance(fig, bytes | bytearray):
        data = bytes(fig)
    elif isinstance(fig, str | Path):
        p = Path(fig)
        if not p.is_file():
            raise ValueError(f"figures[{k}]: no such image file {p}")
        data = p.read_bytes()
    else:
        raise TypeError(
            f"figures[{k}] must hold a matplotlib Figure, PNG/JPEG bytes or a path, "
            f"got {type(fig).__name__}"
        )
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        mime = "image/png"
    elif data.startswith(b"\xff\xd8\xff"):
        mime = "image/jpeg"
    else:
        raise ValueError(f"figures[{k}] is neither PNG nor JPEG data")
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def figures_html(figures: Sequence[Any] | None) -> str:
    if not figures:
        return ""
    parts = ['<section class="card"><h2>Figures</h2><div class="figures">']
    for k, f in enumerate(figures):
        try:
            caption, fig = f
        except (TypeError, ValueError):
            raise ValueError(f"figures[{k}] must be (caption, figure), got {f!r:.80}") from None
        cap = html.escape(str(caption))
        img = f'<img src="{_image_uri(fig, k)}" alt="{cap}">'
        parts.append(f"<figure>{img}<figcaption>{cap}</figcaption></figure>")
    parts.append("</div></section>")
    return "".join(parts)
