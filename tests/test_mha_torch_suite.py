"""PyTorch's own MultiheadAttention test cases (test/nn/test_multihead_attention.py), CPU ones,
rewritten against ``sa.nn.MultiheadAttention``: the same situations and expectations, our code.

Case map (their name -> here):
  test_multihead_attention[average_attn_weights=True/False] -> test_random_cases_match_torch
      (their saved_kv variants pass static_k/static_v to
      torch.nn.functional.multi_head_attention_forward, not the module: out of scope)
  test_multihead_attn_3d_attn_mask                 -> test_3d_attn_mask_equals_per_sample_2d
  test_multihead_attn_no_bias                      -> test_no_bias
  test_multihead_attn_invalid_shape                -> test_invalid_shapes (train; eval, no_grad)
  test_multihead_attn_fast_path_invalid_shape      -> test_invalid_shapes (batch_first, eval)
  test_multihead_attn_nested_tensor_outside_fast_path -> test_nested_tensors_*
  test_multihead_self_attn_two_masks_fast_path     -> test_two_masks_eval_matches_torch
  test_multihead_attn_fast_path_query_and_bias_have_different_dtypes -> test_half_bias_double_input
  test_multihead_attn_fast_path_small_test         -> test_small_double_eval
  test_multihead_attn_in_proj_bias_none            -> test_in_proj_bias_none
  test_multihead_attn_in_proj_weight_none          -> test_in_proj_weight_none
Out of scope: test_multihead_self_attn_two_masks_fast_path_mock (mocks torch's private
torch._native_multi_head_attention), test_fast_path_check_with_mask_does_not_break_in_compile
(torch's own TransformerEncoder under torch.compile), test_multihead_attention_dtype[_batch_first]
(CUDA only).
"""

from __future__ import annotations

import random

import pytest
import torch

import selfattention as sa
from selfattention.nn._checks import ShapeError

MHA = sa.nn.MultiheadAttention


def twin(ours: MHA, **kwargs) -> torch.nn.MultiheadAttention:
    """torch's module with our module's parameters."""
    theirs = torch.nn.MultiheadAttention(**kwargs)
    theirs.load_state_dict(ours.state_dict())
    return theirs.train(ours.training)


def close_where_torch_is_finite(ours: torch.Tensor, theirs: torch.Tensor, atol=1e-5):
    """torch gives NaN for a query whose keys are all ignored, we give zeros (documented)."""
    nan = torch.isnan(theirs)
    assert torch.count_nonzero(ours[nan]) == 0
    torch.testing.assert_close(ours[~nan], theirs[~nan], atol=atol, rtol=1e-5)


VARIANTS = [
    dict(),
    dict(key_padding_mask=True),
    dict(add_bias_kv=True),
    dict(add_zero_attn=True),
    dict(key_padding_mask=True, add_bias_kv=True, add_zero_attn=True),
    dict(key_padding_mask=True, add_zero_attn=True, same_embed_dim=True),
]


@pytest.mark.parametrize("average", [True, False])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(v) or "no_masking")
def test_random_cases_match_torch(average, variant):
    """A decoder state (one query) attends to a source of another width, float attn_mask
    (1, S) with -inf, optional key padding, bias_kv, zero attention; outputs and weights."""
    rng = random.Random(0)
    torch.manual_seed(0)
    for _ in range(10):
        batch, seq = rng.randint(2, 10), rng.randint(2, 10)
        d_head, heads = rng.randint(3, 10), rng.randint(2, 5) * 2
        d_model = d_head * heads
        kv_dim = d_model if variant.get("same_embed_dim") else rng.randint(5, 20)
        kw = dict(
            embed_dim=d_model,
            num_heads=heads,
            add_bias_kv=variant.get("add_bias_kv", False),
            add_zero_attn=variant.get("add_zero_attn", False),
            kdim=kv_dim,
            vdim=kv_dim,
        )
        ours = MHA(**kw)
        theirs = twin(ours, **kw)
        query = torch.rand(1, batch, d_model)
        source = torch.rand(seq, batch, kv_dim)
        attn_mask = torch.zeros(1, seq).masked_fill(torch.rand(1, seq) < 0.5, float("-inf"))
        kpm = None
        if variant.get("key_padding_mask"):
            kpm = (torch.rand(1, seq) < 0.5).expand(batch, seq)
        args = dict(key_padding_mask=kpm, attn_mask=attn_mask, average_attn_weights=average)
        out, w = ours(query, source, source, **args)
        ref, ref_w = theirs(query, source, source, **args)
        assert out.shape == (1, batch, d_model) and w.shape == ref_w.shape
        close_where_torch_is_finite(out, ref)
        close_where_torch_is_finite(w, ref_w)


def test_3d_attn_mask_equals_per_sample_2d():
    torch.manual_seed(0)
    n, h, tgt, src, e = 8, 4, 2, 3, 8
    query, key = torch.rand(n, tgt, e), torch.rand(n, src, e)
    mask = torch.randint(0, 2, (n, tgt, src)).float()
    mask = mask.masked_fill(mask == 0, float("-inf")).masked_fill(mask == 1, 0.0)
    m = MHA(e, h)
    out3 = m(
        query.transpose(0, 1),
        key.transpose(0, 1),
        key.transpose(0, 1),
        attn_mask=mask.repeat_interleave(h, dim=0),
    )[0].transpose(0, 1)
    for i in range(n):
        out2 = m(query[i, :, None], key[i, :, None], key[i, :, None], attn_mask=mask[i])[0]
        torch.testing.assert_close(out3[i], out2[:, 0])


def test_no_bias():
    m = MHA(8, 4, bias=False)
    assert m.in_proj_bias is None and m.out_proj.bias is None


def bad_calls(batched_query_first: bool):
    """(call, torch's message) pairs: query/key/value ranks, mask ranks, a wrong 3-D mask."""
    q3, q2 = torch.randn(4, 4, 4), torch.randn(4, 4)
    b_mask = torch.tensor([False, False, True, True])
    return [
        (
            lambda m: m(q3, torch.randn(4, 4), q3),
            "expected `key` and `value` to be 3-D but found 2-D and 3-D tensors respectively",
        ),
        (
            lambda m: m(q3, q3, torch.randn(4, 4)),
            "expected `key` and `value` to be 3-D but found 3-D and 2-D tensors respectively",
        ),
        (
            lambda m: m(q3, q3, q3, key_padding_mask=b_mask),
            "expected `key_padding_mask` to be `None` or 2-D but found 1-D tensor instead",
        ),
        (
            lambda m: m(q3, q3, q3, attn_mask=b_mask),
            "expected `attn_mask` to be `None`, 2-D or 3-D but found 1-D tensor instead",
        ),
        (
            lambda m: m(q2, torch.randn(4, 4, 4), q2),
            "expected `key` and `value` to be 2-D but found 3-D and 2-D tensors respectively",
        ),
        (
            lambda m: m(q2, q2, torch.randn(4, 4, 4)),
            "expected `key` and `value` to be 2-D but found 2-D and 3-D tensors respectively",
        ),
        (
            lambda m: m(q2, q2, q2, key_padding_mask=torch.tensor([[False, True] * 4])),
            "expected `key_padding_mask` to be `None` or 1-D but found 2-D tensor instead",
        ),
        (
            lambda m: m(q2, q2, q2, attn_mask=b_mask),
            "expected `attn_mask` to be `None`, 2-D or 3-D but found 1-D tensor instead",
        ),
        (
            lambda m: m(q2, q2, q2, attn_mask=torch.rand(5, 4, 4) < 0.5),
            r"Expected `attn_mask` shape to be \(4, 4, 4\)",
        ),
    ]


@pytest.mark.parametrize("mode", ["train", "eval_no_grad", "batch_first_eval_no_grad"], ids=str)
def test_invalid_shapes(mode):
    m = MHA(4, 4, batch_first=mode.startswith("batch_first"))
    if mode != "train":
        m.eval()
    with torch.set_grad_enabled(mode == "train"):
        for call, message in bad_calls(True):
            # torch raises AssertionError; ours is also a ValueError, like every bad input here
            with pytest.raises(AssertionError, match=message) as info:
                call(m)
            assert isinstance(info.value, ValueError) and isinstance(info.value, ShapeError)
            if not m.batch_first:  # torch's module: the same error (its fast path differs)
                with pytest.raises(AssertionError, match=message):
                    call(twin(m, embed_dim=4, num_heads=4).train(mode == "train"))


def nested(lengths, dim, layout, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nested.nested_tensor(
        [torch.randn(n, dim, generator=g) for n in lengths], layout=layout
    )


@pytest.mark.parametrize("layout", [torch.jagged, torch.strided], ids=str)
@pytest.mark.parametrize(
    "extras",
    [
        {},
        {"add_bias_kv": True},
        {"add_zero_attn": True},
        {"add_bias_kv": True, "add_zero_attn": True},
    ],
    ids=lambda e: "-".join(e) or "plain",
)
def test_nested_tensors_outside_torch_fast_path(layout, extras):
    """Their case (5 heads: torch 2.13 itself refuses it outside its fast path); ours packs the
    sequences and each output equals the sequence run alone."""
    torch.manual_seed(0)
    m = MHA(10, 5, batch_first=True, **extras).eval()
    nt1 = nested([4, 6], 10, layout)
    nt2, nt3 = nested([7, 16], 10, layout, 1), nested([7, 16], 10, layout, 2)
    for q, k, v in ((nt1, nt1, nt1), (nt1, nt2, nt3)):
        out, w = m(q, k, v)
        assert out.is_nested and out.layout == layout and w is None
        for i, (a, b, c) in enumerate(zip(q.unbind(), k.unbind(), v.unbind(), strict=True)):
            alone = m(a[None], b[None], c[None], need_weights=False)[0][0]
            torch.testing.assert_close(out.unbind()[i], alone, atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        m(nt1, nt1, nt1)
    with torch.inference_mode():
        m(nt1, nt1, nt1)
    for p in m.parameters():
        p.requires_grad_(False)
    m(nt1, nt1, nt1)


def test_nested_empty_is_refused_as_torch_does():
    m = MHA(10, 5, batch_first=True).eval()
    empty = torch.nested.nested_tensor([])
    with pytest.raises(AssertionError, match="query should be unbatched 2D or batched 3D tensor"):
        m(empty, empty, empty)


@torch.no_grad()
def test_nested_where_torch_accepts_it_matches_torch():
    """eval, no grad, need_weights=False, even heads: torch's fast path; same values here."""
    torch.manual_seed(0)
    ours = MHA(10, 2, batch_first=True).eval()
    theirs = twin(ours, embed_dim=10, num_heads=2, batch_first=True)
    nt = nested([4, 6, 1], 10, torch.strided)
    out, w = ours(nt, nt, nt, need_weights=False)
    ref, ref_w = theirs(nt, nt, nt, need_weights=False)
    assert w is None and ref_w is None
    for a, b in zip(out.unbind(), ref.unbind(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@torch.no_grad()
def test_two_masks_eval_matches_torch():
    torch.manual_seed(0)
    e, h, n, s = 14, 7, 8, 5
    x = torch.rand(n, s, e)
    attn_mask = torch.randint(0, 2, (s, s)).bool()
    kpm = torch.randint(0, 2, (n, s)).bool()
    ours = MHA(e, h, batch_first=True).eval()
    theirs = twin(ours, embed_dim=e, num_heads=h, batch_first=True)
    out, _ = ours(x, x, x, attn_mask=attn_mask, key_padding_mask=kpm)
    ref, _ = torch.nn.functional.multi_head_attention_forward(
        x.transpose(0, 1),
        x.transpose(0, 1),
        x.transpose(0, 1),
        e,
        h,
        theirs.in_proj_weight,
        theirs.in_proj_bias,
        None,
        None,
        False,
        0.0,
        theirs.out_proj.weight,
        theirs.out_proj.bias,
        training=False,
        key_padding_mask=kpm,
        need_weights=False,
        attn_mask=attn_mask,
    )
    ref = ref.transpose(0, 1)
    dead = (attn_mask[None] | kpm[:, None]).all(-1, keepdim=True).expand(n, s, e)
    torch.testing.assert_close(out.masked_fill(dead, 0), ref.masked_fill(dead, 0))
    assert torch.count_nonzero(out[dead]) == 0  # ours: zeros, never NaN


@pytest.mark.parametrize("grad", [False, True])
def test_half_bias_double_input(grad):
    torch.manual_seed(0)
    ours = MHA(4, 4, batch_first=True, dtype=torch.double).eval()
    ours.in_proj_bias = torch.nn.Parameter(torch.randn(12).to(torch.half))
    theirs = torch.nn.MultiheadAttention(4, 4, batch_first=True, dtype=torch.double).eval()
    theirs.load_state_dict(ours.state_dict())
    theirs.in_proj_bias = torch.nn.Parameter(ours.in_proj_bias.detach().clone())
    q = torch.randn(4, 4, 4, dtype=torch.double)
    with torch.set_grad_enabled(grad):
        out, w = ours(q, q, q)
        ref, ref_w = theirs(q, q, q)
    assert out.dtype == ref.dtype == torch.double
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(w, ref_w)


@torch.no_grad()
def test_small_double_eval():
    ours = MHA(4, 4, batch_first=True, dtype=torch.double).eval()
    theirs = twin(ours, embed_dim=4, num_heads=4, batch_first=True, dtype=torch.double)
    q = torch.randn(4, 4, 4, dtype=torch.double)
    torch.testing.assert_close(ours(q, q, q)[0], theirs(q, q, q)[0])


@torch.no_grad()
def test_in_proj_bias_none():
    ours = MHA(2, 2, bias=False, dtype=torch.double)
    theirs = twin(ours, embed_dim=2, num_heads=2, bias=False, dtype=torch.double)
    q = torch.rand(2, 2, 2, dtype=torch.double)
    torch.testing.assert_close(ours(q, q, q)[0], theirs(q, q, q)[0])


@torch.no_grad()
def test_in_proj_weight_none():
    ours = MHA(4, 4, vdim=2, kdim=2, dtype=torch.double)
    assert ours.in_proj_weight is None
    theirs = twin(ours, embed_dim=4, num_heads=4, vdim=2, kdim=2, dtype=torch.double)
    q, k = torch.rand(4, 4, 4, dtype=torch.double), torch.rand(4, 4, 2, dtype=torch.double)
    torch.testing.assert_close(ours(q, k, k)[0], theirs(q, k, k)[0])
