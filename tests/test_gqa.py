"""Grouped-query attention: k/v with fewer heads than q, on every backend, without k/v copies."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import selfattention as sa
from conftest import rand_mask, randn, reference_attention
from selfattention.functional.backends import REGISTRY

BACKENDS = ["math", "sdpa", "chunked", "window"]


def repeat_kv(x: torch.Tensor, g: int) -> torch.Tensor:
    """The reference's k/v per query head (query head i reads kv head i // g)."""
    return x.repeat_interleave(g, dim=1)


def case(hq=6, hkv=2, i=7, j=7, d=4, e=5, dtype=torch.float64):
    q = randn(2, hq, i, d, dtype=dtype, seed=1)
    k = randn(2, hkv, j, d, dtype=dtype, seed=2)
    v = randn(2, hkv, j, e, dtype=dtype, seed=3)
    return q, k, v


def serves(backend, **kw) -> bool:
    return (
        backend in ("math", "chunked")
        or (
            backend == "sdpa"
            and kw.get("window") is None
            and kw.get("normalize", "softmax") == "softmax"
        )
        or (backend == "window" and kw.get("window") is not None)
    )


OPTIONS = [
    {},
    {"causal": True},
    {"window": (2, 1)},
    {"mask": "key"},
    {"mask": "full"},
    {"bias": "heads"},
    {"normalize": "relu"},
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(map(str, o.items())) or "plain")
def test_grouped_equals_float64_reference(backend, opts):
    q, k, v = case()
    kw = dict(opts)
    if kw.get("mask") == "key":
        kw["mask"] = rand_mask(2, 1, 1, 7, seed=4)
    elif kw.get("mask") == "full":
        kw["mask"] = rand_mask(2, 6, 7, 7, seed=5)
    if kw.get("bias") == "heads":
        kw["bias"] = randn(1, 6, 7, 7, seed=6)
    if backend == "window" and "window" not in kw:
        kw["window"] = (3, 2)
    if not serves(backend, **kw):
        pytest.skip("backend does not serve this call")
    ref_out, ref_w = reference_attention(q, repeat_kv(k, 3), repeat_kv(v, 3), **kw)
    softmax = kw.get("normalize", "softmax") == "softmax"
    res = sa.attention(q, k, v, backend=backend, return_weights=True, return_lse=softmax, **kw)
    out, w, lse = res[0], res[1], (res[2] if softmax else None)
    assert out.shape == (2, 6, 7, 5) and w.shape == (2, 6, 7, 7)
    torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=0)
    torch.testing.assert_close(w, ref_w, atol=1e-10, rtol=0)
    if lse is not None:
        assert lse.shape == (2, 6, 7)
        _, lse_rep = sa.attention(
            q, repeat_kv(k, 3), repeat_kv(v, 3), backend="math", return_lse=True, **kw
        )
        torch.testing.assert_close(lse, lse_rep, atol=1e-10, rtol=0)


@pytest.mark.parametrize("backend", ["math", "sdpa", "chunked"])
@pytest.mark.parametrize("causal", [False, True])
def test_parity_with_sdpa_enable_gqa(backend, causal):
    q, k, v = case(hq=8, hkv=2, i=9, j=9, d=8, e=8, dtype=torch.float32)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    got = sa.attention(q, k, v, causal=causal, backend=backend)
    torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-5)


def test_parity_with_sdpa_enable_gqa_padding_mask():
    q, k, v = case(hq=4, hkv=1, i=5, j=6, d=8, e=8, dtype=torch.float32)
    mask = sa.masks.padding([6, 3])  # (b, 1, 1, j)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    torch.testing.assert_close(sa.attention(q, k, v, mask=mask), want, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("causal", [False, True])
def test_backend_receives_callers_k_and_v(backend, causal, monkeypatch):
    """No k/v-sized copy: every call the backend sees holds the caller's k and v storage."""
    q, k, v = case(hq=6, hkv=2)
    seen = []
    original = REGISTRY[backend]
    forward = original.forward

    def spy(call):
        seen.append((call.k.data_ptr(), call.v.data_ptr(), tuple(call.k.shape)))
        return forward(call)

    monkeypatch.setitem(REGISTRY, backend, dataclasses.replace(original, forward=spy))
    kw = {"window": (2, 2)} if backend == "window" else {}
    sa.attention(q, k, v, causal=causal, backend=backend, **kw)
    assert seen
    for kp, vp, shape in seen:
        assert kp == k.data_ptr() and vp == v.data_ptr()
        assert shape[1] == 2  # h_kv heads, not repeated to 6


def test_gradients_match_repeated_reference():
    q, k, v = (t.requires_grad_() for t in case())
    sa.attention(q, k, v, causal=True, backend="chunked").square().sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q, k, v))
    sa.attention(
        q2, repeat_kv(k2, 3), repeat_kv(v2, 3), causal=True, backend="math"
    ).square().sum().backward()
    for a, b in zip(grads, (q2.grad, k2.grad, v2.grad), strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_error_names_k_and_v_heads():
    q = torch.randn(1, 6, 3, 4)
    k = v = torch.randn(1, 4, 3, 4)
    with pytest.raises(ValueError, match=r"k and v heads must divide q heads.*6.*4"):
        sa.attention(q, k, v)


def test_explain_dispatch_grouped():
    q, k, v = case()
    assert sa.explain_dispatch(q, k, v).chosen in REGISTRY


def test_module_kv_heads():
    torch.manual_seed(0)
    m = sa.nn.SelfAttention(24, heads=6, kv_heads=2, causal=True).double()
    assert m.key_proj.out_features == 8 and m.value_proj.out_features == 8
    x = randn(2, 5, 24, seed=7)
    out, w = m(x, return_weights=True)
    assert out.shape == (2, 5, 24) and w.shape == (2, 6, 5, 5)
    # the same module computed by hand with k/v repeated per query head
    q = m.query_proj(x).view(2, 5, 6, 4).transpose(1, 2)
    k = m.key_proj(x).view(2, 5, 2, 4).transpose(1, 2)
    v = m.value_proj(x).view(2, 5, 2, 4).transpose(1, 2)
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(out, m.out_proj(o.transpose(1, 2).reshape(2, 5, 24)))
    with pytest.raises(ValueError, match="kv_heads"):
        sa.nn.SelfAttention(24, heads=6, kv_heads=4)


@pytest.mark.parametrize("backend", ["tiles", "math"])
def test_neighborhood_grouped(backend, monkeypatch):
    """2-D neighbourhoods (the tiles backend) with grouped k/v: repeated reference, no k/v copy."""
    q = randn(1, 4, 36, 4, seed=1)
    k, v = randn(1, 2, 36, 4, seed=2), randn(1, 2, 36, 4, seed=3)
    seen = []
    original = REGISTRY[backend]

    def spy(call):
        seen.append(call.k.data_ptr() == k.data_ptr() and call.v.data_ptr() == v.data_ptr())
        return original.forward(call)

    monkeypatch.setitem(REGISTRY, backend, dataclasses.replace(original, forward=spy))
    out, w = sa.functional.neighborhood_attention(
        q, k, v, (6, 6), 3, backend=backend, return_weights=True
    )
    assert seen and all(seen)
    ref, ref_w = sa.functional.neighborhood_attention(
        q, repeat_kv(k, 2), repeat_kv(v, 2), (6, 6), 3, backend="math", return_weights=True
    )
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(w, ref_w, atol=1e-12, rtol=0)


def test_module_kv_heads_cache_and_stream():
    """Grouped heads step by step (KVCache holds h_kv heads) and streamed: equal to offline."""
    torch.manual_seed(0)
    rot = sa.nn.RotaryPositions(4)
    m = sa.nn.SelfAttention(16, heads=4, kv_heads=2, causal=True, positions=rot).double()
    x = randn(2, 9, 16, seed=8)
    cache = sa.nn.KVCache()
    steps = [m(x[:, :5], cache=cache)] + [m(x[:, t : t + 1], cache=cache) for t in range(5, 9)]
    torch.testing.assert_close(torch.cat(steps, 1), m(x), atol=1e-12, rtol=0)
    w = sa.nn.SelfAttention(16, heads=4, kv_heads=1, window=(2, 1)).double()
    stream = w.stream()
    chunks = [stream.push(x[:, i : i + 3]) for i in range(0, 9, 3)] + [stream.flush()]
    torch.testing.assert_close(torch.cat(chunks, 1), w(x), atol=1e-12, rtol=0)
