"""Every bad input gets a clear ValueError/TypeError naming the argument (torch and reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import selfattention as sa
from selfattention import reference


def qkv(i=4, j=4, d=3, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(2, 2, n, d, generator=g, dtype=dtype) for n in (i, j, j))


Q, K, V = qkv()
X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])

TORCH_CASES = [
    # (id, args (q, k, v), kwargs, error, message regex)
    ("head-dim", (Q, torch.zeros(2, 2, 4, 5), V), {}, ValueError, r"q and k must share head_dim"),
    ("kv-len", (Q, K, torch.zeros(2, 2, 5, 3)), {}, ValueError, r"same sequence length"),
    ("batch", (Q, torch.zeros(1, 2, 4, 3), V), {}, ValueError, r"must share \(batch, heads\)"),
    ("3-d", (Q[0], K[0], V[0]), {}, ValueError, r"q must have shape \(batch, heads, seq, head_d"),
    ("not-tensor", (X, K, V), {}, TypeError, r"q must be a torch.Tensor, got ndarray"),
    ("int-q", (Q.long(), K, V), {}, TypeError, r"q must be a floating-point tensor, got dtype"),
    ("int-v", (Q, K, V.int()), {}, TypeError, r"v must be a floating-point tensor"),
    ("empty-q", (Q[:, :, :0], K, V), {}, ValueError, r"q must be non-empty, got shape"),
    ("empty-k", (Q, K[:, :, :0], V[:, :, :0]), {}, ValueError, r"k must be non-empty"),
    ("dtypes", (Q, K.double(), V), {}, TypeError, r"q, k, v must share a dtype"),
    ("mask-shape", (Q, K, V), {"mask": torch.ones(3, 4, dtype=torch.bool)}, ValueError,
     r"mask of shape \(3, 4\) cannot broadcast to \(batch, heads, q_len, k_len\)"),
    ("mask-5d", (Q, K, V), {"mask": torch.ones(1, 1, 1, 4, 4, dtype=torch.bool)}, ValueError,
     r"mask of shape .* cannot broadcast"),
    ("float-mask", (Q, K, V), {"mask": torch.zeros(4, 4)}, TypeError,
     r"mask must be bool \(True = may attend\), got dtype torch.float32; pass an additive"),
    ("int-mask", (Q, K, V), {"mask": torch.ones(4, 4, dtype=torch.int64)}, TypeError,
     r"mask must be bool"),
    ("list-mask", (Q, K, V), {"mask": [[True] * 4] * 4}, TypeError, r"mask must be a bool torch"),
    ("bool-bias", (Q, K, V), {"bias": torch.ones(4, 4, dtype=torch.bool)}, TypeError,
     r"bias must be a floating-point tensor"),
    ("bias-shape", (Q, K, V), {"bias": torch.zeros(4, 5)}, ValueError, r"bias of shape \(4, 5\)"),
    ("bias-nan", (Q, K, V), {"bias": torch.full((4, 4), torch.nan)}, ValueError,
     r"bias must be finite or -inf"),
    ("bias-posinf", (Q, K, V), {"bias": torch.full((4,), torch.inf)}, ValueError,
     r"bias must be finite or -inf"),
    ("window-neg", (Q, K, V), {"window": -1}, ValueError,
     r"window left must be a non-negative int or None, got -1"),
    ("window-neg-right", (Q, K, V), {"window": (2, -3)}, ValueError, r"window right .* got -3"),
    ("window-float", (Q, K, V), {"window": 2.5}, ValueError, r"window must be an int or a"),
    ("window-triple", (Q, K, V), {"window": (1, 2, 3)}, ValueError, r"\(left, right\) pair"),
    ("window-bool", (Q, K, V), {"window": True}, ValueError, r"window must be an int"),
    ("normalize", (Q, K, V), {"normalize": "sparsemax"}, ValueError,
     r"normalize must be one of \['relu', 'softmax', 'sum'\] or a callable.*'sparsemax'"),
    ("normalize-type", (Q, K, V), {"normalize": 3}, ValueError, r"normalize must be one of"),
    ("normalize-shape", (Q, K, V), {"normalize": lambda s, a: s.sum(-1)}, ValueError,
     r"normalize callable must return weights of shape \(2, 2, 4, 4\)"),
    ("backend", (Q, K, V), {"backend": "flash9"}, ValueError,
     r"backend must be 'auto' or one of \[.*'math'.*\], got 'flash9'"),
    ("backend-type", (Q, K, V), {"backend": None}, ValueError, r"backend must be a string"),
    ("sdpa-weights-dropout", (Q, K, V),
     {"backend": "sdpa", "return_weights": True, "dropout_p": 0.1}, ValueError,
     r"backend='sdpa' cannot serve this call: .*dropout"),
    ("weights-rows-alone", (Q, K, V), {"weights_rows": [0]}, ValueError,
     r"weights_rows .* return_weights=True"),
    ("weights-rows-range", (Q, K, V), {"return_weights": True, "weights_rows": [99]}, ValueError,
     r"weights_rows must index the"),
    ("lse-relu", (Q, K, V), {"return_lse": True, "normalize": "relu"}, ValueError,
     r"return_lse is softmax's log-sum-exp"),
    ("sdpa-relu", (Q, K, V), {"backend": "sdpa", "normalize": "relu"}, ValueError,
     r"backend='sdpa' cannot serve this call: .*only computes softmax"),
    ("causal-type", (Q, K, V), {"causal": 1}, TypeError, r"causal must be a bool, got 1"),
    ("scale", (Q, K, V), {"scale": float("nan")}, ValueError, r"scale must be a finite number"),
    ("scale-str", (Q, K, V), {"scale": "1"}, ValueError, r"scale must be a finite number"),
    ("dropout", (Q, K, V), {"dropout_p": 1.0}, ValueError, r"dropout_p must be in \[0, 1\)"),
    ("sum-nonpositive", (Q, K, V), {"normalize": "sum"}, ValueError,
     r'normalize="sum" needs every row of scores to sum to > 0'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [c[1:] for c in TORCH_CASES],
    ids=[c[0] for c in TORCH_CASES],
)
def test_torch_bad_input(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        sa.attention(*args, **kwargs)


def test_sum_nonpositive_row_in_every_backend_that_takes_sum():
    q, k, v = qkv()
    q, k = q.abs() + 0.1, k.abs() + 0.1
    q[0, 0, 1] = -q[0, 0, 1]  # row 1 of head 0: all scores negative
    for backend in sa.functional.backends.REGISTRY:
        try:
            sa.explain_dispatch(q, k, v, backend=backend, normalize="sum")
        except ValueError:
            continue
        with pytest.raises(ValueError, match=r"1 row\(s\) sum to <= 0"):
            sa.attention(q, k, v, normalize="sum", backend=backend)


def test_numpy_integer_window_is_accepted():
    out = sa.attention(Q, K, V, window=(np.int64(1), np.int32(0)))
    torch.testing.assert_close(out, sa.attention(Q, K, V, window=(1, 0)))


def test_explain_dispatch_bad_keyword():
    with pytest.raises(TypeError, match=r"unexpected argument\(s\) \['windw'\]"):
        sa.explain_dispatch(Q, K, V, windw=3)


REFERENCE_CASES = [
    ("head-dim", lambda: reference.attention(X, np.ones((3, 3)), X), ValueError,
     r"q and k must share the vector size: q has 2"),
    ("kv-len", lambda: reference.attention(X, X, np.ones((4, 2))), ValueError,
     r"k and v must have the same length"),
    ("1-d", lambda: reference.self_attention([1.0, 2.0]), ValueError,
     r"x must be at least 2-D, got shape \(2,\)"),
    ("empty", lambda: reference.self_attention(np.zeros((0, 2))), ValueError,
     r"x must be non-empty"),
    ("nan", lambda: reference.self_attention([[np.nan, 1.0]]), ValueError, r"x must be finite"),
    ("bool-x", lambda: reference.self_attention(np.ones((2, 2), bool)), TypeError,
     r"x must hold real numbers, got dtype bool"),
    ("str-x", lambda: reference.self_attention([["a", "b"]]), TypeError, r"x must hold real"),
    ("float-mask", lambda: reference.attention(X, X, X, mask=np.ones((3, 3))), TypeError,
     r"mask must be bool \(True = may attend\), got dtype float64; pass an additive"),
    ("mask-shape", lambda: reference.attention(X, X, X, mask=np.ones((2, 3), bool)), ValueError,
     r"mask of shape \(2, 3\) cannot broadcast to the scores' \(3, 3\)"),
    ("bias-shape", lambda: reference.attention(X, X, X, bias=np.ones((3, 4))), ValueError,
     r"bias of shape \(3, 4\) cannot broadcast"),
    ("bias-nan", lambda: reference.attention(X, X, X, bias=np.full((3, 3), np.nan)), ValueError,
     r"bias must be finite or -inf"),
    ("window-neg", lambda: reference.attention(X, X, X, window=-2), ValueError,
     r"window left must be a non-negative int or None, got -2"),
    ("window-type", lambda: reference.attention(X, X, X, window="2"), ValueError,
     r"window must be an int or a \(left, right\) pair"),
    ("normalize", lambda: reference.normalize(X @ X.T, "sparsemax"), ValueError,
     r"normalize must be one of \['softmax', 'sum', 'relu'\].*'sparsemax'"),
    ("sum-nonpositive", lambda: reference.normalize([[1.0, -2.0], [1.0, 1.0]], "sum"), ValueError,
     r'normalize="sum" needs every row of scores to sum to > 0, but 1 row\(s\)'),
    ("sum-zero", lambda: reference.normalize([[0.0, 0.0]], "sum"), ValueError, r"sum to <= 0"),
    ("causal-type", lambda: reference.attention(X, X, X, causal="yes"), TypeError,
     r"causal must be a bool"),
    ("scale", lambda: reference.scores(X, X, scale=np.inf), ValueError,
     r"scale must be a finite number"),
    ("reweight", lambda: reference.reweight(X, np.eye(2)), ValueError,
     r"w must have 3 columns \(one per row of x\)"),
    ("heads", lambda: reference.multi_head_self_attention(
        X, [np.eye(2)] * 2, [np.eye(2)], [np.eye(2)] * 2, np.eye(4, 2)), ValueError,
     r"wq, wk, wv must have the same number of heads, got \[2, 1, 2\]"),
    ("wo", lambda: reference.multi_head_self_attention(
        X, [np.eye(2)] * 2, [np.eye(2)] * 2, [np.eye(2)] * 2, np.eye(3, 2)), ValueError,
     r"wo must have 4 rows \(heads · d_v\)"),
    ("additive", lambda: reference.additive_scores(X, X, np.ones((4, 2)), np.ones((3, 2)),
                                                   np.ones(4)), ValueError, r"expected wq"),
    ("rotary-odd", lambda: reference.rotary(np.ones((3, 5))), ValueError,
     r"rotary needs an even last dimension, got 5"),
    ("sinusoidal", lambda: reference.sinusoidal_positions(0, 4), ValueError,
     r"n must be a positive int, got 0"),
    ("alibi", lambda: reference.alibi_bias(0, 3), ValueError, r"heads must be a positive int"),
    ("causal-mask", lambda: reference.causal_mask(-1), ValueError, r"i must be a positive int"),
    ("window-mask", lambda: reference.window_mask(3, 3, left=-1), ValueError,
     r"window left must be a non-negative int"),
    ("padding", lambda: reference.padding_mask([2, 5], 4), ValueError,
     r"lengths must be <= n=4, got \[2, 5\]"),
    ("padding-neg", lambda: reference.padding_mask([-1]), ValueError, r"non-negative"),
    ("padding-float", lambda: reference.padding_mask([1.5]), ValueError, r"1-D sequence of ints"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fn", "error", "match"), [c[1:] for c in REFERENCE_CASES], ids=[c[0] for c in REFERENCE_CASES]
)
def test_reference_bad_input(fn, error, match):
    with pytest.raises(error, match=match):
        fn()


MASK_CASES = [
    ("window-neg", lambda: sa.masks.window(3, 3, left=-1), ValueError, r"left must be"),
    ("padding-2d", lambda: sa.masks.padding([[1, 2]]), ValueError, r"lengths must be a 1-D"),
    ("padding-float", lambda: sa.masks.padding([1.5]), ValueError, r"lengths must be a 1-D"),
    ("padding-neg", lambda: sa.masks.padding([-1, 2]), ValueError, r"non-negative"),
    ("padding-long", lambda: sa.masks.padding([5], 3), ValueError, r"<= max_len=3"),
    ("combine-float", lambda: sa.masks.combine(torch.ones(2, 2)), TypeError, r"masks must be bool"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fn", "error", "match"), [c[1:] for c in MASK_CASES], ids=[c[0] for c in MASK_CASES]
)
def test_mask_builders_bad_input(fn, error, match):
    with pytest.raises(error, match=match):
        fn()
