"""The NumPy float64 ladder: each rung against an independent computation or an identity."""

from __future__ import annotations

import ast
import cmath
import math
from pathlib import Path

import numpy as np
import pytest

from selfattention import reference as R

RNG = np.random.default_rng(0)


def rand(*shape):
    return RNG.standard_normal(shape)


def softmax_loop(row):
    m = max(row)
    e = [math.exp(s - m) for s in row]
    return [x / sum(e) for x in e]


def test_reference_imports_no_torch():
    folder = Path(R.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                allowed = {"numpy", "selfattention", "__future__", "math", "collections"}
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
                assert not name.startswith(("selfattention.functional", "selfattention.nn"))


def test_self_attention_matches_loops():
    x = rand(5, 3)
    y = R.self_attention(x)
    for i in range(5):
        w = softmax_loop([float(x[i] @ x[j]) for j in range(5)])
        expected = sum(w[j] * x[j] for j in range(5))
        np.testing.assert_allclose(y[i], expected, rtol=1e-13)
    np.testing.assert_allclose(y, R.attention(x, x, x, scale=1.0)[0], rtol=1e-15)
    np.testing.assert_allclose(y, R.reweight(x, R.normalize(R.scores(x, x))), rtol=1e-15)


def test_integer_inputs_are_accepted():
    y = R.self_attention([[1, 0], [0, 1]])
    assert y.dtype == np.float64


def test_batched_equals_per_item():
    q, k, v = rand(2, 3, 4, 5), rand(2, 3, 6, 5), rand(2, 3, 6, 2)
    mask = RNG.random((2, 1, 4, 6)) < 0.7
    bias = rand(3, 4, 6)
    out, w = R.attention(q, k, v, mask=mask, bias=bias, window=(2, 1))
    assert out.shape == (2, 3, 4, 2) and w.shape == (2, 3, 4, 6)
    for b in range(2):
        for h in range(3):
            o1, w1 = R.attention(q[b, h], k[b, h], v[b, h], mask=mask[b, 0], bias=bias[h],
                                 window=(2, 1))  # fmt: skip
            np.testing.assert_allclose(out[b, h], o1, rtol=1e-15)
            np.testing.assert_allclose(w[b, h], w1, rtol=1e-15)


def test_attention_loops_with_mask_bias_window_causal():
    q, k, v = rand(6, 3), rand(8, 3), rand(8, 2)
    mask = RNG.random((6, 8)) < 0.8
    mask[4] = False
    bias = rand(6, 8)
    bias[1, 2] = -np.inf
    out, w = R.attention(q, k, v, mask=mask, bias=bias, window=(3, 1), causal=True, scale=0.5)
    for i in range(6):
        keys = [j for j in range(8) if mask[i, j] and i - 3 <= j <= i and bias[i, j] > -np.inf]
        if not keys:
            assert (w[i] == 0).all() and (out[i] == 0).all()
            continue
        p = softmax_loop([0.5 * float(q[i] @ k[j]) + bias[i, j] for j in keys])
        expected_w = np.zeros(8)
        expected_w[keys] = p
        np.testing.assert_allclose(w[i], expected_w, rtol=1e-13, atol=1e-300)
        np.testing.assert_allclose(out[i], expected_w @ v, rtol=1e-13)


def test_window_int_is_symmetric_and_none_sides():
    q = rand(7, 2)
    a = R.attention(q, q, q, window=2)[1]
    np.testing.assert_array_equal(a, R.attention(q, q, q, window=(2, 2))[1])
    np.testing.assert_array_equal(
        R.attention(q, q, q, window=(None, 0))[1], R.attention(q, q, q, causal=True)[1]
    )
    np.testing.assert_array_equal(R.attention(q, q, q, window=(None, None))[1],
                                  R.attention(q, q, q)[1])  # fmt: skip


def test_neg_inf_bias_equals_mask():
    q, k, v = rand(4, 3), rand(5, 3), rand(5, 3)
    mask = RNG.random((4, 5)) < 0.6
    mask[2] = False
    bias = np.where(mask, 0.0, -np.inf)
    a, wa = R.attention(q, k, v, mask=mask)
    b, wb = R.attention(q, k, v, bias=bias)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(wa, wb)
    assert (a[2] == 0).all()


@pytest.mark.parametrize("kind", ["softmax", "sum", "relu"])
def test_normalize_rows(kind):
    s = np.abs(rand(4, 6)) + 0.1
    mask = RNG.random((4, 6)) < 0.6
    mask[0] = False
    mask[1] = True
    w = R.normalize(s, kind, mask)
    assert (w[~mask] == 0).all() and (w[0] == 0).all()
    for i in range(1, 4):
        keys = np.flatnonzero(mask[i])
        if kind == "softmax":
            expected = softmax_loop(list(s[i, keys]))
        elif kind == "sum":
            expected = s[i, keys] / s[i, keys].sum()
        else:
            expected = s[i, keys] / len(keys)
        np.testing.assert_allclose(w[i, keys], expected, rtol=1e-14)


def test_softmax_is_shift_invariant_and_handles_large_scores():
    s = rand(3, 5)
    np.testing.assert_allclose(R.normalize(s + 1000.0), R.normalize(s), rtol=1e-12)
    assert np.isfinite(R.normalize(s * 1e6)).all()


def test_relu_counts_allowed_keys_and_callable():
    s = np.array([[1.0, -1.0, 2.0, 3.0]])
    mask = np.array([[True, True, True, False]])
    np.testing.assert_allclose(R.normalize(s, "relu", mask), [[1 / 3, 0, 2 / 3, 0]])
    w = R.normalize(s, lambda sc, allowed: np.ones_like(sc), mask)
    np.testing.assert_array_equal(w, [[1, 1, 1, 0]])


def test_projected_and_multi_head():
    x = rand(2, 5, 4)  # batched words
    wq, wk, wv = rand(3, 4, 2), rand(3, 4, 2), rand(3, 4, 3)
    wo = rand(9, 4)
    y, ws = R.multi_head_self_attention(x, wq, wk, wv, wo)
    y_list, _ = R.multi_head_self_attention(x, list(wq), list(wk), list(wv), wo)
    np.testing.assert_array_equal(y, y_list)
    heads = []
    for h in range(3):
        q, k, v = x @ wq[h], x @ wk[h], x @ wv[h]
        w = R.normalize(R.scores(q, k, 1 / math.sqrt(2)))
        np.testing.assert_allclose(ws[h], w, rtol=1e-14)
        heads.append(w @ v)
    np.testing.assert_allclose(y, np.concatenate(heads, -1) @ wo, rtol=1e-13)
    _, w1 = R.projected_self_attention(x, wq[0], wk[0], wv[0], causal=True)
    assert (np.triu(w1[0], 1) == 0).all()


def test_additive_scores_loop():
    q, k = rand(3, 4), rand(5, 2)
    wq, wk, v = rand(6, 4), rand(6, 2), rand(6)
    s = R.additive_scores(q, k, wq, wk, v)
    for i in range(3):
        for j in range(5):
            assert s[i, j] == pytest.approx(float(v @ np.tanh(wq @ q[i] + wk @ k[j])), rel=1e-13)


def test_sinusoidal_matches_formula_and_odd_d():
    for d in (6, 7):
        pe = R.sinusoidal_positions(11, d)
        for p in range(11):
            for c in range(d):
                i2 = c - c % 2
                f = math.sin if c % 2 == 0 else math.cos
                assert pe[p, c] == pytest.approx(f(p / 10000 ** (i2 / d)), abs=1e-15)


def test_rotary_is_complex_rotation_of_half_pairs():
    x = rand(2, 7, 8)
    out = R.rotary(x)
    for p in range(7):
        for m in range(4):
            z = complex(x[1, p, m], x[1, p, m + 4]) * cmath.exp(1j * p * 10000 ** (-2 * m / 8))
            assert out[1, p, m] == pytest.approx(z.real, abs=1e-14)
            assert out[1, p, m + 4] == pytest.approx(z.imag, abs=1e-14)


def test_rotary_scores_depend_only_on_offset():
    q, k = rand(8), rand(8)

    def score(p, r):
        qs = R.rotary(np.tile(q, (12, 1)))[p]
        ks = R.rotary(np.tile(k, (12, 1)))[r]
        return float(qs @ ks)

    assert score(5, 2) == pytest.approx(score(9, 6), rel=1e-12)
    assert score(0, 0) == pytest.approx(float(q @ k), rel=1e-12)
    np.testing.assert_allclose(np.linalg.norm(R.rotary(np.tile(q, (4, 1))), axis=-1),
                               np.linalg.norm(q))  # fmt: skip


def test_alibi_slopes_as_in_the_paper():
    np.testing.assert_allclose(R.alibi_slopes(8), [2.0**-k for k in range(1, 9)])
    # Non-power of two: 8 slopes of 8 heads, then every other slope of 16 heads.
    expected_12 = [2.0**-k for k in range(1, 9)] + [2.0 ** -(k + 0.5) for k in range(0, 4)]
    np.testing.assert_allclose(R.alibi_slopes(12), expected_12, rtol=1e-15)
    b = R.alibi_bias(12, 4, 6)
    assert b.shape == (12, 4, 6)
    assert b[11, 3, 0] == pytest.approx(-3 * 2**-3.5)
    assert (b <= 0).all() and (np.diagonal(b, axis1=1, axis2=2) == 0).all()


def test_masks():
    np.testing.assert_array_equal(R.causal_mask(2, 3), [[1, 0, 0], [1, 1, 0]])
    np.testing.assert_array_equal(R.window_mask(3, 4, left=0, right=1),
                                  [[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]])  # fmt: skip
    np.testing.assert_array_equal(R.window_mask(3, None, left=1), R.window_mask(3, 3, 1, None))
    np.testing.assert_array_equal(R.padding_mask([1, 3]), [[1, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(R.padding_mask([0], 2), [[0, 0]])
