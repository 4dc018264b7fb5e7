"""What every command adapter shares: printing user text as text, and turning failures into a
one-line error and an exit code.

Exit codes: 0 success, 1 a failure the message explains, 2 bad usage, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_USAGE", "console", "error", "one_line"]

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def console(*, stderr: bool = False, width: int | None = None) -> Any:
    """A rich Console that never reads markup or guesses highlights, so text a user typed
    ("bank [on Monday]", "[/]") prints as typed. Style with ``rich.text.Text`` objects only."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if width is None and not stream.isatty():
        width = 130
    return Console(
        file=stream, width=width, markup=False, highlight=False, emoji=False, soft_wrap=False
    )


def one_line(exc: BaseException) -> str:
    """The exception's message folded onto one line (KeyError's quotes removed)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return text or type(exc).__name__


def error(message: str, *, file: IO[str] | None = None) -> None:
    """Print ``error: MESSAGE`` as one plain line on stderr."""
    print(f"error: {message}", file=file or sys.stderr)


def debug() -> bool:
    """``SELFATTENTION_DEBUG=1`` lets unexpected exceptions show their traceback."""
    return os.environ.get("SELFATTENTION_DEBUG", "") not in ("", "0")
