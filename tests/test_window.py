"""The window backend at its edges: band shapes, lengths that are no multiple of the block,
cross-attention lengths, rows outside the keys, and a long sequence against the math path."""

from __future__ import annotations

import pytest
import torch

import selfattention as sa
from conftest import rand_mask, randn
from selfattention.functional.backends import window
from test_backends import assert_same, run

pytestmark = pytest.mark.usefixtures("window_path")  # each test on both implementations


@pytest.mark.parametrize(
    "band",
    [(0, 0), (1, 0), (0, 1), (2, 7), (7, 2), (16, 16), (17, 15), (31, 0), (0, 33), (100, 100)],
)
@pytest.mark.parametrize("lengths", [(50, 50), (64, 64), (5, 70), (70, 5), (33, 96)])
def test_band_shapes_and_lengths(band, lengths):
    nq, nk = lengths
    q, k, v = randn(1, 2, nq, 4, seed=1), randn(1, 2, nk, 4, seed=2), randn(1, 2, nk, 3, seed=3)
    assert_same(run("math", q, k, v, window=band), run("window", q, k, v, window=band))


@pytest.mark.parametrize("block", [1, 3, 8, 32])
def test_any_block_size(block, monkeypatch):
    plan = window.WindowPlan
    monkeypatch.setattr(window, "WindowPlan", lambda call: plan(call, block=block))
    q, k, v = randn(2, 1, 45, 4, seed=1), randn(2, 1, 45, 4, seed=2), randn(2, 1, 45, 3, seed=3)
    mask = sa.masks.padding([45, 30], 45)
    for kw in (dict(window=(4, 9)), dict(window=6, causal=True, mask=mask)):
        assert_same(run("math", q, k, v, **kw), run("window", q, k, v, **kw), what=str(kw))


def test_queries_past_the_keys_get_zeros():
    """n_q > n_k + left: the last queries see no key at all (cross-attention lengths)."""
    q, k, v = randn(1, 1, 30, 4, seed=1), randn(1, 1, 10, 4, seed=2), randn(1, 1, 10, 4, seed=3)
    got = run("window", q, k, v, window=(3, 3))
    assert_same(run("math", q, k, v, window=(3, 3)), got)
    assert float(got[0][..., 13:, :].abs().max()) == 0.0


def test_window_equals_explicit_band_mask():
    q, k, v = randn(1, 2, 40, 4, seed=1), randn(1, 2, 40, 4, seed=2), randn(1, 2, 40, 4, seed=3)
    band = sa.masks.window(40, 40, 5, 2)
    got = sa.attention(q, k, v, window=(5, 2), backend="window")
    ref = sa.attention(q, k, v, mask=band, backend="math")
    assert float((got - ref).abs().max()) < 1e-12


def test_bias_gradient_through_spans():
    nq = nk = 26
    q, k, v = randn(1, 2, nq, 4, seed=1), randn(1, 2, nk, 4, seed=2), randn(1, 2, nk, 3, seed=3)
    for shape in [(1, 2, 1, nk), (1, 1, nq, 1), (1, 2, nq, nk), (nk,)]:
        bias = randn(*shape, seed=4)
        mask = rand_mask(1, 2, nq, nk, p=0.8, seed=5)
        kw = dict(window=(3, 6), bias=bias, mask=mask)
        assert_same(run("math", q, k, v, **kw), run("window", q, k, v, **kw), what=str(shape))


def test_long_sequence_float32():
    n, w = 3000, 40
    q, k, v = (randn(1, 2, n, 16, seed=s, dtype=torch.float32) for s in (1, 2, 3))
    got = sa.attention(q, k, v, window=w, backend="window")
    ref = sa.attention(q.double(), k.double(), v.double(), window=w, backend="chunked")
    assert float((got.double() - ref).abs().max()) < 1e-5


def test_auto_takes_window_and_explains():
    q = torch.zeros(1, 2, 2048, 8)
    d = sa.explain_dispatch(q, q, q, window=(128, 0))
    assert d.chosen == "window"
    d = sa.explain_dispatch(q, q, q, causal=True)
    assert "bounded on both sides" in d.refused.get("window", "bounded on both sides")


@pytest.mark.parametrize("threads", [1, 2])
def test_direct_layout_many_groups(threads, monkeypatch):
    """n a multiple of the block: spans read the inputs in place, edges from padded buffers."""
    monkeypatch.setattr(window, "TILE_BYTES", 4096)
    torch.set_num_threads(threads)  # the autouse fixture restores it
    n = 256
    q, k, v = randn(2, 3, n, 8, seed=1), randn(2, 3, n, 8, seed=2), randn(2, 3, n, 8, seed=3)
    call = sa.functional.call.make_call(
        q, k, v, mask=None, bias=None, causal=False, window=(20, 5), scale=None,
        normalize="softmax", dropout_p=0.0, return_weights=False,
    )  # fmt: skip
    assert window.WindowPlan(call).direct
    for kw in (
        dict(window=(20, 5)),
        dict(window=(20, 5), normalize="relu"),
        dict(window=(3, 40), mask=rand_mask(2, 1, 1, n, seed=4)),
    ):
        assert_same(run("math", q, k, v, **kw), run("window", q, k, v, **kw), what=str(kw))


@pytest.mark.parametrize("keep", [True, False])
def test_training_keeps_or_recomputes_the_weights(keep, monkeypatch, window_path):
    """Softmax over a plain band in training keeps its weights for backward (KEEP_FACTOR > 0)
    or recomputes them from the log-sum-exp (0); both equal the math path in float64, with
    return_lse's gradient too, and the kept weights are freed by backward."""
    monkeypatch.setattr(window.ops, "KEEP_FACTOR", 2 if keep else 0)
    window.Workspace.clear()
    plans = []
    monkeypatch.setattr(
        window, "WindowPlan", lambda call: plans.append(window_plan(call)) or plans[-1]
    )
    n = 96
    q, k, v = randn(1, 2, n, 8, seed=1), randn(1, 2, n, 8, seed=2), randn(1, 2, n, 8, seed=3)
    assert_same(run("math", q, k, v, window=(9, 4)), run("window", q, k, v, window=(9, 4)))
    if window_path == "torch":  # the plan object belongs to the pure-torch path
        plan = plans[-1]
        assert plan.can_keep is keep and plan.kept is None  # handed back after backward
    assert (window.Workspace._spare is not None) is keep  # ... for the next call to reuse
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out, lse = sa.attention(*leaves, window=(9, 4), backend="window", return_lse=True)
    ref_leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    ref_out, ref_lse = sa.attention(*ref_leaves, window=(9, 4), backend="math", return_lse=True)
    assert float((lse - ref_lse).detach().abs().max()) < 1e-12
    (out.sum() + lse.sin().sum()).backward()
    (ref_out.sum() + ref_lse.sin().sum()).backward()
    for a, b in zip(leaves, ref_leaves, strict=True):  # the second call reused the buffer
        assert float((a.grad - b.grad).abs().max()) < 1e-10
    window.Workspace.clear()
    assert window.Workspace._spare is None


def test_no_weights_kept_without_gradients_or_with_padding_rows():
    q = randn(1, 2, 96, 8, seed=1)
    with torch.no_grad():
        plan = window_plan(make(q, window=(9, 4)))
        assert plan.can_keep  # it could, but forward without autograd keeps nothing
        sa.attention(q, q, q, window=(9, 4), backend="window")
    q = randn(1, 2, 90, 8, seed=1)  # 90 rows: the last block has padding rows
    assert not window_plan(make(q, window=(9, 4))).can_keep


window_plan = window.WindowPlan


def make(q, **kw):
    return sa.functional.call.make_call(
        q, q, q, mask=None, bias=None, causal=False, scale=None,
        normalize="softmax", dropout_p=0.0, return_weights=False, **kw,
    )  # fmt: skip
