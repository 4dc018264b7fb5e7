"""``report``: one self-contained HTML file to explore attention weights in any browser.

Everything is inline: the page's CSS and JavaScript (``report.css``; ``report.js`` with its parts
``report_data.js``, ``report_views.js``, ``report_panels.js``, ``report_events.js`` joined into
it; packaged next to this file), the weights (float32, or for long inputs 8/7-bit rows
deflated, see ``_compact``; base64, inside a ``<script type="application/json">`` block), the
views' inputs (queries and keys for the neuron view, value norms, attention flow) and figures
(PNG data: URIs). A
Content-Security-Policy allows no network access at all and only the page's own script (by its
SHA-256), so the file works offline and user strings can't run code.

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
import re
from collections.abc import Sequence
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np

from selfattention.viz import _compact
from selfattention.viz._files import write_text_atomically
from selfattention.viz._inputs import parse_selection
from selfattention.viz._parts import figures_html, tables_html
from selfattention.viz.flow import attention_flow
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


PRECISIONS = _compact.PRECISIONS
AUTO_LIMIT = 16e6  # bytes of float32 weights above which "auto" stores 8-bit rows
AUTO_BUDGET = 7e6  # deflated 8-bit bytes above which "auto" drops to 7 bits (page <= ~10 MB)
FLOW_TOKENS = 24  # the report computes attention flow (n max-flows per row) up to this length
NEURON_TOKENS = 128  # queries/keys (L·H·n·d floats each) are left out of longer sequences


def _b64(a: np.ndarray, dtype: str) -> str:
    return base64.b64encode(
        np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    ).decode()


def _values(a: np.ndarray, precision: str) -> dict[str, Any]:
    return _compact.encode(a, precision)


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
    square = n_i == n_j
    flow = r.flow
    if flow is None and square and n_j <= FLOW_TOKENS and r.weights.min() >= 0:
        flow = attention_flow(r.weights)
    entry: dict[str, Any] = {
        "name": r.name,
        "layers": layer_ids,
        "heads": head_ids,
        "nq": n_i,
        "nk": n_j,
        "x": r.tokens,
        "y": r.query_tokens,
        "w": _values(w, precision),
        # the mean over *all* heads, even when only some heads are shown; with every head shown
        # the page averages the heads itself (one map fewer to store)
        "mean": None
        if len(head_ids) == n_heads
        else _values(r.weights[layer_ids].mean(axis=1), precision),
        "rollout": _values(rollout(r.weights, cumulative=True)[layer_ids], precision)
        if square
        else None,
        "flow": None if flow is None else _values(flow, "float32"),
        "flowNote": None
        if flow is not None or not square
        else f"attention flow is computed for inputs up to {FLOW_TOKENS} tokens "
        f"(this one has {n_j}); use rollout",
        "vnorm": None
        if r.value_norms is None
        else _values(r.value_norms[np.ix_(layer_ids, head_ids)], "float32"),
        "neuron": None,
        "patches": None,
        "image": None,
    }
    entry["precision"] = _compact.describe(entry["w"])
    if r.queries is not None and max(n_i, n_j) <= NEURON_TOKENS:
        d = r.queries.shape[-1]
        scale = 1 / np.sqrt(d) if r.scale is None else r.scale
        entry["neuron"] = {
            "d": d,
            "q": _values(scale * r.queries[np.ix_(layer_ids, head_ids)], "float32"),
            "k": _values(r.keys[np.ix_(layer_ids, head_ids)], "float32"),
        }
    elif r.queries is not None:
        entry["neuronNote"] = f"the neuron view is kept for inputs up to {NEURON_TOKENS} tokens"
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


def _encode_all(
    records: list[AttentionRecord], layers: Any, heads: Any, precision: str
) -> list[dict[str, Any]]:
    """Every sequence's page data; "auto" keeps float32 for small inputs, else stores 8-bit rows,
    and 7-bit rows if the 8-bit weights would still pass ``AUTO_BUDGET``."""
    if precision != "auto":
        return [_sequence_data(r, layers, heads, precision) for r in records]
    size = sum(4 * r.weights[0, 0].size * r.weights.shape[0] * r.weights.shape[1] for r in records)
    if size <= AUTO_LIMIT:
        return [_sequence_data(r, layers, heads, "float32") for r in records]
    out = [_sequence_data(r, layers, heads, "uint8") for r in records]
    if sum(len(s["w"]["data"]) for s in out) * 3 / 4 > AUTO_BUDGET:
        out = [_sequence_data(r, layers, heads, "uint7") for r in records]
    return out


def _asset(name: str) -> str:
    return resources.files("selfattention.viz").joinpath(name).read_text(encoding="utf-8")


# The viewer's script: report.js is the frame (one function, strict mode); its parts are
# joined into it in this order, so they share one scope.
JS_PARTS = ("report_data.js", "report_views.js", "report_panels.js", "report_events.js")
_JS_SLOT = "  /* PARTS */\n"


def _script() -> str:
    frame = _asset("report.js")
    if _JS_SLOT not in frame:
        raise RuntimeError("report.js lost its PARTS line")
    return frame.replace(_JS_SLOT, "\n".join(_asset(name) for name in JS_PARTS))


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
    sequences = _encode_all(records, layers, heads, precision)
    data = {"title": str(title), "sequences": sequences}
    js = _script()
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
        "tables": tables_html(tables),
        "figures": figures_html(figures),
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
            65535, half the size), "uint8" / "uint7" (per row, steps of the row's maximum / 255
            or / 127, deflated: a 512-token, 72-head model in under 10 MB) or "auto" (float32 up
            to 16 MB of weights, then uint8, then uint7 if still large). The page says which.

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
