"""The wiring of the functional floor: one literal backend registry, one dispatcher (also for 2-D
neighbourhoods), no private backend internals used from outside, no normalisation names compared."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import selfattention as sa
from selfattention.functional import backends, neighborhood_attention

FUNCTIONAL = Path(sa.functional.__file__).parent
BACKENDS_DIR = FUNCTIONAL / "backends"


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_registry_is_one_dict_literal_of_backend_objects():
    tree = parse(BACKENDS_DIR / "__init__.py")
    literals = [
        node.value
        for node in tree.body
        if isinstance(node, ast.AnnAssign | ast.Assign)
        and "REGISTRY"
        in [
            ast.unparse(t)
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        ]
    ]
    assert len(literals) == 1 and isinstance(literals[0], ast.Dict)
    names = [k.value for k in literals[0].keys]
    values = [ast.unparse(v) for v in literals[0].values]
    assert values == [f"{n}.BACKEND" for n in names]
    assert list(backends.REGISTRY) == names
    assert all(backends.REGISTRY[n].name == n for n in names)


def test_no_backend_registers_itself_on_import():
    for path in BACKENDS_DIR.glob("*.py"):
        calls = [
            ast.unparse(n.func)
            for n in ast.walk(parse(path))
            if isinstance(n, ast.Call) and ast.unparse(n.func).endswith("register")
        ]
        assert calls == [], f"{path.name} calls {calls}"


def test_auto_order_lists_every_backend_once_math_last():
    assert sorted(backends.AUTO_ORDER) == sorted(backends.REGISTRY)
    assert backends.AUTO_ORDER[-1] == "math"


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(ValueError) as info:
        backends.get("flash9")
    for name in backends.REGISTRY:
        assert repr(name) in str(info.value)
    q = torch.zeros(1, 1, 4, 2)
    with pytest.raises(ValueError, match=r"one of \[.*'tiles'.*\], got 'flash9'"):
        sa.attention(q, q, q, backend="flash9")


def _imports(tree: ast.Module) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


def test_nothing_outside_backends_reaches_into_private_backend_modules():
    root = FUNCTIONAL.parent  # the whole package
    for path in root.rglob("*.py"):
        if BACKENDS_DIR in path.parents:
            continue
        private = [
            name
            for name in _imports(parse(path))
            if name.startswith("selfattention.functional.backends.")
            and any(part.startswith("_") for part in name.split(".")[3:])
        ]
        assert private == [], f"{path.relative_to(root)} imports {private}"


def test_no_normalisation_name_is_compared_in_functional():
    names = {"softmax", "sum", "relu"}
    for path in FUNCTIONAL.rglob("*.py"):
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.Compare):
                consts = [
                    c.value
                    for c in ast.walk(node)
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                ]
                assert not names & set(consts), f"{path.name}: {ast.unparse(node)}"


def test_neighbourhood_attention_goes_through_the_one_dispatcher(monkeypatch):
    seen = []
    choose = backends.choose

    def spy(call, backend="auto"):
        seen.append((call.grid, backend))
        return choose(call, backend)

    monkeypatch.setattr(backends, "choose", spy)
    q = torch.randn(1, 2, 64, 4, dtype=torch.float64)
    neighborhood_attention(q, q, q, (8, 8), 3)
    neighborhood_attention(q, q, q, (8, 8), 3, backend="math")
    sa.functional.explain_neighborhood_dispatch(q, q, q, (8, 8), 3)
    assert [(g.height, g.width, g.kernel_size, b) for g, b in seen] == [
        (8, 8, 3, "auto"),
        (8, 8, 3, "math"),
        (8, 8, 3, "auto"),
    ]


def test_one_dimensional_backends_refuse_a_grid_and_say_so():
    q = torch.zeros(1, 1, 64, 4)
    call = sa.functional.call.make_call(
        q, q, q, mask=None, bias=None, causal=False, window=None, scale=None,
        normalize="softmax", dropout_p=0.0, return_weights=False,
        grid=sa.functional.masks.Neighborhood(8, 8, 3),
    )  # fmt: skip
    for name in ("window", "chunked"):
        assert "2-D neighbourhood" in backends.REGISTRY[name].refuse(call)
    assert "dense mask" in backends.REGISTRY["sdpa"].auto_skip(call)
    assert backends.choose(call).chosen == "tiles"
    plain = sa.explain_dispatch(q, q, q, normalize="relu")
    assert "2-D neighbourhoods only" in plain.refused["tiles"]
