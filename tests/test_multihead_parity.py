"""selfattention.nn.MultiheadAttention vs torch.nn.MultiheadAttention with identical weights."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch

from conftest import rand_mask, randn
from selfattention.nn import MultiheadAttention

E, H, N, L, S = 12, 3, 2, 5, 7

MODULE_CONFIGS = {
    "default": {},
    "batch_first": dict(batch_first=True),
    "kdim_vdim": dict(kdim=5, vdim=7),
    "kdim_vdim_batch_first": dict(kdim=5, vdim=7, batch_first=True),
    "no_bias": dict(bias=False),
    "bias_kv": dict(add_bias_kv=True),
    "zero_attn": dict(add_zero_attn=True),
    "bias_kv_zero_attn": dict(add_bias_kv=True, add_zero_attn=True, batch_first=True),
}


def pair(dtype=torch.float64, **kw) -> tuple[torch.nn.MultiheadAttention, MultiheadAttention]:
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(E, H, **kw).to(dtype)
    ours = MultiheadAttention(E, H, **kw).to(dtype)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def inputs(kw, dtype=torch.float64, n=N, q_len=L, k_len=S, self_attn=False):
    def shape(length, width):
        return (n, length, width) if kw.get("batch_first") else (length, n, width)

    q = randn(*shape(q_len, E), seed=1, dtype=dtype)
    if self_attn:
        return q, q, q
    k = randn(*shape(k_len, kw.get("kdim", E)), seed=2, dtype=dtype)
    v = randn(*shape(k_len, kw.get("vdim", E)), seed=3, dtype=dtype)
    return q, k, v


def masks(dtype=torch.float64):
    """torch-polarity masks (True = ignore) with at least one visible key per query."""
    am = ~rand_mask(L, S, p=0.7, seed=4)
    am[:, 0] = False
    kpm = ~rand_mask(N, S, p=0.7, seed=5)
    kpm[:, 1] = False
    return {
        "none": {},
        "attn_bool": dict(attn_mask=am),
        "attn_float": dict(attn_mask=randn(L, S, seed=6, dtype=dtype)),
        "attn_float_inf": dict(attn_mask=torch.zeros(L, S, dtype=dtype).masked_fill(am, -math.inf)),
        "attn_3d": dict(attn_mask=~rand_mask(N * H, L, S, p=0.9, seed=7) & (torch.arange(S) > 0)),
        "kpm_bool": dict(key_padding_mask=kpm),
        "kpm_float": dict(key_padding_mask=randn(N, S, seed=8, dtype=dtype)),
        "both_bool": dict(attn_mask=am, key_padding_mask=kpm),
        "both_float": dict(
            attn_mask=randn(N * H, L, S, seed=9, dtype=dtype),
            key_padding_mask=randn(N, S, seed=10, dtype=dtype),
        ),
    }


def assert_same(a, b, tol=1e-12):
    torch.testing.assert_close(b[0], a[0], rtol=tol, atol=tol)
    if a[1] is None:
        assert b[1] is None
    else:
        torch.testing.assert_close(b[1], a[1], rtol=tol, atol=tol)


@pytest.mark.parametrize("config", MODULE_CONFIGS)
@pytest.mark.parametrize("mask_name", list(masks()))
def test_outputs_and_weights_match_torch(config, mask_name):
    kw = MODULE_CONFIGS[config]
    theirs, ours = pair(**kw)
    q, k, v = inputs(kw)
    m = masks()[mask_name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns on mismatched mask types
        for need, avg in itertools.product([True, False], [True, False]):
            args = dict(m, need_weights=need, average_attn_weights=avg)
            assert_same(theirs(q, k, v, **args), ours(q, k, v, **args))


@pytest.mark.parametrize("config", ["default", "batch_first", "bias_kv_zero_attn"])
def test_self_attention_and_fast_path(config):
    # Self-attention in eval mode without grad takes torch's native fused path when it can.
    kw = MODULE_CONFIGS[config]
    theirs, ours = pair(torch.float32, **kw)
    theirs.eval(), ours.eval()
    x = inputs(kw, torch.float32, self_attn=True)
    kpm = ~rand_mask(N, L, p=0.8, seed=11)
    kpm[:, 0] = False
    with torch.no_grad():
        for args in ({}, dict(key_padding_mask=kpm), dict(need_weights=False)):
            assert_same(theirs(*x, **args), ours(*x, **args), tol=2e-6)


def test_unbatched_input():
    theirs, ours = pair()
    q, k, v = (t[:, 0] for t in inputs({}))  # (L, E), (S, E), (S, E)
    kpm = torch.zeros(S, dtype=torch.bool)
    kpm[2] = True
    am = torch.triu(torch.ones(L, S, dtype=torch.bool), 1)
    for args in ({}, dict(key_padding_mask=kpm, attn_mask=am), dict(average_attn_weights=False)):
        a, b = theirs(q, k, v, **args), ours(q, k, v, **args)
        assert b[0].shape == (L, E)
        assert_same(a, b)


@pytest.mark.parametrize("config", ["default", "batch_first", "bias_kv_zero_attn"])
def test_is_causal(config):
    kw = MODULE_CONFIGS[config]
    theirs, ours = pair(**kw)
    q, k, v = inputs(kw, k_len=L)
    causal = torch.triu(torch.ones(L, L, dtype=torch.bool), 1)  # torch polarity
    kpm = ~rand_mask(N, L, p=0.8, seed=12)
    kpm[:, 0] = False
    for args in (dict(need_weights=True), dict(key_padding_mask=kpm)):
        a = theirs(q, k, v, attn_mask=causal, is_causal=True, **args)
        assert_same(a, ours(q, k, v, attn_mask=causal, is_causal=True, **args))
        # torch needs attn_mask with is_causal; here the flag alone is enough.
        assert_same(a, ours(q, k, v, is_causal=True, **args))
    if not kw.get("add_bias_kv"):
        a = theirs(q, k, v, attn_mask=causal, is_causal=True, need_weights=False)
        assert_same(a, ours(q, k, v, is_causal=True, need_weights=False))


@pytest.mark.parametrize("config", ["default", "kdim_vdim", "bias_kv_zero_attn"])
def test_gradients_match_torch(config):
    kw = MODULE_CONFIGS[config]
    theirs, ours = pair(**kw)
    q, k, v = inputs(kw)
    qs = [q.clone().requires_grad_(), q.clone().requires_grad_()]
    am = masks()["attn_float"]["attn_mask"]
    for mod, qq in zip((theirs, ours), qs, strict=True):
        out, w = mod(qq, k, v, attn_mask=am, average_attn_weights=False)
        (out.square().sum() + w.sin().sum()).backward()
    torch.testing.assert_close(qs[1].grad, qs[0].grad, rtol=1e-10, atol=1e-12)
    g_theirs = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, g_theirs[name].grad, rtol=1e-10, atol=1e-12)


def test_dropout_in_training_draws_the_same_mask_as_torch():
    theirs, ours = pair(dropout=0.3)
    q, k, v = inputs({})
    torch.manual_seed(123)
    a = theirs(q, k, v, average_attn_weights=False)
    torch.manual_seed(123)
    b = ours(q, k, v, average_attn_weights=False)
    assert_same(a, b)
    assert float((b[1] == 0).double().mean()) > 0.1
    theirs.eval(), ours.eval()
    assert_same(theirs(q, k, v), ours(q, k, v))


def test_state_dict_round_trip_both_ways():
    for kw in MODULE_CONFIGS.values():
        theirs, ours = pair(**kw)
        assert ours.state_dict().keys() == theirs.state_dict().keys()
        torch.manual_seed(1)
        fresh = MultiheadAttention(E, H, **kw).double()
        theirs.load_state_dict(fresh.state_dict())  # ours -> torch
        q, k, v = inputs(kw)
        assert_same(theirs(q, k, v), fresh(q, k, v))


def test_fully_masked_query_gives_zeros_where_torch_gives_nan():
    theirs, ours = pair()
    q, k, v = inputs({})
    am = torch.zeros(L, S, dtype=torch.bool)
    am[1] = True  # query 1 may attend to nothing
    a, b = theirs(q, k, v, attn_mask=am), ours(q, k, v, attn_mask=am)
    assert bool(torch.isnan(a[0][1]).all())
    assert bool(torch.isfinite(b[0]).all())
    torch.testing.assert_close(b[1][:, 1], torch.zeros(N, S, dtype=torch.float64))
    torch.testing.assert_close(b[0][0], a[0][0])
    # The output of a query that sees nothing is out_proj(0) = out_proj.bias.
    torch.testing.assert_close(b[0][1], ours.out_proj.bias.expand(N, E))


def test_initialisation_statistics_match_torch():
    torch.manual_seed(0)
    ours = MultiheadAttention(64, 4, add_bias_kv=True)
    theirs = torch.nn.MultiheadAttention(64, 4, add_bias_kv=True)
    for name, p in theirs.named_parameters():
        mine = dict(ours.named_parameters())[name].detach()
        assert mine.shape == p.shape
        theirs_std = float(p.detach().std())
        assert abs(float(mine.std()) - theirs_std) <= 0.2 * theirs_std
        if theirs_std == 0.0:
            assert float(mine.abs().max()) == 0.0


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match=r"num_heads must divide embed_dim.*embed_dim=10"):
        MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match="embed_dim must be a positive int, got 0"):
        MultiheadAttention(0, 1)
    with pytest.raises(ValueError, match="dropout"):
        MultiheadAttention(12, 3, dropout=2.0)


X = torch.randn(4, 2, 12)  # (L, N, E)
BAD_CALLS = {
    "width": (lambda m: m(torch.randn(4, 2, 11), X, X), ValueError, ["embed_dim=12", "11"]),
    "rank": (lambda m: m(*[torch.randn(2, 3, 4, 12)] * 3), ValueError, ["3-D", "2-D"]),
    "lengths": (lambda m: m(X, X, torch.randn(5, 2, 12)), ValueError, ["sequence length"]),
    "attn_mask_shape": (
        lambda m: m(X, X, X, attn_mask=torch.zeros(3, 4, dtype=torch.bool)),
        ValueError,
        ["attn_mask", "(4, 4)", "(3, 4)"],
    ),
    "kpm_shape": (
        lambda m: m(X, X, X, key_padding_mask=torch.zeros(4, 2, dtype=torch.bool)),
        ValueError,
        ["key_padding_mask", "(2, 4)"],
    ),
    "mask_dtype": (
        lambda m: m(X, X, X, attn_mask=torch.zeros(4, 4, dtype=torch.long)),
        TypeError,
        ["attn_mask", "IGNORE", "int64"],
    ),
    "query_dtype": (
        lambda m: m(*[torch.ones(4, 2, 12, dtype=torch.long)] * 3),
        TypeError,
        ["query", "int64"],
    ),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_input_names_the_argument(case):
    call, exc, words = BAD_CALLS[case]
    with pytest.raises(exc) as info:
        call(MultiheadAttention(12, 3))
    for word in words:
        assert word in str(info.value)
