"""Every ```python block of docs/core.md runs, in order, in one namespace (as a reader would)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "core.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _nn_ready() -> bool:
    try:
        import selfattention.nn as nn_
    except ImportError:
        return False
    return all(hasattr(nn_, n) for n in ("SelfAttention", "RotaryPositions", "ALiBi"))


def test_core_doc_has_python_blocks():
    assert len(BLOCK.findall(DOC.read_text())) >= 8


def test_core_doc_blocks_run():
    blocks = BLOCK.findall(DOC.read_text())
    namespace: dict = {"__name__": "docs_core"}
    ran = 0
    for number, code in enumerate(blocks, 1):
        if "sa.nn." in code and not _nn_ready():
            continue  # the nn piece is not importable yet
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                exec(compile(code, f"docs/core.md block {number}", "exec"), namespace)
            except Exception as err:  # report which block, then fail with the original
                pytest.fail(f"docs/core.md python block {number} failed: {err!r}\n{code}")
        ran += 1
    assert ran >= 5
