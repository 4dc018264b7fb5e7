"""Matplotlib plumbing shared by the views: figures without pyplot (no display, no global state),
text drawn as typed, and saving them atomically.

Figures are built as ``matplotlib.figure.Figure`` objects, which render with the Agg canvas on
``savefig`` whatever backend (if any) the user's session has chosen, so nothing here needs a
display, Jupyter or ``matplotlib.use``.

User text (tokens, titles, stage names) goes through ``literal``: matplotlib would otherwise read
"$5 or $6" as mathtext (dropping the dollars) and fail on "$\\foo$" when the figure is saved.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
except ImportError as exc:  # an optional dependency: say which extra brings it
    raise ImportError(
        "selfattention.viz needs matplotlib: pip install 'selfattention[viz]' (or matplotlib)"
    ) from exc

from selfattention.viz._files import replace_atomically

__all__ = ["literal", "new_figure", "png_bytes", "save", "text_color"]


def literal(text: str | None) -> str | None:
    """``text`` escaped so that matplotlib draws it as typed: every "$" becomes "\\$".

    With no unescaped dollar sign a Text is never mathtext, and matplotlib turns each "\\$" back
    into "$" when drawing ("a\\$b" stays "a\\$b"). This works where ``parse_math=False`` cannot be
    passed (tick labels re-created at draw time, legend entries). None stays None.
    """
    return None if text is None else str(text).replace("$", r"\$")


def new_figure(width: float, height: float, **kwargs) -> Figure:
    """A Figure attached to an Agg canvas, ``width`` × ``height`` inches."""
    fig = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | Path, *, dpi: float | None = None) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix, PNG if none), creating parent folders.

    The file is replaced atomically: a reader sees the old figure or the new one, never half."""
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with replace_atomically(path) as f:
        fig.savefig(f, dpi=dpi or fig.dpi, bbox_inches="tight", format=fmt, facecolor="white")
    return path


def png_bytes(fig: Figure, *, dpi: float | None = None) -> bytes:
    """``fig`` encoded as PNG bytes (what the HTML report embeds)."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi or fig.dpi, bbox_inches="tight", format="png", facecolor="white")
    return buf.getvalue()


def text_color(rgba: np.ndarray) -> str:
    """Black or white, whichever reads better on a cell of colour ``rgba`` (relative luminance)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "white"
