"""Three words, two-dimensional vectors, numbers worked out by hand (closed forms with e).

    X = [[1, 0],     word 0
         [0, 1],     word 1
         [1, 1]]     word 2

    X Xᵀ = [[1, 0, 1],
            [0, 1, 1],
            [1, 1, 2]]

Softmax of row 0, [1, 0, 1], is [e, 1, e] / (2e + 1), so y_0 = (e·x_0 + x_1 + e·x_2) / (2e + 1)
= [2e, 1 + e] / (2e + 1); the other rows follow the same way.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import selfattention as sa
from selfattention import reference
from selfattention.functional import backends

E = math.e
X = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]

SOFTMAX_W = [
    [E / (2 * E + 1), 1 / (2 * E + 1), E / (2 * E + 1)],
    [1 / (2 * E + 1), E / (2 * E + 1), E / (2 * E + 1)],
    [1 / (2 + E), 1 / (2 + E), E / (2 + E)],  # [e, e, e²] / (2e + e²)
]
SOFTMAX_Y = [
    [2 * E / (2 * E + 1), (1 + E) / (2 * E + 1)],
    [(1 + E) / (2 * E + 1), 2 * E / (2 * E + 1)],
    [(1 + E) / (2 + E), (1 + E) / (2 + E)],
]
# "relevances /= sum(relevances)": rows [1,0,1]/2, [0,1,1]/2, [1,1,2]/4.
SUM_Y = [[1.0, 0.5], [0.5, 1.0], [0.75, 0.75]]
# relu(s) / 3 (every key allowed): y_0 = (x_0 + x_2)/3, y_1 = (x_1 + x_2)/3,
# y_2 = (x_0 + x_1 + 2x_2)/3.
RELU_Y = [[2 / 3, 1 / 3], [1 / 3, 2 / 3], [1.0, 1.0]]
# Causal: word 0 sees itself; word 1 sees [0, 1] with scores [0, 1]; word 2 sees everything.
CAUSAL_Y = [[1.0, 0.0], [1 / (1 + E), E / (1 + E)], SOFTMAX_Y[2]]
# Window (0, 0): every word sees only itself, so Y = X.
# Window (1, 0): word 1 as in causal; word 2 sees words 1, 2 with scores [1, 2] -> [1, e]/(1+e),
# so y_2 = (x_1 + e·x_2)/(1 + e) = [e/(1 + e), 1].
WINDOW_Y = [[1.0, 0.0], [1 / (1 + E), E / (1 + E)], [E / (1 + E), 1.0]]

BACKENDS = ["auto", *sorted(backends.REGISTRY)]


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)[None, None]  # (1, 1, n, d)


def test_reference_self_attention_by_hand():
    y, w = reference.self_attention(X, return_weights=True)
    np.testing.assert_allclose(w, SOFTMAX_W, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(y, SOFTMAX_Y, rtol=1e-15, atol=1e-15)
    np.testing.assert_array_equal(reference.scores(X, X), [[1, 0, 1], [0, 1, 1], [1, 1, 2]])


def test_reference_reweight_by_hand():
    # Y = W X with W = "average of word and its right neighbour".
    w = [[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]]
    np.testing.assert_array_equal(reference.reweight(X, w), [[0.5, 0.5], [0.5, 1.0], [1.0, 1.0]])


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, SOFTMAX_Y),
        ({"normalize": "sum"}, SUM_Y),
        ({"normalize": "relu"}, RELU_Y),
        ({"causal": True}, CAUSAL_Y),
        ({"window": (0, 0)}, X),
        ({"window": (1, 0)}, WINDOW_Y),
    ],
    ids=["softmax", "sum", "relu", "causal", "window0", "window1-0"],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_paths_by_hand(kw, expected, backend):
    x = t(X)
    try:
        sa.explain_dispatch(x, x, x, backend=backend, scale=1.0, **kw)
    except ValueError as err:
        pytest.skip(str(err))
    out = sa.attention(x, x, x, scale=1.0, backend=backend, **kw)
    torch.testing.assert_close(out, t(expected), rtol=1e-15, atol=2e-16)
    ref, _ = reference.attention(X, X, X, scale=1.0, **kw)
    np.testing.assert_allclose(ref, expected, rtol=1e-15, atol=2e-16)


def test_default_scale_is_one_over_sqrt_d():
    # With d = 2 the scores are X Xᵀ / √2: row 2 is [1, 1, 2]/√2 -> weights [1, 1, a]/(2 + a),
    # a = exp(1/√2).
    a = math.exp(1 / math.sqrt(2))
    x = t(X)
    out = sa.attention(x, x, x)
    torch.testing.assert_close(out[0, 0, 2], torch.tensor([(1 + a) / (2 + a)] * 2).double())


def test_masked_key_and_empty_row_by_hand():
    # Word 0 may not see word 2; word 1 sees nothing (zero row); word 2 sees all.
    mask = torch.tensor([[True, True, False], [False, False, False], [True, True, True]])
    x = t(X)
    out, w = sa.attention(x, x, x, mask=mask, scale=1.0, return_weights=True)
    # Row 0: scores [1, 0] -> [e, 1]/(e + 1), y_0 = [e, 1]/(e + 1).
    expected = [[E / (E + 1), 1 / (E + 1)], [0.0, 0.0], SOFTMAX_Y[2]]
    torch.testing.assert_close(out, t(expected), rtol=1e-15, atol=2e-16)
    assert w[0, 0, 1].tolist() == [0.0, 0.0, 0.0]
    ref, _ = reference.attention(X, X, X, mask=mask.numpy(), scale=1.0)
    np.testing.assert_allclose(ref, expected, rtol=1e-15, atol=2e-16)


def test_projected_by_hand():
    # Wq = Wk = I and Wv swaps the two coordinates: Y = softmax(X Xᵀ / √2) X P.
    wv = [[0.0, 1.0], [1.0, 0.0]]
    y, _ = reference.projected_self_attention(X, np.eye(2), np.eye(2), wv, scale=1.0)
    np.testing.assert_allclose(y, np.asarray(SOFTMAX_Y)[:, ::-1], rtol=1e-15)
    # Two identical heads, Wo averages them back: same as one head.
    wo = np.vstack([np.eye(2), np.eye(2)]) / 2
    y2, ws = reference.multi_head_self_attention(X, [np.eye(2)] * 2, [np.eye(2)] * 2, [wv] * 2, wo)
    y1, _ = reference.projected_self_attention(X, np.eye(2), np.eye(2), wv)
    np.testing.assert_allclose(y2, y1, rtol=1e-15)
    assert len(ws) == 2


def test_additive_scores_by_hand():
    # hidden = 1, Wq = [[1, 0]], Wk = [[0, 1]], v = [2]: s_ij = 2 tanh(q_i[0] + k_j[1]).
    s = reference.additive_scores(X, X, [[1.0, 0.0]], [[0.0, 1.0]], [2.0])
    expected = [[2 * math.tanh(a + b) for b in (0.0, 1.0, 1.0)] for a in (1.0, 0.0, 1.0)]
    np.testing.assert_allclose(s, expected, rtol=1e-15)


def test_positions_by_hand():
    pe = reference.sinusoidal_positions(3, 4)
    # PE[p] = [sin p, cos p, sin(p/100), cos(p/100)] for d = 4 (10000^(2/4) = 100).
    expected = [[math.sin(p), math.cos(p), math.sin(p / 100), math.cos(p / 100)] for p in range(3)]
    np.testing.assert_allclose(pe, expected, rtol=1e-15, atol=1e-16)
    # RoPE with d = 2 rotates (x0, x1) by p radians.
    r = reference.rotary(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    c1, s1, c2, s2 = math.cos(1), math.sin(1), math.cos(2), math.sin(2)
    np.testing.assert_allclose(r, [[1, 0], [c1, s1], [-s2, c2]], rtol=1e-15, atol=1e-16)
    # ALiBi, 2 heads: slopes 2^-4, 2^-8; bias = -slope |i - j|.
    b = reference.alibi_bias(2, 3)
    np.testing.assert_array_equal(b[0], -np.array([[0, 1, 2], [1, 0, 1], [2, 1, 0]]) / 16)
    np.testing.assert_array_equal(reference.alibi_slopes(2), [1 / 16, 1 / 256])


def test_ladder_cli_prints_the_hand_computed_numbers(capsys):
    from selfattention.apps.ladder import rungs
    from selfattention.cli import main

    ladder = rungs(np.array(X))
    assert len(ladder) == 7
    np.testing.assert_allclose(ladder[2]["tables"]["outputs Y"], SOFTMAX_Y, rtol=1e-15)
    np.testing.assert_allclose(ladder[1]["tables"]["outputs Y"], SUM_Y, rtol=1e-15)
    np.testing.assert_allclose(ladder[6]["tables"]["outputs Y"], WINDOW_Y, rtol=1e-15)
    assert main(["ladder", "--digits", "4"]) == 0
    text = capsys.readouterr().out
    for value in (*SOFTMAX_Y[0], SOFTMAX_Y[2][0], E / (1 + E)):
        assert f"{value:.4f}" in text
    assert "Y = softmax(X Xᵀ) X" in text and "[head_1 … head_H]" in text
    assert main(["ladder", "--vectors", "1,0 0,1"]) == 2
    assert main(["ladder", "--rung", "9"]) == 2
