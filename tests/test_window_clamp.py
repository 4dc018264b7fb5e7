"""A window at least as wide as the sequence is full attention, at full attention's cost.

Windows are clamped to the sequence (left <= n_q - 1, right <= n_k - 1): a wider side sees
nothing more. Before, ``backend="window"`` with n=40 and window=10**5 built key spans of 2·10**5
rows and ran for minutes, and a window >= 2**63 raised a raw OverflowError.
"""

from __future__ import annotations

import pytest
import torch

import selfattention as sa
from conftest import randn
from selfattention.functional.backends import window
from selfattention.functional.call import make_call
from test_backends import assert_same, run

N = 40
HUGE = [10**5, 2**63 - 1, 2**63, 2**64, (2**63, 0), (0, 2**64), (None, 2**70)]


def call_for(q, k, v, **kw):
    args = dict(mask=None, bias=None, causal=False, window=None, scale=None)
    args.update(normalize="softmax", dropout_p=0.0, return_weights=False)
    return make_call(q, k, v, **{**args, **kw})


def qkv(nq=N, nk=N):
    return randn(1, 2, nq, 4, seed=1), randn(1, 2, nk, 4, seed=2), randn(1, 2, nk, 3, seed=3)


def test_window_backend_work_is_bounded_by_the_sequence():
    """The window plan's key span (keys scored per query block) stays O(n), not O(window)."""
    q, k, v = qkv()
    plan = window.WindowPlan(call_for(q, k, v, window=10**5))
    assert plan.span <= 2 * N + 2 * plan.block
    assert plan.nb * plan.block <= 2 * N + 2 * plan.block  # rows per head, padding included


@pytest.mark.parametrize("win", [10**5, 2**63, 2**64])
@pytest.mark.parametrize(("nq", "nk"), [(N, N), (7, N), (N, 5)])
def test_huge_window_equals_full_attention_values_and_grads(win, nq, nk):
    q, k, v = qkv(nq, nk)
    assert_same(run("math", q, k, v), run("window", q, k, v, window=win), what=str(win))


@pytest.mark.parametrize("win", HUGE)
@pytest.mark.parametrize("causal", [False, True])
def test_every_backend_clamps_a_huge_window(win, causal):
    q, k, v = qkv()
    left, right = win if isinstance(win, tuple) else (win, win)
    # What the window means, with the sides clamped by hand.
    clamp = [None if side is None else min(side, N - 1) for side in (left, right)]
    band = sa.masks.window(N, N, *clamp)
    ref = sa.attention(q, k, v, mask=band, causal=causal, backend="math")
    for backend in ["auto", *sa.functional.backends.REGISTRY]:
        try:
            sa.explain_dispatch(q, k, v, window=win, causal=causal, backend=backend)
        except ValueError as err:
            assert "cannot serve" in str(err)
            continue
        got = sa.attention(q, k, v, window=win, causal=causal, backend=backend)
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_auto_treats_a_window_wider_than_the_sequence_as_none():
    q, k, v = qkv()
    for win in (N - 1, 10**5, 2**64):
        assert sa.explain_dispatch(q, k, v, window=win) == sa.explain_dispatch(q, k, v)
    narrow = sa.explain_dispatch(q, k, v, window=N - 2)
    assert "band" in narrow.refused["sdpa"]  # a real window still steers auto


def test_call_stores_the_clamped_window():
    q, k, v = qkv(7, N)
    assert call_for(q, k, v, window=2**64).window == (6, N - 1)
    assert call_for(q, k, v, window=(None, 3)).window == (None, 3)
    assert not call_for(q, k, v, window=2**64).windowed
    assert call_for(q, k, v, window=(5, N - 1)).windowed


def test_mask_builder_clamps_huge_sides():
    assert bool(sa.masks.window(5, 6, 2**63, 2**64).all())
    assert torch.equal(sa.masks.window(5, 6, 2**63, 0), sa.masks.causal(5, 6))


@pytest.mark.parametrize("bad", [-1, (-1, 2), 1.5, (2, 3.0), float("inf"), True, (True, 1), "3"])
def test_bad_windows_raise_a_value_error_naming_window(bad):
    q, k, v = qkv()
    with pytest.raises(ValueError, match="window"):
        sa.attention(q, k, v, window=bad, backend="window")
    with pytest.raises(ValueError, match="window"):
        sa.nn.SelfAttention(8, heads=2, window=bad)


def test_module_with_a_huge_window_is_full_attention():
    torch.manual_seed(0)
    attn = sa.nn.SelfAttention(8, heads=2, window=2**63).double()
    x = torch.randn(2, N, 8, dtype=torch.float64)
    full = sa.nn.SelfAttention(8, heads=2).double()
    full.load_state_dict(attn.state_dict())
    torch.testing.assert_close(attn(x), full(x))
