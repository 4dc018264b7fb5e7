"""The compiled window kernel (native/window.cpp) against the math path and the pure-torch plan:
awkward lengths and head sizes, cross-attention lengths, rows without keys, every thread split
of backward, kept and recomputed weights, grouped heads, half precision, and when it is used."""

from __future__ import annotations

import pytest
import torch

import selfattention as sa
from conftest import randn, require_native
from selfattention.functional.backends import native, window
from test_backends import assert_same, run


@pytest.fixture(autouse=True)
def _built():
    require_native()


def uses_kernel(q, k, v, **kw) -> bool:
    return "compiled kernel" in sa.explain_dispatch(q, k, v, backend="window", **kw).path


@pytest.mark.parametrize(
    "band", [(0, 0), (1, 0), (0, 1), (2, 7), (31, 0), (0, 33), (16, 16), (40, 3), (100, 100)]
)
@pytest.mark.parametrize(
    "lengths", [(1, 1), (31, 31), (32, 32), (33, 33), (97, 97), (5, 70), (70, 5)]
)
def test_float64_equals_math(band, lengths):
    """float64 through the kernel equals the math path to rounding: out and dq, dk, dv."""
    nq, nk = lengths
    q, k, v = randn(1, 2, nq, 8, seed=1), randn(1, 2, nk, 8, seed=2), randn(1, 2, nk, 8, seed=3)
    assert uses_kernel(q, k, v, window=band)
    assert_same(run("math", q, k, v, window=band), run("window", q, k, v, window=band), 1e-12)


@pytest.mark.parametrize("dims", [(1, 1), (5, 3), (8, 8), (13, 24), (64, 64), (72, 40)])
def test_head_sizes_padded_to_lanes(dims):
    """d and e of any size (zero-padded to the vector's lanes inside), e != d too."""
    d, e = dims
    q, k, v = randn(2, 1, 45, d, seed=1), randn(2, 1, 45, d, seed=2), randn(2, 1, 45, e, seed=3)
    kw = dict(window=(6, 2))
    assert_same(run("math", q, k, v, **kw), run("window", q, k, v, **kw), 1e-12)


def test_rows_without_keys_are_zero_with_lse_minus_infinity():
    q, k, v = randn(1, 1, 60, 8, seed=1), randn(1, 1, 10, 8, seed=2), randn(1, 1, 10, 8, seed=3)
    out, lse = sa.attention(q, k, v, window=(3, 3), backend="window", return_lse=True)
    _, ref_lse = sa.attention(q, k, v, window=(3, 3), backend="math", return_lse=True)
    assert float(out[..., 13:, :].abs().max()) == 0.0
    assert bool(torch.isneginf(lse[..., 13:]).all())  # log of an empty sum, as math says
    assert float((lse[..., :13] - ref_lse[..., :13]).abs().max()) < 1e-12
    assert_same(run("math", q, k, v, window=(3, 3)), run("window", q, k, v, window=(3, 3)), 1e-12)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("heads", [1, 2, 12])
def test_every_thread_split_of_backward(threads, heads):
    """Few heads: backward cuts each head into segments (even ones, then odd ones) so no two
    threads add into the same dK/dV rows; many heads: a head per thread."""
    torch.set_num_threads(threads)  # the autouse fixture restores it
    n = 700
    q, k, v = (randn(1, heads, n, 8, seed=s) for s in (1, 2, 3))
    for band in ((20, 5), (0, 64), (3, 0)):
        assert_same(run("math", q, k, v, window=band), run("window", q, k, v, window=band), 1e-12)


@pytest.mark.parametrize("keep", [0, 2])
def test_kept_or_recomputed_weights(keep, monkeypatch):
    monkeypatch.setattr(window.ops, "KEEP_FACTOR", keep)
    window.Workspace.clear()
    q, k, v = (
        randn(2, 3, 130, 16, seed=1),
        randn(2, 3, 130, 16, seed=2),
        randn(2, 3, 130, 8, seed=3),
    )
    assert_same(run("math", q, k, v, window=(9, 4)), run("window", q, k, v, window=(9, 4)), 1e-12)
    assert (window.Workspace._spare is not None) is bool(keep)  # handed back for the next call
    window.Workspace.clear()


def test_lse_gradient_and_causal():
    q, k, v = (randn(1, 2, 77, 8, seed=s).requires_grad_() for s in (1, 2, 3))
    out, lse = sa.attention(q, k, v, window=10, causal=True, backend="window", return_lse=True)
    (out.sin().sum() + lse.cos().sum()).backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    out2, lse2 = sa.attention(q, k, v, window=10, causal=True, backend="math", return_lse=True)
    (out2.sin().sum() + lse2.cos().sum()).backward()
    assert float((out - out2).detach().abs().max()) < 1e-12
    for a, t in zip(grads, (q, k, v), strict=True):
        assert float((a - t.grad).abs().max()) < 1e-12


def test_float32_matches_the_pure_torch_path_and_float64():
    n = 2000
    q, k, v = (randn(2, 4, n, 64, seed=s, dtype=torch.float32) for s in (1, 2, 3))
    got = run("window", q, k, v, window=128)
    with native.disabled():
        plain = run("window", q, k, v, window=128)
    ref = run("math", q.double(), k.double(), v.double(), window=128)
    assert_same([r.float() for r in ref], got, 2e-5)
    assert_same(plain, got, 2e-5)


def test_grouped_heads_and_half_precision():
    q = randn(1, 4, 90, 16, seed=1, dtype=torch.float32)
    k, v = (randn(1, 2, 90, 16, seed=s, dtype=torch.float32) for s in (2, 3))
    assert uses_kernel(q, k, v, window=7)
    got = sa.attention(q, k, v, window=7, backend="window")
    ref = sa.attention(q, k, v, window=7, backend="math")
    assert float((got - ref).abs().max()) < 1e-5
    qh, kh, vh = q.bfloat16(), k.bfloat16(), v.bfloat16()
    got = sa.attention(qh, kh, vh, window=7, backend="window")
    assert got.dtype == torch.bfloat16
    assert (
        float(
            (got.float() - sa.attention(qh, kh, vh, window=7, backend="math").float()).abs().max()
        )
        < 2e-2
    )


@pytest.mark.parametrize("shape", [(2, 1, 1, 50), (2, 3, 1, 50), (50,), (1, 50)])
@pytest.mark.parametrize("band", [(3, 2), (0, 0), (7, 0), (20, 20)])
def test_key_masks(shape, band):
    """A key mask (padding: the same for every query) through the kernel equals math, also for
    queries whose whole band is masked (output 0, no NaN, zero gradient)."""
    q, k, v = randn(2, 3, 50, 8, seed=1), randn(2, 3, 50, 8, seed=2), randn(2, 3, 50, 8, seed=3)
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(4)) > 0.3
    mask[..., 10:30] = False  # a stretch of masked keys wider than the narrow bands
    assert uses_kernel(q, k, v, window=band, mask=mask)
    got = run("window", q, k, v, window=band, mask=mask)
    assert_same(run("math", q, k, v, window=band, mask=mask), got, 1e-12)
    with native.disabled():
        assert_same(run("window", q, k, v, window=band, mask=mask), got, 1e-12)


def test_padding_through_the_module():
    """sa.nn.SelfAttention with a key padding mask and a window takes the kernel."""
    torch.manual_seed(0)
    model = sa.nn.SelfAttention(32, 4, window=5).double()
    x = torch.randn(3, 40, 32, dtype=torch.float64)
    pad = sa.masks.padding([40, 25, 7], 40)  # (b, 1, 1, j)
    got = model(x, mask=pad)
    with native.disabled():
        want = model(x, mask=pad)
    assert float((got - want).detach().abs().max()) < 1e-12


def test_what_takes_the_pure_torch_path():
    q = torch.zeros(1, 1, 64, 8)
    assert uses_kernel(q, q, q, window=4)
    assert uses_kernel(q, q, q, window=4, mask=torch.ones(1, 64, dtype=torch.bool))
    assert not uses_kernel(q, q, q, window=4, normalize="relu")
    assert not uses_kernel(q, q, q, window=4, mask=torch.ones(64, 64, dtype=torch.bool))
    assert not uses_kernel(q, q, q, window=4, bias=torch.zeros(64, 64))
    with native.disabled():
        path = sa.explain_dispatch(q, q, q, window=4, backend="window").path
    assert path.startswith("pure torch: the compiled kernel is turned off")


def test_stale_or_missing_build_is_never_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFATTENTION_NATIVE_DIR", str(tmp_path))
    assert "make native" in native.unavailable()
    q = randn(1, 1, 40, 8, seed=1)
    assert not uses_kernel(q, q, q, window=4)
    assert_same(run("math", q, q, q, window=4), run("window", q, q, q, window=4), 1e-12)
