"""selfattention.nn.SelfAttention and AdditiveAttention against the float64 NumPy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import selfattention as sa
from conftest import rand_mask, randn
from selfattention import reference
from selfattention.nn import AdditiveAttention, ALiBi, RotaryPositions, SelfAttention


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().double().numpy()


def _linear(layer: torch.nn.Linear, a: np.ndarray) -> np.ndarray:
    out = a @ _np(layer.weight).T
    return out if layer.bias is None else out + _np(layer.bias)


def oracle(
    m: SelfAttention, x, context=None, mask=None, bias=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The module's computation written with ``selfattention.reference`` in float64."""
    xn = _np(x)
    cn = xn if context is None else _np(context)

    def heads(a: np.ndarray) -> np.ndarray:  # (b, n, h·d) -> (b, h, n, d)
        b, n, _ = a.shape
        return a.reshape(b, n, m.heads, m.head_dim).transpose(0, 2, 1, 3)

    q, k, v = heads(_linear(m.query_proj, xn)), heads(_linear(m.key_proj, cn)), None
    v = heads(_linear(m.value_proj, cn))
    bias = _np(bias)
    if isinstance(m.positions, RotaryPositions):
        q, k = reference.rotary(q), reference.rotary(k)
    elif isinstance(m.positions, ALiBi):
        ab = reference.alibi_bias(m.heads, q.shape[2], k.shape[2])[None]
        bias = ab if bias is None else bias + ab
    out, w = reference.attention(
        q,
        k,
        v,
        mask=None if mask is None else mask.numpy(),
        bias=bias,
        scale=m.scale,
        normalize=m.normalize,
        causal=m.causal,
        window=m.window,
    )
    b, h, i, d = out.shape
    out = _linear(m.out_proj, out.transpose(0, 2, 1, 3).reshape(b, i, h * d))
    return torch.from_numpy(out), torch.from_numpy(w)


def _module(seed: int = 0, **kw) -> SelfAttention:
    torch.manual_seed(seed)
    return SelfAttention(**kw).double()


CONFIGS = {
    "one-head": dict(dim=6, heads=1),
    "heads": dict(dim=12, heads=3),
    "head_dim": dict(dim=10, heads=3, head_dim=5),
    "no-bias": dict(dim=12, heads=4, bias=False),
    "causal": dict(dim=12, heads=2, causal=True),
    "window": dict(dim=12, heads=2, window=(2, 1)),
    "causal-window": dict(dim=12, heads=2, window=3, causal=True),
    "relu": dict(dim=8, heads=2, normalize="relu"),
    "scale": dict(dim=8, heads=2, scale=1.0),
    "rope": dict(dim=12, heads=2, positions=RotaryPositions(6)),
    "alibi": dict(dim=12, heads=3, positions=ALiBi(3)),
    "alibi-causal": dict(dim=12, heads=3, positions=ALiBi(3), causal=True),
}


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("masked", [False, True])
def test_self_attention_matches_reference(name, masked):
    m = _module(**CONFIGS[name])
    x = randn(2, 11, m.dim, seed=1)
    mask = rand_mask(2, 1, 11, 11, seed=2) if masked else None
    out, w = m(x, mask=mask, return_weights=True)
    ref_out, ref_w = oracle(m, x, mask=mask)
    assert out.shape == (2, 11, m.dim) and w.shape == (2, m.heads, 11, 11)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w, ref_w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["heads", "causal", "rope", "alibi"])
def test_float32_and_fused_backend_match_reference(name):
    m = _module(**CONFIGS[name])
    x = randn(3, 13, m.dim, seed=3)
    mask = sa.masks.padding([13, 9, 4]).expand(3, 1, 13, 13)
    ref_out, _ = oracle(m, x, mask=mask)
    m32 = m.float()
    out = m32(x.float(), mask=mask)  # auto: the fused sdpa backend
    with_w, _ = m32(x.float(), mask=mask, return_weights=True)  # math backend
    torch.testing.assert_close(out.double(), ref_out, rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(with_w.double(), ref_out, rtol=2e-5, atol=2e-5)


def test_equals_the_ladders_multi_head_self_attention():
    m = _module(dim=12, heads=3, bias=False)
    x = randn(11, 12, seed=4)

    def per_head(layer):  # Linear weight (h·d, dim) -> stacked (h, dim, d), acting as x @ W
        return _np(layer.weight).reshape(3, 4, 12).transpose(0, 2, 1)

    ref, ref_w = reference.multi_head_self_attention(
        _np(x),
        per_head(m.query_proj),
        per_head(m.key_proj),
        per_head(m.value_proj),
        _np(m.out_proj.weight).T,
    )
    out, w = m(x[None], return_weights=True)
    np.testing.assert_allclose(_np(out[0]), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_np(w[0]), np.stack(ref_w), rtol=1e-12, atol=1e-12)


def test_hand_computed_identity_projections():
    # dim 2, one head, identity projections, zero biases: out = softmax(X Xᵀ / √2) X.
    m = SelfAttention(2, 1).double()
    with torch.no_grad():
        for lin in (m.query_proj, m.key_proj, m.value_proj, m.out_proj):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    x = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]], dtype=torch.float64)
    a, b = 1 / math.sqrt(2), 4 / math.sqrt(2)  # the diagonal scores; off-diagonal are 0
    w0 = [math.exp(a) / (math.exp(a) + 1), 1 / (math.exp(a) + 1)]
    w1 = [1 / (1 + math.exp(b)), math.exp(b) / (1 + math.exp(b))]
    expected = torch.tensor([[[w0[0], 2 * w0[1]], [w1[0], 2 * w1[1]]]], dtype=torch.float64)
    out, w = m(x, return_weights=True)
    torch.testing.assert_close(w[0, 0], torch.tensor([w0, w1], dtype=torch.float64))
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("positions", [None, "rope", "alibi"])
def test_cross_attention_matches_reference(positions):
    pos = {None: None, "rope": RotaryPositions(4), "alibi": ALiBi(2)}[positions]
    m = _module(dim=8, heads=2, kv_dim=5, positions=pos)
    x, ctx = randn(2, 7, 8, seed=5), randn(2, 10, 5, seed=6)
    mask = sa.masks.padding([10, 6])
    bias = randn(1, 2, 7, 10, seed=7)
    out, w = m(x, ctx, mask=mask, bias=bias, return_weights=True)
    ref_out, ref_w = oracle(m, x, ctx, mask=mask, bias=bias)
    assert w.shape == (2, 2, 7, 10)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w, ref_w, rtol=1e-12, atol=1e-12)
    assert float(w[1, :, :, 6:].detach().abs().max()) == 0.0


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 9),
    heads=st.sampled_from([1, 2, 4]),
    seed=st.integers(0, 2**16),
)
def test_permutation_equivariance_without_positions(n, heads, seed):
    torch.set_num_threads(1)
    m = _module(seed, dim=8, heads=heads)
    x = randn(2, n, 8, seed=seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out, w = m(x, return_weights=True)
    out_p, w_p = m(x[:, perm], return_weights=True)
    torch.testing.assert_close(out_p, out[:, perm], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w_p, w[:, :, perm][:, :, :, perm], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))


@pytest.mark.parametrize("positions", [RotaryPositions(4), ALiBi(2)])
def test_positions_break_permutation_equivariance(positions):
    # The property above is not vacuous: with positions, order matters.
    m = _module(dim=8, heads=2, positions=positions)
    x = randn(1, 6, 8, seed=8)
    perm = torch.tensor([2, 0, 5, 1, 4, 3])  # not a reversal: ALiBi's |i - j| survives those
    assert float((m(x[:, perm]) - m(x)[:, perm]).detach().abs().max()) > 1e-3


def test_gradients_against_finite_differences():
    m = _module(dim=8, heads=2, positions=RotaryPositions(4))
    x = randn(1, 5, 8, seed=9).requires_grad_()
    mask = rand_mask(1, 1, 5, 5, seed=10)
    mask[..., 0, :] = False  # a query with nothing to attend to: zeros, finite gradients
    assert torch.autograd.gradcheck(lambda t: m(t, mask=mask), (x,))
    out = m(x, mask=mask)
    out.sum().backward()
    assert bool(torch.isfinite(x.grad).all())
    assert all(bool(torch.isfinite(p.grad).all()) for p in m.parameters())


def test_alibi_bias_gradient_reaches_user_bias():
    m = _module(dim=6, heads=2, positions=ALiBi(2), causal=True)
    x = randn(2, 4, 6, seed=11)
    bias = randn(1, 2, 4, 4, seed=12).requires_grad_()
    assert torch.autograd.gradcheck(lambda b: m(x, bias=b), (bias,))


def test_dropout_only_in_training():
    m = _module(dim=8, heads=2, dropout=0.5)
    x = randn(2, 9, 8, seed=13)
    m.eval()
    torch.testing.assert_close(m(x), m(x))
    _, w_eval = m(x, return_weights=True)
    torch.testing.assert_close(w_eval.sum(-1), torch.ones(2, 2, 9, dtype=torch.float64))
    m.train()
    torch.manual_seed(0)
    _, w_train = m(x, return_weights=True)
    dropped = w_train == 0
    assert 0.3 < float(dropped.double().mean()) < 0.7
    torch.testing.assert_close(w_train[~dropped], 2 * w_eval[~dropped])


def test_weights_only_on_request_and_output_shape():
    m = _module(dim=8, heads=4)
    out = m(randn(3, 5, 8))
    assert isinstance(out, torch.Tensor) and out.shape == (3, 5, 8)


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        (dict(dim=10, heads=3), ValueError, ["heads must divide dim", "dim=10", "heads=3"]),
        (dict(dim=0), ValueError, ["dim", "0"]),
        (dict(dim=8, heads=2, dropout=1.0), ValueError, ["dropout", "[0, 1)"]),
        (dict(dim=8, normalize="sparsemax"), ValueError, ["normalize", "sparsemax"]),
        (dict(dim=8, window=-1), ValueError, ["window", "-1"]),
        (dict(dim=8, causal=1), TypeError, ["causal"]),
        (dict(dim=8, scale=float("nan")), ValueError, ["scale", "nan"]),
        (dict(dim=8, heads=2, positions=ALiBi(4)), ValueError, ["heads=4", "heads=2"]),
        (dict(dim=8, heads=2, positions=RotaryPositions(8)), ValueError, ["head_dim=8"]),
        (
            dict(dim=8, positions=sa.nn.SinusoidalPositions(8)),
            TypeError,
            ["attend", "SinusoidalPositions", "input"],
        ),
    ],
)
def test_constructor_rejects_bad_options(kwargs, exc, words):
    with pytest.raises(exc) as info:
        SelfAttention(**kwargs)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda m: m(torch.randn(5, 8)), ValueError, ["x", "(batch, seq", "(5, 8)"]),
        (lambda m: m(torch.randn(2, 5, 7)), ValueError, ["dim=8", "(2, 5, 7)"]),
        (lambda m: m(torch.ones(2, 5, 8, dtype=torch.long)), TypeError, ["x", "int64"]),
        (lambda m: m([[1.0] * 8]), TypeError, ["x", "list"]),
        (lambda m: m(torch.randn(2, 5, 8), torch.randn(3, 4, 8)), ValueError, ["batch", "3"]),
        (
            lambda m: m(torch.randn(2, 5, 8), torch.ones(2, 1, 1, 5, dtype=torch.bool)),
            TypeError,
            ["context", "mask=mask"],
        ),
        (lambda m: m(torch.randn(2, 5, 8), torch.randn(2, 4, 6)), ValueError, ["kv_dim=8"]),
        (
            lambda m: m(torch.randn(2, 5, 8), mask=torch.ones(2, 1, 1, 5)),
            TypeError,
            ["mask", "bool", "bias="],
        ),
        (
            lambda m: m(torch.randn(2, 5, 8), mask=torch.ones(3, 1, 1, 5, dtype=torch.bool)),
            ValueError,
            ["mask", "(3, 1, 1, 5)"],
        ),
    ],
)
def test_forward_rejects_bad_input(call, exc, words):
    m = SelfAttention(8, 2)
    with pytest.raises(exc) as info:
        call(m)
    for word in words:
        assert word in str(info.value)


def test_cross_attention_needs_context_when_kv_dim_differs():
    with pytest.raises(ValueError, match="kv_dim=5"):
        SelfAttention(8, 2, kv_dim=5)(torch.randn(1, 3, 8))


# ------------------------------------------------------------------------------------------------
# AdditiveAttention


def _additive_oracle(m: AdditiveAttention, q, k, v, mask=None):
    s = reference.additive_scores(
        _np(q),
        _np(k),
        _np(m.query_proj.weight),
        _np(m.key_proj.weight),
        _np(m.score_proj.weight)[0],
    )
    if m.key_proj.bias is not None:
        s = reference.additive_scores(
            _np(q),
            np.concatenate([_np(k), np.ones((*k.shape[:-1], 1))], -1),
            _np(m.query_proj.weight),
            np.concatenate([_np(m.key_proj.weight), _np(m.key_proj.bias)[:, None]], -1),
            _np(m.score_proj.weight)[0],
        )
    w = reference.normalize(s, "softmax", None if mask is None else mask.numpy())
    return torch.from_numpy(w @ _np(v)), torch.from_numpy(w)


@pytest.mark.parametrize("bias", [False, True])
def test_additive_attention_matches_reference(bias):
    torch.manual_seed(0)
    m = AdditiveAttention(5, 7, 9, bias=bias).double()
    q, k, v = randn(2, 4, 5, seed=1), randn(2, 6, 7, seed=2), randn(2, 6, 3, seed=3)
    mask = sa.masks.padding([6, 2])[:, 0]  # (b, 1, j)
    out, w = m(q, k, v, mask=mask, return_weights=True)
    ref_out, ref_w = _additive_oracle(m, q, k, v, mask)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w, ref_w, rtol=1e-12, atol=1e-12)
    # One decoder step: query (b, query_dim), mask (b, j).
    out1, w1 = m(q[:, 0], k, v, mask=mask[:, 0], return_weights=True)
    torch.testing.assert_close(out1, ref_out[:, 0], rtol=1e-12, atol=1e-12)
    assert w1.shape == (2, 6)
    # Values default to the keys.
    torch.testing.assert_close(m(q, k), _additive_oracle(m, q, k, k)[0], rtol=1e-12, atol=1e-12)


def test_additive_attention_gradients_and_errors():
    torch.manual_seed(0)
    m = AdditiveAttention(3, 4, 5).double()
    q, k = randn(1, 2, 3, seed=4).requires_grad_(), randn(1, 3, 4, seed=5).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: m(a, b), (q, k))
    with pytest.raises(ValueError, match="query must have shape"):
        m(randn(1, 2, 4), k)
    with pytest.raises(ValueError, match="keys must have shape"):
        m(q, randn(1, 3, 5))
    with pytest.raises(ValueError, match="values must have shape"):
        m(q, k, randn(1, 2, 6))
    with pytest.raises(ValueError, match="mask of shape"):
        m(q, k, mask=torch.ones(1, 2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="hidden_dim"):
        AdditiveAttention(3, 4, 0)


@pytest.mark.parametrize("dtype, tol", [(torch.float16, 4e-3), (torch.bfloat16, 3e-2)])
def test_half_precision_is_finite_and_close(dtype, tol):
    m = _module(**CONFIGS["rope"])
    x = randn(2, 9, m.dim, seed=14)
    mask = rand_mask(2, 1, 9, 9, seed=15)
    mask[0, 0, 3] = False  # a query with nothing to attend to
    ref_out, ref_w = oracle(m, x, mask=mask)
    m = m.to(dtype).requires_grad_(False)
    for return_weights in (False, True):
        got = m(x.to(dtype), mask=mask, return_weights=return_weights)
        out = got[0] if return_weights else got
        assert out.dtype == dtype and bool(torch.isfinite(out).all())
        scale = float(ref_out.abs().max())
        assert float((out.double() - ref_out).abs().max()) <= tol * 4 * scale
        if return_weights:
            assert float((got[1].double() - ref_w).abs().max()) <= tol
