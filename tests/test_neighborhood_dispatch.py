"""The neighbourhood dispatch explains itself, and the shared validators name their argument."""

import pytest
import torch

from selfattention.functional import explain_neighborhood_dispatch
from selfattention.functional.call import check_backend, check_mask, check_normalize, check_scale
from selfattention.nn import NeighborhoodAttention2D


def test_auto_takes_tiles_on_a_large_grid():
    q = torch.zeros(1, 1, 64, 4)
    d = explain_neighborhood_dispatch(q, q, q, (8, 8), 3)
    assert d.chosen == "tiles" and d.refused == {}


@pytest.mark.parametrize(
    ("grid", "ks", "kw", "words"),
    [
        ((4, 4), 3, {}, "3×3 neighbourhood covers a quarter"),
        ((8, 8), 3, dict(normalize=lambda s, a: torch.softmax(s, -1)), "callable"),
    ],
)
def test_auto_says_why_tiles_was_refused(grid, ks, kw, words):
    n = grid[0] * grid[1]
    q = torch.randn(1, 1, n, 4, dtype=torch.float64)
    d = explain_neighborhood_dispatch(q, q, q, grid, ks, **kw)
    assert d.chosen == "math" and words in d.refused["tiles"]
    assert "not tiles" in str(d)


def test_explicit_backend_that_cannot_serve_raises_with_the_reason():
    q = torch.zeros(1, 1, 12, 4)
    with pytest.raises(ValueError, match=r"backend='tiles' cannot serve this call: .*callable"):
        explain_neighborhood_dispatch(q, q, q, (3, 4), 3, normalize=lambda s, a: s, backend="tiles")
    with pytest.raises(ValueError, match=r"backend must be 'auto' or one of \['math', 'tiles'\]"):
        explain_neighborhood_dispatch(q, q, q, (3, 4), 3, backend="sdpa")
    assert explain_neighborhood_dispatch(q, q, q, (3, 4), 3, backend="tiles").chosen == "tiles"


@pytest.mark.parametrize(
    ("fn", "error", "words"),
    [
        (lambda: check_normalize("sparsemax"), ValueError, ["normalize", "'sparsemax'", "softmax"]),
        (lambda: check_normalize(len, allow_callable=False), ValueError, ["normalize", "len"]),
        (lambda: check_scale(float("inf")), ValueError, ["scale", "inf", "finite"]),
        (lambda: check_scale(True), ValueError, ["scale", "True"]),
        (lambda: check_backend(3), ValueError, ["backend", "3", "string"]),
        (lambda: check_backend("x", ("math",)), ValueError, ["backend", "'x'", "['math']"]),
        (lambda: check_mask([1]), TypeError, ["mask", "list", "bool"]),
        (lambda: check_mask(torch.ones(2), name="m"), TypeError, ["m must be bool", "float32"]),
        (lambda: check_mask(torch.ones(3, dtype=torch.bool), (1, 1, 2, 2)), ValueError, ["(3,)"]),
    ],
)
def test_validators_name_argument_got_and_expected(fn, error, words):
    with pytest.raises(error) as info:
        fn()
    for word in words:
        assert word in str(info.value)


def test_validators_pass_good_values_through():
    assert check_normalize("sum") == "sum"
    assert check_scale(2) == 2.0 and check_scale(None) is None
    assert check_backend("auto", ("math",)) == "auto"
    m = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    assert check_mask(m, (2, 3, 4, 5)) is m


def test_module_rejects_callable_normalize_and_unknown_backend():
    with pytest.raises(ValueError, match=r"normalize must be one of \['relu', 'softmax', 'sum'\]"):
        NeighborhoodAttention2D(8, 2, 3, grid=(4, 4), normalize=lambda s, a: s)
    with pytest.raises(ValueError, match=r"backend must be 'auto' or one of"):
        NeighborhoodAttention2D(8, 2, 3, grid=(4, 4), backend="window")
