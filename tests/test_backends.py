"""Every backend equals the math path (values and gradients); refusals and auto's choices."""

from __future__ import annotations

import itertools

import pytest
import torch

import selfattention as sa
from conftest import check_close, plain_attention, rand_mask, randn, reference_attention
from selfattention.functional.backends import REGISTRY, chunked, native, window

BACKENDS = ("chunked", "window", "sdpa")


def run(backend: str, q, k, v, *, bias=None, **kw):
    """Output and the gradients of (q, k, v[, bias]) under a fixed output weighting."""
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    b = None if bias is None else bias.detach().clone().requires_grad_()
    out = sa.attention(*leaves, bias=b, backend=backend, **kw)
    weight = torch.sin(torch.arange(out.numel(), dtype=out.dtype)).view_as(out)
    (out * weight).sum().backward()
    grads = [t.grad for t in leaves] + ([b.grad] if b is not None else [])
    return [out.detach(), *grads]


def serves(backend: str, **kw) -> bool:
    q = torch.zeros(1, 1, 4, 2)
    try:
        sa.explain_dispatch(q, q, q, backend=backend, **kw)
    except ValueError:
        return False
    return True


def assert_same(ref, got, tol=1e-10, what=""):
    assert len(ref) == len(got)
    for name, a, b in zip(["out", "dq", "dk", "dv", "dbias"], ref, got, strict=False):
        assert b.shape == a.shape, f"{what} {name}: shape {tuple(b.shape)} != {tuple(a.shape)}"
        assert bool(torch.isfinite(b).all()), f"{what} {name}: non-finite"
        err = float((a - b).abs().max())
        assert err <= tol, f"{what} {name}: max abs diff {err:.3g} > {tol}"


CASES = list(
    itertools.product(
        [(1, 1), (17, 17), (70, 45), (23, 90)],  # (q_len, k_len): awkward and cross lengths
        [None, (3, 5), (0, 0), (40, 2)],  # window
        [False, True],  # causal
    )
)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("lengths", "win", "causal"), CASES)
def test_softmax_equals_math(backend, lengths, win, causal):
    nq, nk = lengths
    kw = dict(window=win, causal=causal)
    if not serves(backend, **kw):
        pytest.skip(f"{backend} refuses window={win}, causal={causal}")
    q, k, v = randn(2, 3, nq, 7, seed=1), randn(2, 3, nk, 7, seed=2), randn(2, 3, nk, 5, seed=3)
    mask = rand_mask(2, 1, nq, nk, p=0.6, seed=4)  # leaves some rows fully masked
    assert_same(run("math", q, k, v, mask=mask, **kw), run(backend, q, k, v, mask=mask, **kw))


@pytest.mark.parametrize("backend", ["chunked", "window"])
@pytest.mark.parametrize("normalize", ["softmax", "sum", "relu"])
@pytest.mark.parametrize("bias_shape", [None, "keys", "full"])
def test_normalisations_masks_bias(backend, normalize, bias_shape):
    nq, nk = 37, 29
    positive = normalize == "sum"  # row sums of raw scores must be > 0
    q = randn(2, 3, nq, 6, seed=5, positive=positive)
    k = randn(2, 3, nk, 6, seed=6, positive=positive)
    v = randn(2, 3, nk, 4, seed=7)
    bias = None
    if bias_shape == "keys":
        bias = randn(1, 3, 1, nk, seed=8, positive=positive)
    elif bias_shape == "full":
        bias = randn(2, 1, nq, nk, seed=8, positive=positive)
    mask = rand_mask(2, 1, 1, nk, p=0.8, seed=9)  # key padding, broadcast over heads and rows
    kw = dict(mask=mask, bias=bias, normalize=normalize, window=(6, 4))
    assert_same(run("math", q, k, v, **kw), run(backend, q, k, v, **kw), what=backend)


def test_chunked_many_tiles_online_softmax(monkeypatch):
    """Small blocks force the online rescaling, tile skipping and partial band tiles."""
    q, k, v = randn(1, 2, 83, 5, seed=1), randn(1, 2, 77, 5, seed=2), randn(1, 2, 77, 3, seed=3)
    plan = chunked.ChunkedPlan
    monkeypatch.setattr(
        chunked, "ChunkedPlan", lambda call: plan(call, q_block=8, k_block=16), raising=True
    )
    bias = randn(1, 2, 83, 77, seed=4) * 3
    for kw in (
        dict(),
        dict(causal=True),
        dict(window=(10, 3)),
        dict(mask=rand_mask(1, 2, 83, 77, p=0.3, seed=5), bias=bias),
        dict(normalize="relu", causal=True),
    ):
        assert_same(run("math", q, k, v, **kw), run("chunked", q, k, v, **kw), what=str(kw))


def test_window_many_groups(monkeypatch):
    monkeypatch.setattr(window, "TILE_BYTES", 1)  # one block per group
    plan = window.WindowPlan
    monkeypatch.setattr(window, "WindowPlan", lambda call: plan(call, block=4))
    q, k, v = randn(2, 2, 41, 5, seed=1), randn(2, 2, 38, 5, seed=2), randn(2, 2, 38, 3, seed=3)
    for kw in (dict(window=(5, 2)), dict(window=3, causal=True), dict(window=(0, 9))):
        assert_same(run("math", q, k, v, **kw), run("window", q, k, v, **kw), what=str(kw))


@pytest.mark.parametrize("backend", ["chunked", "window"])
@pytest.mark.parametrize("normalize", ["softmax", "sum", "relu"])
def test_gradcheck(backend, normalize):
    positive = normalize == "sum"
    q = randn(1, 2, 9, 3, seed=1, positive=positive).requires_grad_()
    k = randn(1, 2, 7, 3, seed=2, positive=positive).requires_grad_()
    v = randn(1, 2, 7, 2, seed=3).requires_grad_()
    bias = randn(1, 2, 1, 7, seed=4, positive=positive).requires_grad_()
    mask = rand_mask(1, 1, 9, 7, p=0.7, seed=5)

    def f(q, k, v, bias):
        return sa.attention(
            q, k, v, bias=bias, mask=mask, window=(2, 3), normalize=normalize, backend=backend
        )

    assert torch.autograd.gradcheck(f, (q, k, v, bias))


@pytest.mark.parametrize("backend", ["chunked", "window"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_against_reference(backend, dtype):
    q, k, v = (randn(2, 2, 50, 16, seed=s, dtype=dtype) for s in (1, 2, 3))
    mask = rand_mask(2, 1, 50, 50, seed=4)
    out = sa.attention(q, k, v, mask=mask, window=(7, 3), backend=backend)
    assert out.dtype == dtype
    ref, _ = reference_attention(q, k, v, mask=mask, window=(7, 3))
    plain, _ = plain_attention(q, k, v, mask=mask, window=(7, 3))
    check_close(out, ref, plain, backend)


@pytest.mark.parametrize("backend", ["chunked", "window"])
def test_fully_masked_rows_give_zeros_and_finite_grads(backend):
    q, k, v = randn(1, 2, 6, 4, seed=1), randn(1, 2, 6, 4, seed=2), randn(1, 2, 6, 4, seed=3)
    mask = torch.ones(1, 1, 6, 6, dtype=torch.bool)
    mask[..., 2, :] = False
    bias = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    bias[..., 4, :] = float("-inf")  # -inf bias masks too
    got = run(backend, q, k, v, mask=mask, bias=bias, window=2)
    assert_same(run("math", q, k, v, mask=mask, bias=bias, window=2), got)
    assert float(got[0][..., [2, 4], :].abs().max()) == 0.0


@pytest.mark.parametrize("backend", ["chunked", "window"])
def test_sum_raises_like_math(backend):
    q, k, v = randn(1, 1, 8, 4, seed=1), randn(1, 1, 8, 4, seed=2), randn(1, 1, 8, 4, seed=3)
    with pytest.raises(ValueError, match="sum to <= 0"):
        sa.attention(-q.abs(), k.abs(), v, normalize="sum", window=2, backend=backend)


@pytest.mark.parametrize("backend", ["chunked", "window"])
@pytest.mark.parametrize(
    ("kw", "words"),
    [
        (dict(dropout_p=0.1), "dropout"),
        (dict(normalize=lambda s, a: torch.softmax(s, -1)), "callable"),
    ],
)
def test_refusals_say_why(backend, kw, words):
    q = randn(1, 1, 8, 4)
    with pytest.raises(ValueError, match=words):
        sa.attention(q, q, q, window=2, backend=backend, **kw)
    refused = sa.explain_dispatch(q, q, q, window=2, **kw).refused
    assert words in refused[backend]


def test_window_refuses_unbounded_band():
    q = randn(1, 1, 8, 4)
    with pytest.raises(ValueError, match="bounded on both sides"):
        sa.attention(q, q, q, causal=True, backend="window")


def test_auto_choices():
    big = torch.zeros(1, 8, 4096, 8)
    assert sa.explain_dispatch(big, big, big).chosen == "sdpa"
    d = sa.explain_dispatch(big, big, big, window=64)
    assert d.chosen == "window"
    assert "band" in d.refused["sdpa"]
    d = sa.explain_dispatch(big, big, big, normalize="relu")
    assert d.chosen == "chunked"
    assert "softmax" in d.refused["sdpa"]
    small = torch.zeros(1, 2, 16, 8)
    assert sa.explain_dispatch(small, small, small, normalize="relu").chosen == "math"
    with native.disabled():  # the pure-torch path passes wide bands over ...
        wide = sa.explain_dispatch(small, small, small, window=12)
    assert wide.chosen != "window" and "covers most" in wide.refused["window"]
    if native.kernel() is not None:  # ... the compiled kernel takes any bounded band
        assert sa.explain_dispatch(small, small, small, window=12).chosen == "window"
    assert "weights" in str(sa.explain_dispatch(small, small, small, return_weights=True))


def test_costs_documented():
    for name in ("math", "sdpa", "chunked", "window"):
        assert "time" in REGISTRY[name].cost and "memory" in REGISTRY[name].cost


@pytest.mark.parametrize("backend", ["chunked", "window"])
def test_two_threads_split_the_work(backend):
    """With 2 torch threads the blocked kernels split groups over Python threads."""
    q, k, v = randn(1, 3, 300, 8, seed=1), randn(1, 3, 300, 8, seed=2), randn(1, 3, 300, 8, seed=3)
    torch.set_num_threads(2)  # the autouse fixture restores it
    for kw in (dict(window=(20, 5)), dict(window=9, normalize="relu"), dict(causal=True)):
        if not serves(backend, **kw):
            continue
        assert_same(run("math", q, k, v, **kw), run(backend, q, k, v, **kw), what=str(kw))
