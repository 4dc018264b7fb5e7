"""The house drawn from the imports: every import inside ``selfattention`` points down the layer
list of ARCHITECTURE.md, and ``cli/`` wires its commands with plain imports (no reflection)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "selfattention"
# Rank in ARCHITECTURE.md's list; packages of one rank sit beside each other and must not import
# each other. The top-level ``masks`` module re-exports functional's builders.
RANK = {
    "reference": 0,
    "functional": 1,
    "masks": 1.5,
    "nn": 2,
    "distributed": 3,
    "pretrained": 3,
    "integrations": 3,
    "viz": 3,
    "apps": 4,
    "cli": 5,
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import of ours in ``path``, including ones in functions."""
    package = path.relative_to(ROOT.parent).with_suffix("").parts
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = package[: len(package) - node.level]
                name = ".".join(base + ((node.module,) if node.module else ()))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return [(line, n) for line, n in found if n.startswith("selfattention.")]


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if p.parent != ROOT or p.stem == "masks")


def _layer(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def test_every_layer_is_ranked():
    packages = {_layer(p) for p in _modules()}
    assert packages <= set(RANK), f"not in ARCHITECTURE.md's list: {packages - set(RANK)}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path):
    me = _layer(path)
    upward = [
        f"line {line}: {name}"
        for line, name in _imports(path)
        if (to := name.split(".")[1]) != me and to in RANK and RANK[to] >= RANK[me]
    ]
    assert not upward, f"{me} may only import layers below it: {upward}"


def test_cli_wiring_is_plain():
    for path in sorted((ROOT / "cli").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for word in ("import_module", "importlib", "getattr(", "__import__"):
            assert word not in text, f"{path.relative_to(ROOT)} wires by reflection: {word}"


def test_apps_neither_parse_nor_print_nor_exit():
    for path in sorted((ROOT / "apps").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("print", "exit"), f"{path}:{node.lineno}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr != "exit" or not (
                    isinstance(node.func.value, ast.Name) and node.func.value.id == "sys"
                ), f"{path}:{node.lineno}"
        assert "import argparse" not in path.read_text(encoding="utf-8"), path
