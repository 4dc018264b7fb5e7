"""``report``: one self-contained HTML file to explore attention weights in any browser.

Everything is inline: the page's CSS and JavaScript (``report.css``, ``report.js``, packaged next
to this file), the weights (float32, base64, inside a ``<script type="application/json">`` block)
and figures (PNG data: URIs). A Content-Security-Policy allows no network access at all and only
the page's own script (by its SHA-256), so the file works offline and user strings can't run code.

User strings (names, tokens, captions) reach the page in two ways only: escaped by
``html.escape`` in the Python-built parts (tables, captions, title), or as JSON with ``<``, ``>``,
``&``, U+2028 and U+2029 escaped (so a token such as ``</script>`` cannot end the data block),
which the script then puts on the page with ``textContent``, never ``innerHTML``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import numbers
import re
from collections.abc import Sequence
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np

from selfattention.viz._files import write_text_atomically
from selfattention.viz._inputs import parse_selection
from selfattention.viz.images import rollout
from selfattention.viz.records import AttentionRecord, as_records

__all__ = ["render_html", "report", "script_json"]


def script_json(obj: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``.

    No ``<``, ``>``, ``&`` or line separators appear literally; they become valid JSON escapes
    (``\\u003c`` ...), which ``JSON.parse`` turns back into the original characters."""
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _b64(a: np.ndarray, dtype: str) -> str:
    return base64.b64encode(
        np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    ).decode()


PRECISIONS = ("auto", "float32", "uint16")
AUTO_LIMIT = 16e6  # bytes of float32 weights above which "auto" stores uint16


def _values(a: np.ndarray, precision: str) -> dict[str, Any]:
    """Weights for the page: float32, or uint16 steps between the array's min and max
    (absolute error ≤ (max - min) / 131070, 7.6e-6 for weights in [0, 1]; half the size)."""
    if precision == "float32":
        return {"dtype": "f4", "data": _b64(a, "float32")}
    lo, hi = float(a.min()), float(a.max())
    q = np.round((a - lo) / (hi - lo) * 65535) if hi > lo else np.zeros_like(a)
    return {"dtype": "u2", "lo": lo, "hi": hi, "data": _b64(q, "uint16")}


def _rgba(images: list[np.ndarray], lo: float, hi: float) -> np.ndarray:
    """(k, h, w, 4) uint8 RGBA from same-shaped grey (h, w) or colour (h, w, C) arrays.

    Values in [lo, hi] map to 0..255 (clipped outside)."""
    a = np.stack(images).astype(np.float64)
    a = np.clip((a - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(a)
    a = np.round(a * 255).astype(np.uint8)
    if a.ndim == 3:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.shape[-1] == 3:
        a = np.concatenate([a, np.full((*a.shape[:-1], 1), 255, np.uint8)], axis=-1)
    return a


def _pixel_range(r: AttentionRecord) -> tuple[float, float]:
    src = r.image if r.image is not None else np.stack(r.patches)
    lo, hi = float(src.min()), float(src.max())
    # images already in [0, 1] keep their brightness; any other range is stretched to fill 0..255
    return (0.0, 1.0) if lo >= 0 and hi <= 1 else (lo, hi)


def _sequence_data(r: AttentionRecord, layers: Any, heads: Any, precision: str) -> dict[str, Any]:
    n_layers, n_heads, n_i, n_j = r.weights.shape
    layer_ids = parse_selection(r.layers if layers is None else layers, n_layers, "layers")
    head_ids = parse_selection(r.heads if heads is None else heads, n_heads, "heads")
    w = r.weights[np.ix_(layer_ids, head_ids)]
    entry: dict[str, Any] = {
        "name": r.name,
        "layers": layer_ids,
        "heads": head_ids,
        "nq": n_i,
        "nk": n_j,
        "x": r.tokens,
        "y": r.query_tokens,
        "w": _values(w, precision),
        # the mean over *all* heads, even when only some heads are shown
        "mean": _values(r.weights[layer_ids].mean(axis=1), precision),
        "rollout": _values(rollout(r.weights, cumulative=True)[layer_ids], precision)
        if n_i == n_j
        else None,
        "patches": None,
        "image": None,
    }
    if r.is_image:
        lo, hi = _pixel_range(r)
        ph, pw = r.patches[0].shape[:2]
        entry["patches"] = {
            "h": ph,
            "w": pw,
            "cls": int(bool(r.cls_token)),
            "rgba": _b64(_rgba(r.patches, lo, hi), "uint8"),
        }
        if r.image is not None and r.grid is not None:
            h, w_px = r.image.shape[:2]
            entry["image"] = {
                "h": h,
                "w": w_px,
                "grid": list(r.grid),
                "rgba": _b64(_rgba([r.image], lo, hi), "uint8"),
            }
    return entry


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


def _tables_html(tables: Sequence[Any] | None) -> str:
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


def _figures_html(figures: Sequence[Any] | None) -> str:
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


def _asset(name: str) -> str:
    return resources.files("selfattention.viz").joinpath(name).read_text(encoding="utf-8")


def render_html(
    sequences: Any,
    *,
    title: str = "Attention report",
    description: str | None = None,
    tables: Sequence[Any] | None = None,
    figures: Sequence[Any] | None = None,
    layers: Any = None,
    heads: Any = None,
    precision: str = "auto",
) -> str:
    """The report page as a string (``report`` writes it to a file)."""
    records = as_records(sequences)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        size = sum(
            4 * r.weights[0, 0].size * r.weights.shape[0] * (r.weights.shape[1] + 2)
            for r in records
        )
        precision = "uint16" if size > AUTO_LIMIT else "float32"
    data = {
        "title": str(title),
        "sequences": [_sequence_data(r, layers, heads, precision) for r in records],
    }
    js = _asset("report.js")
    if re.search(r"</script|<!--", js, re.IGNORECASE):
        raise RuntimeError("report.js must not contain '</script' or '<!--'")
    digest = base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode()
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )
    slots = {
        "csp": csp,
        "title": html.escape(str(title)),
        "description": html.escape(str(description)) if description else "",
        "css": _asset("report.css"),
        "tables": _tables_html(tables),
        "figures": _figures_html(figures),
        "data": script_json(data),
        "js": js,
        "version": html.escape(_version()),
    }
    # One pass, so text put into one slot is never scanned for another slot's marker.
    return re.sub(r"\{\{(\w+)\}\}", lambda m: slots[m.group(1)], _asset("report.html"))


def _version() -> str:
    # From the installed metadata, so viz need not import the package (torch, nn) for one string.
    try:
        return metadata.version("selfattention")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def report(
    path: str | Path,
    sequences: Any,
    *,
    title: str = "Attention report",
    description: str | None = None,
    tables: Sequence[Any] | None = None,
    figures: Sequence[Any] | None = None,
    layers: Any = None,
    heads: Any = None,
    precision: str = "auto",
) -> Path:
    """Write one self-contained HTML page to explore attention weights; returns its path.

    Args:
        path: the .html file to write (parent folders are created; replaced atomically).
        sequences: a list of ``AttentionRecord`` or dicts with its fields: ``name``, ``weights``
            (L, H, i, j) (or a list per layer of (H, i, j)), ``tokens`` (j strings) or, for images,
            ``patches`` (gh·gw arrays (ph, pw[, C])) and/or ``image`` with ``grid`` (gh, gw), and
            ``cls_token``.
        title, description: shown at the top.
        tables: list of (caption, header list, rows), e.g. a similarity table.
        figures: list of (caption, matplotlib Figure | PNG/JPEG bytes | image path).
        layers, heads: keep only these (None = all; int, list, slice or "0,5" / "0-3") to keep the
            file small for long inputs; "mean of heads" and rollout still use every head and layer.
        precision: how weights are stored: "float32" (exact), "uint16" (steps of (max - min) /
            65535, half the size) or "auto" (uint16 once float32 would pass 16 MB).

    The page has selectors for sequence, layer and head ("mean of heads", each head, and the
    attention rollout through the chosen layer when the maps are square), a colour scale (view
    maximum, 0–1, or per row), an overview of every layer × head, a heatmap with token labels on
    both axes and the value under the mouse, and a click on a token (or a cell) selects its row:
    its strongest keys are listed and, for images, its attention is drawn over the image.
    """
    path = Path(path)
    text = render_html(
        sequences,
        title=title,
        description=description,
        tables=tables,
        figures=figures,
        layers=layers,
        heads=heads,
        precision=precision,
    )
    return write_text_atomically(path, text)
