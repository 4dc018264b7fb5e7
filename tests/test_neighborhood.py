"""2-D neighbourhood attention: the mask, the tile kernel against the math path, the module."""

from __future__ import annotations

import pytest
import torch

from conftest import randn
from selfattention.functional.neighborhood import (
    neighborhood_attention,
    neighborhood_mask,
    tile_cost,
)
from selfattention.nn.neighborhood import NeighborhoodAttention2D


def brute_mask(height, width, k):
    m = torch.zeros(height * width, height * width, dtype=torch.bool)
    for r in range(height):
        for c in range(width):
            r0 = min(max(r - k // 2, 0), height - k)
            c0 = min(max(c - k // 2, 0), width - k)
            for rr in range(r0, r0 + k):
                for cc in range(c0, c0 + k):
                    m[r * width + c, rr * width + cc] = True
    return m


@pytest.mark.parametrize(("height", "width", "k"), [(3, 3, 3), (5, 7, 3), (6, 4, 4), (4, 9, 1)])
def test_mask_matches_brute_force(height, width, k):
    m = neighborhood_mask(height, width, k)
    assert torch.equal(m, brute_mask(height, width, k))
    assert bool((m.sum(-1) == k * k).all())  # every patch sees exactly k x k patches


def test_full_kernel_is_dense():
    assert bool(neighborhood_mask(3, 3, 3).all())


def grads(backend, q, k, v, grid, ks, **kw):
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out = neighborhood_attention(*leaves, grid, ks, backend=backend, **kw)
    (out * torch.cos(torch.arange(out.numel(), dtype=out.dtype)).view_as(out)).sum().backward()
    return [out.detach()] + [t.grad for t in leaves]


@pytest.mark.parametrize(
    ("grid", "ks", "tile", "normalize"),
    [
        ((5, 7), 3, None, "softmax"),
        ((6, 6), 5, 2, "relu"),
        ((9, 4), 3, 3, "sum"),
        ((10, 13), 5, 4, "softmax"),
        ((8, 8), 7, None, "softmax"),
        ((4, 11), 1, 3, "softmax"),
    ],
)
def test_tiles_equal_math(grid, ks, tile, normalize):
    n = grid[0] * grid[1]
    positive = normalize == "sum"
    q = randn(2, 3, n, 6, seed=1, positive=positive)
    k = randn(2, 3, n, 6, seed=2, positive=positive)
    v = randn(2, 3, n, 4, seed=3)
    kw = dict(normalize=normalize, tile=tile)
    ref, got = grads("math", q, k, v, grid, ks, **kw), grads("tiles", q, k, v, grid, ks, **kw)
    for name, a, b in zip(["out", "dq", "dk", "dv"], ref, got, strict=True):
        assert float((a - b).abs().max()) < 1e-12, name


def test_gradcheck():
    q, k, v = (randn(1, 2, 20, 3, seed=s).requires_grad_() for s in (1, 2, 3))
    f = lambda q, k, v: neighborhood_attention(q, k, v, (4, 5), 3, backend="tiles", tile=2)  # noqa: E731
    assert torch.autograd.gradcheck(f, (q, k, v))


def test_tiles_skip_work():
    assert tile_cost((64, 64), 7) < 4.1  # (8 + 6)² / 49 keys per needed key, vs 4096 / 49 dense


def test_bad_arguments():
    q = torch.zeros(1, 1, 12, 4)
    with pytest.raises(ValueError, match="kernel_size"):
        neighborhood_attention(q, q, q, (3, 4), 5)
    with pytest.raises(ValueError, match="H·W=20"):
        neighborhood_attention(q, q, q, (4, 5), 3)
    with pytest.raises(ValueError, match="grid"):
        neighborhood_mask(0, 3, 1)
    with pytest.raises(ValueError, match="normalize"):
        neighborhood_attention(q, q, q, (3, 4), 3, normalize="nope", backend="tiles")


def test_module_shapes_weights_and_backends():
    torch.manual_seed(0)
    m = NeighborhoodAttention2D(16, 2, 3, grid=(5, 6)).double()
    x = torch.randn(2, 30, 16, dtype=torch.float64)
    out, w = m(x, return_weights=True)
    assert out.shape == (2, 30, 16) and w.shape == (2, 2, 30, 30)
    outside = ~neighborhood_mask(5, 6, 3)
    assert float(w.detach()[..., outside].abs().max()) == 0.0
    assert torch.allclose(w.sum(-1), torch.ones(2, 2, 30, dtype=torch.float64))
    m.backend = "tiles"
    assert torch.allclose(m(x), out, atol=1e-12)
    m(x).sum().backward()
    assert m.query_proj.weight.grad is not None
    assert {"query_proj", "key_proj", "value_proj", "out_proj"} <= dict(m.named_children()).keys()
    with pytest.raises(ValueError, match="H·W=30"):
        m(torch.randn(2, 31, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="heads must divide"):
        NeighborhoodAttention2D(10, 3, 3, grid=(5, 6))
