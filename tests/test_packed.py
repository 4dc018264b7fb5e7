"""Packed variable-length batches (cu_seqlens): equal to a loop over sequences, independent."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

import selfattention as sa
from conftest import randn
from selfattention.functional import packed
from selfattention.functional.backends import REGISTRY

LENGTHS = [5, 3, 5, 1, 7]
CU = packed.cu_seqlens(LENGTHS)  # [0, 5, 8, 13, 14, 21]
T = CU[-1]

CASES = [
    ("math", {}),
    ("math", {"causal": True}),
    ("sdpa", {}),
    ("sdpa", {"causal": True}),
    ("chunked", {"window": (2, 1)}),
    ("chunked", {"causal": True, "normalize": "relu"}),
    ("window", {"window": (1, 2)}),
    ("auto", {"bias": True}),
    ("auto", {"mask": True, "causal": True}),
]


def tensors(seed=0, h=2, hkv=2):
    q = randn(2, h, T, 4, seed=seed)
    k = randn(2, hkv, T, 4, seed=seed + 1)
    v = randn(2, hkv, T, 3, seed=seed + 2)
    return q, k, v


def extras(kw):
    kw = dict(kw)
    if kw.pop("bias", False):
        kw["bias"] = randn(1, 2, T, T, seed=9)
    if kw.pop("mask", False):
        kw["mask"] = sa.masks.padding([T - 2, T])  # (b, 1, 1, T): a key mask along T
    return kw


def looped(q, k, v, kw, backend):
    """One sa.attention call per sequence, the masks/bias cut to its block."""
    outs = []
    for a, e in itertools.pairwise(CU):
        sub = dict(kw)
        if "bias" in sub:
            sub["bias"] = sub["bias"][..., a:e, a:e]
        if "mask" in sub:
            sub["mask"] = sub["mask"][..., a:e]
        outs.append(sa.attention(q[:, :, a:e], k[:, :, a:e], v[:, :, a:e], backend=backend, **sub))
    return torch.cat(outs, dim=2)


@pytest.mark.parametrize(("backend", "opts"), CASES)
def test_packed_equals_loop_over_sequences(backend, opts):
    q, k, v = tensors()
    kw = extras(opts)
    got = sa.attention(q, k, v, cu_seqlens=CU, backend=backend, **kw)
    torch.testing.assert_close(got, looped(q, k, v, kw, backend), atol=1e-12, rtol=0)


@pytest.mark.parametrize(("backend", "opts"), CASES)
def test_changing_one_sequence_leaves_the_others_alone(backend, opts):
    q, k, v = (t.requires_grad_() for t in tensors())
    kw = extras(opts)
    out = sa.attention(q, k, v, cu_seqlens=CU, backend=backend, **kw)
    # change sequence 2 (rows 8 ... 12) in q, k and v
    q2, k2, v2 = (t.detach().clone() for t in (q, k, v))
    for t in (q2, k2, v2):
        t[:, :, 8:13] = torch.randn_like(t[:, :, 8:13])
    out2 = sa.attention(q2, k2, v2, cu_seqlens=CU, backend=backend, **kw)
    others = torch.cat([torch.arange(0, 8), torch.arange(13, T)])
    assert torch.equal(out[:, :, others], out2[:, :, others])  # bit-identical
    # gradients of the other sequences' outputs w.r.t. sequence 2: exactly zero
    out[:, :, others].square().sum().backward()
    for t in (q, k, v):
        assert torch.count_nonzero(t.grad[:, :, 8:13]) == 0


def test_no_score_across_sequences(monkeypatch):
    """The backend only ever sees one sequence's rows and keys (sequences of a length together)."""
    seen = []
    original = REGISTRY["math"]

    def spy(call):
        seen.append((call.q_len, call.k_len))
        return original.forward(call)

    monkeypatch.setitem(REGISTRY, "math", dataclasses.replace(original, forward=spy))
    q, k, v = tensors()
    sa.attention(q, k, v, cu_seqlens=CU, backend="math")
    assert sorted(seen) == [(1, 1), (3, 3), (5, 5), (7, 7)]  # the two 5s in one call


def test_weights_lse_and_cross_attention_lengths():
    q, k, v = tensors()
    k, v = k[:, :, :10], v[:, :, :10]
    cu_k = [0, 2, 4, 6, 8, 10]
    out, w, lse = sa.attention(
        q, k, v, cu_seqlens=CU, cu_seqlens_k=cu_k, return_weights=True, return_lse=True
    )
    assert w.shape == (2, 2, T, 10) and lse.shape == (2, 2, T)
    for t, ((a, e), (c, f)) in enumerate(
        zip(itertools.pairwise(CU), itertools.pairwise(cu_k), strict=True)
    ):
        o, ww, ll = sa.attention(
            q[:, :, a:e], k[:, :, c:f], v[:, :, c:f], return_weights=True, return_lse=True
        )
        torch.testing.assert_close(out[:, :, a:e], o, msg=f"seq {t}")
        torch.testing.assert_close(w[:, :, a:e, c:f], ww)
        torch.testing.assert_close(lse[:, :, a:e], ll)
        assert (
            torch.count_nonzero(w[:, :, a:e, :c]) == 0
            and torch.count_nonzero(w[:, :, a:e, f:]) == 0
        )


def test_packed_grouped_query_heads():
    q, k, v = tensors(h=4, hkv=2)
    got = sa.attention(q, k, v, cu_seqlens=CU, causal=True)
    rep = [t.repeat_interleave(2, dim=1) for t in (k, v)]
    torch.testing.assert_close(got, sa.attention(q, *rep, cu_seqlens=CU, causal=True))


@pytest.mark.parametrize(
    ("cu", "match"),
    [
        ([0, 5, 20], "run from 0 to the packed length 21"),
        ([0, 9, 5, 21], "non-decreasing"),
        ([1, 21], "run from 0"),
        ([0.0, 21.0], "integer"),
    ],
)
def test_bad_cu_seqlens(cu, match):
    q, k, v = tensors()
    with pytest.raises((ValueError, TypeError), match=match):
        sa.attention(q, k, v, cu_seqlens=cu)


def test_cu_seqlens_k_alone_is_refused():
    q, k, v = tensors()
    with pytest.raises(ValueError, match="cu_seqlens_k needs cu_seqlens"):
        sa.attention(q, k, v, cu_seqlens_k=CU)


@pytest.mark.parametrize("positions", [None, "rotary", "alibi"])
def test_module_packed_equals_loop(positions):
    torch.manual_seed(0)
    pos = {
        None: None,
        "rotary": sa.nn.RotaryPositions(4),
        "alibi": sa.nn.ALiBi(2),
    }[positions]
    m = sa.nn.SelfAttention(8, heads=2, causal=True, positions=pos).double()
    x = randn(1, T, 8, seed=3)
    got = m(x, cu_seqlens=CU)
    want = torch.cat([m(x[:, a:e]) for a, e in itertools.pairwise(CU)], dim=1)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("positions", ["learned", "rotary"])
@pytest.mark.parametrize("task", ["tag", "classify"])
def test_text_model_packed_equals_padded(task, positions):
    """apps/text: the packed encoder (real tokens only) gives the padded one's outputs."""
    from selfattention.apps.text.model import TextModel, TextModelConfig

    cfg = TextModelConfig(
        task=task,
        num_labels=3,
        vocab_size=20,
        trainable_words=20,
        dim=16,
        heads=2,
        ff_dim=32,
        layers=2,
        positions=positions,
        dropout=0.0,
    )
    torch.manual_seed(0)
    packed_model = TextModel(cfg).double().eval()
    padded_model = TextModel(dataclasses.replace(cfg, packed=False)).double().eval()
    padded_model.load_state_dict(packed_model.state_dict())
    words = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 10], [11, 0, 0, 0, 0]])
    got, want = packed_model(words), padded_model(words)
    real = words != 0
    if task == "tag":
        got, want = got[real], want[real]
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


def test_explain_dispatch_packed():
    q, k, v = tensors()
    d = sa.explain_dispatch(q, k, v, cu_seqlens=CU, window=(1, 1))
    assert d.chosen in REGISTRY
