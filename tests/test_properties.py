"""Properties that hold for any input (hypothesis), for the reference and every torch path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import selfattention as sa
from selfattention import reference
from selfattention.functional import backends

SETTINGS = settings(max_examples=20, deadline=None, derandomize=True)
BACKENDS = ["auto", *sorted(backends.REGISTRY)]

sizes = st.integers(min_value=1, max_value=9)
dims = st.integers(min_value=1, max_value=5)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def qkv(seed: int, i: int, j: int, d: int, dtype=torch.float64, b: int = 1, h: int = 2):
    g = torch.Generator().manual_seed(seed)
    return tuple(
        torch.randn(b, h, n, d, generator=g, dtype=torch.float64).to(dtype) for n in (i, j, j)
    )


def served(q, k, v, backend: str, **kw) -> bool:
    try:
        sa.explain_dispatch(q, k, v, backend=backend, **kw)
    except ValueError as err:
        if "cannot serve" in str(err):
            return False
        raise
    return True


@SETTINGS
@given(seed=seeds, n=sizes, d=dims, backend=st.sampled_from(BACKENDS))
def test_permutation_equivariance(seed: int, n: int, d: int, backend: str):
    """Without positions, permuting the words permutes the outputs: f(P X) = P f(X)."""
    x = qkv(seed, n, n, d)[0]
    if not served(x, x, x, backend):
        return
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out = sa.attention(x, x, x, backend=backend)
    out_p = sa.attention(x[:, :, perm], x[:, :, perm], x[:, :, perm], backend=backend)
    torch.testing.assert_close(out_p, out[:, :, perm], atol=1e-12, rtol=1e-12)
    x_np = x[0, 0].numpy()
    y = reference.self_attention(x_np)
    np.testing.assert_allclose(reference.self_attention(x_np[perm.numpy()]), y[perm.numpy()])


@SETTINGS
@given(seed=seeds, i=sizes, j=sizes, d=dims, causal=st.booleans())
def test_softmax_rows_sum_to_one_and_outputs_in_hull(seed, i, j, d, causal):
    """Softmax weights are a probability row; each output lies in the values' bounding box."""
    q, k, v = qkv(seed, i, j, d)
    q = q * 4  # sharper weights
    out, w = sa.attention(q, k, v, causal=causal, return_weights=True)
    torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))
    assert bool((w >= 0).all())
    lo = v.min(dim=-2, keepdim=True).values
    hi = v.max(dim=-2, keepdim=True).values
    assert bool((out >= lo - 1e-12).all() and (out <= hi + 1e-12).all())
    ref_out, ref_w = reference.attention(q.numpy(), k.numpy(), v.numpy(), causal=causal)
    np.testing.assert_allclose(ref_w.sum(-1), 1.0)
    assert (ref_out >= lo.numpy() - 1e-12).all() and (ref_out <= hi.numpy() + 1e-12).all()


@SETTINGS
@given(
    seed=seeds,
    n=sizes,
    d=dims,
    extra=st.integers(0, 5),
    right=st.booleans(),
    backend=st.sampled_from(BACKENDS),
)
def test_window_at_least_n_equals_full(seed, n, d, extra, right, backend):
    q, k, v = qkv(seed, n, n, d)
    window = (n - 1 + extra, n - 1 + extra) if right else n - 1 + extra
    if not served(q, k, v, backend, window=window):
        return
    torch.testing.assert_close(
        sa.attention(q, k, v, window=window, backend=backend),
        sa.attention(q, k, v, backend="math"),
        atol=1e-12,
        rtol=1e-12,
    )


@SETTINGS
@given(seed=seeds, i=sizes, j=sizes, d=dims, backend=st.sampled_from(BACKENDS))
def test_causal_equals_lower_triangular_mask(seed, i, j, d, backend):
    q, k, v = qkv(seed, i, j, d)
    tril = torch.ones(i, j, dtype=torch.bool).tril()
    np.testing.assert_array_equal(reference.causal_mask(i, j), tril.numpy())
    if not served(q, k, v, backend, causal=True):
        return
    torch.testing.assert_close(
        sa.attention(q, k, v, causal=True, backend=backend),
        sa.attention(q, k, v, mask=tril, backend="math"),
        atol=1e-12,
        rtol=1e-12,
    )


@SETTINGS
@given(seed=seeds, n=sizes, left=st.integers(0, 10), right=st.integers(0, 10))
def test_window_equals_band_mask(seed, n, left, right):
    q, k, v = qkv(seed, n, n, 3)
    band = torch.from_numpy(reference.window_mask(n, n, left, right))
    for backend in BACKENDS:
        kw = {"window": (left, right)}
        if served(q, k, v, backend, **kw):
            torch.testing.assert_close(
                sa.attention(q, k, v, backend=backend, **kw),
                sa.attention(q, k, v, mask=band, backend="math"),
            )


@pytest.mark.parametrize("normalize", ["softmax", "sum", "relu"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float16, torch.bfloat16], ids=lambda d: str(d)[6:]
)
@pytest.mark.parametrize("how", ["mask", "bias", "window"])
def test_fully_masked_rows_give_zeros_and_finite_grads(how, dtype, backend, normalize):
    """A query with nothing to attend to gets a zero row, and finite (zero) gradients."""
    g = torch.Generator().manual_seed(0)
    b, h, i, j, d = 2, 2, 6, 5, 4
    positive = normalize == "sum"

    def make(n: int) -> torch.Tensor:
        x = torch.randn(b, h, n, d, generator=g)
        return (x.abs() + 0.1 if positive else x).to(dtype).requires_grad_()

    q, k, v = make(i), make(j), make(j)
    kw: dict = {"normalize": normalize}
    empty = torch.zeros(i, dtype=torch.bool)
    if how == "mask":
        mask = torch.ones(b, 1, i, j, dtype=torch.bool)
        mask[:, :, 2] = False
        mask[1, :, 4] = False
        kw["mask"] = mask
        empty[[2, 4]] = True  # row 4 only in batch 1
    elif how == "bias":
        bias = torch.zeros(1, h, i, j, dtype=dtype)
        bias[:, :, 3] = -torch.inf
        kw["bias"] = bias
        empty[3] = True
    else:
        # window (0, 0) with more queries than keys: queries 5.. have no key at their position.
        kw["window"] = (0, 0)
        empty[5] = True
    if not served(q, k, v, backend, **kw):
        pytest.skip(f"{backend} refuses this call")
    out = sa.attention(q, k, v, backend=backend, **kw)
    assert out.dtype == dtype
    assert bool(torch.isfinite(out).all())
    if how == "mask":
        assert bool((out[:, :, 2] == 0).all()) and bool((out[1, :, 4] == 0).all())
    else:
        assert bool((out[:, :, empty] == 0).all())
    out.float().square().sum().backward()
    for name, t in (("q", q), ("k", k), ("v", v)):
        assert t.grad is not None and bool(torch.isfinite(t.grad).all()), f"{name}.grad not finite"
    # A query row that sees nothing receives no gradient.
    assert bool((q.grad[:, :, 2 if how == "mask" else empty] == 0).all())
