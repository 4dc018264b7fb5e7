"""return_lse / return_stats from every backend, and merge_attention over disjoint key sets.

Float64 throughout: the log-sum-exp equals logsumexp of the masked scores, partial results over
2-4 disjoint key blocks (contiguous or strided) merge to attention over all keys (values and
gradients, <= 1e-12 / 1e-10), for softmax, sum and relu, with masks, causal, windows and bias.
"""

from __future__ import annotations

import pytest
import torch

import selfattention as sa
from selfattention.functional import masks, merge_attention
from selfattention.functional.stats import RowStats

F64 = torch.float64


def rand(*shape, seed=0, positive=False):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=g, dtype=F64)
    return t.abs() + 0.1 if positive else t


def inputs(nq=13, nk=29, d=5, e=3, seed=0, positive=False):
    q = rand(2, 3, nq, d, seed=seed, positive=positive)
    k = rand(2, 3, nk, d, seed=seed + 1, positive=positive)
    v = rand(2, 3, nk, e, seed=seed + 2)
    g = torch.Generator().manual_seed(seed + 3)
    mask = torch.rand(2, 1, nq, nk, generator=g) < 0.8
    mask[0, 0, 2] = False  # a row with no key
    bias = rand(1, 3, nq, nk, seed=seed + 4) * 0.3
    bias[0, 1, 5, :4] = float("-inf")  # -inf bias = masked
    return q, k, v, mask, bias


def reference_lse(q, k, mask=None, bias=None, causal=False, window=None, scale=None):
    nq, nk = q.shape[-2], k.shape[-2]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    s = q @ k.transpose(-1, -2) * scale + (0 if bias is None else bias)
    allowed = masks.build(mask, causal, masks.resolve_window(window), nq, nk)
    if allowed is not None:
        s = s.masked_fill(~allowed, float("-inf"))
    return torch.logsumexp(s, -1)  # -inf for a row without keys


LSE_CASES = [
    dict(),
    dict(mask="mask"),
    dict(causal=True),
    dict(window=(3, 4)),
    dict(window=(0, 6), mask="mask", bias="bias"),
    dict(causal=True, bias="bias"),
]
BACKENDS = ["math", "chunked", "window", "sdpa"]


def serves(backend, q, **kw):
    try:
        sa.explain_dispatch(q, q, q, backend=backend, **kw)
    except ValueError:
        return False
    return True


def resolve(kw, mask, bias):
    return {
        key: (mask if val == "mask" else bias if val == "bias" else val) for key, val in kw.items()
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", LSE_CASES, ids=str)
def test_lse_equals_the_logsumexp_of_the_masked_scores(backend, case):
    q, k, v, mask, bias = inputs()
    kw = resolve(case, mask, bias)
    if not serves(backend, q, **kw):
        pytest.skip(f"{backend} does not serve {case}")
    out, lse = sa.attention(q, k, v, return_lse=True, backend=backend, **kw)
    ref = reference_lse(q, k, **kw)
    assert lse.shape == (2, 3, 13) and lse.dtype == F64
    assert torch.equal(torch.isneginf(lse), torch.isneginf(ref))
    finite = torch.isfinite(ref)
    assert float((lse[finite] - ref[finite]).abs().max()) <= 1e-12
    assert float((out - sa.attention(q, k, v, backend=backend, **kw)).abs().max()) <= 1e-12
    assert not torch.isnan(out).any()
    if "mask" in case:
        assert float(out[0, :, 2].abs().max()) == 0.0 and bool(torch.isneginf(lse[0, :, 2]).all())


def grads(backend, q, k, v, bias=None, stats=False, normalize="softmax", **kw):
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    b = None if bias is None else bias.detach().clone().requires_grad_()
    out, st = sa.attention(
        *leaves, bias=b, backend=backend, normalize=normalize, return_stats=True, **kw
    )
    w = torch.sin(torch.arange(out.numel(), dtype=F64)).view_as(out)
    value = st.value.masked_fill(torch.isinf(st.value), 0.0)
    w2 = torch.cos(torch.arange(value.numel(), dtype=F64)).view_as(value)
    ((out * w).sum() + (value * w2).sum()).backward()
    got = [out.detach(), st.value.detach(), *(t.grad for t in leaves)]
    return got + ([b.grad] if b is not None else [])


@pytest.mark.parametrize("backend", ["chunked", "window", "sdpa"])
@pytest.mark.parametrize("normalize", ["softmax", "sum", "relu"])
@pytest.mark.parametrize("case", LSE_CASES[1:], ids=str)
def test_the_statistic_carries_exact_gradients(backend, normalize, case):
    q, k, v, mask, bias = inputs(positive=normalize == "sum")
    kw = resolve(case, mask, bias)
    if not serves(backend, q, normalize=normalize, **kw):
        pytest.skip(f"{backend} does not serve {normalize} {case}")
    ref = grads("math", q, k, v, normalize=normalize, **kw)
    got = grads(backend, q, k, v, normalize=normalize, **kw)
    names = ["out", "stat", "dq", "dk", "dv", "dbias"]
    assert len(ref) == len(got)
    for name, a, b in zip(names, ref, got, strict=False):
        assert torch.equal(torch.isinf(a), torch.isinf(b)), name
        assert not torch.isnan(b).any(), name
        fin = torch.isfinite(a)
        assert float((a[fin] - b[fin]).abs().max()) <= 1e-10, f"{backend} {name}"


def test_sum_and_relu_statistics_are_the_documented_ones():
    q, k, v, mask, _ = inputs(positive=True)
    allowed = mask.expand(2, 3, -1, -1)
    s = q @ k.transpose(-1, -2) * 5**-0.5
    for backend in ("math", "chunked"):
        _, z = sa.attention(q, k, v, mask=mask, normalize="sum", return_stats=True, backend=backend)
        _, c = sa.attention(
            q, k, v, mask=mask, normalize="relu", return_stats=True, backend=backend
        )
        assert isinstance(z, RowStats) and z.normalize == "sum"
        torch.testing.assert_close(z.total, s.masked_fill(~allowed, 0).sum(-1), rtol=0, atol=1e-12)
        assert torch.equal(c.count, allowed.sum(-1).to(F64))
        with pytest.raises(AttributeError, match="no softmax"):
            _ = c.lse


# -- merging -------------------------------------------------------------------------------------


def key_parts(nk: int, parts: int, strided: bool) -> list[torch.Tensor]:
    idx = torch.arange(nk)
    if strided:
        return [idx[p::parts] for p in range(parts)]
    return list(torch.tensor_split(idx, parts))


MERGE_CASES = [
    dict(),
    dict(mask="mask"),
    dict(causal=True),
    dict(window=(4, 2)),
    dict(window=(5, 5), mask="mask", bias="bias"),
    dict(causal=True, bias="bias"),
]


def partial_and_full(normalize, case, parts, strided, backend="math"):
    """Leaves, the attention over all keys, and the merge of the attention over each part."""
    q, k, v, mask, bias = inputs(positive=normalize == "sum", seed=7)
    kw = resolve(case, mask, bias)
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    b = kw.get("bias")
    if b is not None:
        b = kw["bias"] = b.detach().clone().requires_grad_()
    full = sa.attention(q, k, v, normalize=normalize, backend="math", **kw)
    # A key subset loses positions: causal and window become an explicit mask first.
    allowed = masks.build(
        kw.get("mask"), kw.get("causal", False), masks.resolve_window(kw.get("window")), 13, 29
    )
    outs, stats = [], []
    for idx in key_parts(29, parts, strided):
        sub = dict(mask=None if allowed is None else allowed[..., idx])
        if b is not None:
            sub["bias"] = b[..., idx]
        o, st = sa.attention(
            q, k[:, :, idx], v[:, :, idx], normalize=normalize, return_stats=True,
            backend=backend, **sub,
        )  # fmt: skip
        outs.append(o)
        stats.append(st)
    merged, _ = merge_attention(outs, stats)
    leaves = [q, k, v] + ([b] if b is not None else [])
    return leaves, full, merged


@pytest.mark.parametrize("normalize", ["softmax", "sum", "relu"])
@pytest.mark.parametrize("case", MERGE_CASES, ids=str)
@pytest.mark.parametrize(("parts", "strided"), [(2, False), (3, True), (4, False), (4, True)])
def test_merge_equals_attention_over_all_keys(normalize, case, parts, strided):
    leaves, full, merged = partial_and_full(normalize, case, parts, strided)
    assert not torch.isnan(merged).any()
    assert float((merged - full).detach().abs().max()) <= 1e-12
    w = torch.sin(torch.arange(full.numel(), dtype=F64)).view_as(full)
    g_full = torch.autograd.grad((full * w).sum(), leaves)
    g_merged = torch.autograd.grad((merged * w).sum(), leaves)
    for a, b in zip(g_full, g_merged, strict=True):
        assert not torch.isnan(b).any()
        assert float((a - b).abs().max()) <= 1e-12


@pytest.mark.parametrize("backend", ["chunked", "sdpa"])
def test_merge_of_fast_backend_parts(backend):
    leaves, full, merged = partial_and_full("softmax", dict(mask="mask", bias="bias"), 3, True,
                                            backend=backend)  # fmt: skip
    assert float((merged - full).detach().abs().max()) <= 1e-12
    g_full = torch.autograd.grad(full.sum(), leaves)
    g_merged = torch.autograd.grad(merged.sum(), leaves)
    for a, b in zip(g_full, g_merged, strict=True):
        assert float((a - b).abs().max()) <= 1e-10


def test_merge_is_associative_and_accepts_plain_lse():
    q, k, v, mask, _ = inputs(seed=3)
    parts = key_parts(29, 3, False)
    res = [sa.attention(q, k[:, :, i], v[:, :, i], mask=mask[..., i], return_lse=True)
           for i in parts]  # fmt: skip
    all_at_once, st = merge_attention([o for o, _ in res], [lse for _, lse in res])
    first, st01 = merge_attention([res[0][0], res[1][0]], [res[0][1], res[1][1]])
    stepwise, st2 = merge_attention([first, res[2][0]], [st01, res[2][1]])
    assert float((stepwise - all_at_once).abs().max()) <= 1e-12
    assert float((st2.lse - st.lse).nan_to_num(0, 0, 0).abs().max()) <= 1e-12
    full, lse = sa.attention(q, k, v, mask=mask, return_lse=True)
    assert float((all_at_once - full).abs().max()) <= 1e-12
    assert torch.equal(torch.isneginf(st.lse), torch.isneginf(lse))


@pytest.mark.parametrize("normalize", ["softmax", "sum", "relu"])
def test_merge_gradcheck_with_empty_rows(normalize):
    g = torch.Generator().manual_seed(0)
    outs = [torch.randn(1, 2, 4, 3, generator=g, dtype=F64) for _ in range(3)]
    if normalize == "softmax":
        stats = [torch.randn(1, 2, 4, generator=g, dtype=F64) for _ in range(3)]
        empty = float("-inf")
    else:
        stats = [torch.rand(1, 2, 4, generator=g, dtype=F64) + 0.5 for _ in range(3)]
        empty = 0.0
    for p in range(3):  # row 0 empty everywhere, row 1 empty in two parts
        outs[p][:, :, 0] = 0.0
        stats[p][:, :, 0] = empty
        if p < 2:
            outs[p][:, :, 1] = 0.0
            stats[p][:, :, 1] = empty
    leaves = [t.requires_grad_() for t in outs + stats]

    def f(*xs):
        out, st = merge_attention(list(xs[:3]), list(xs[3:]), normalize=normalize)
        return out, st.value.masked_fill(torch.isinf(st.value), 0.0)

    assert torch.autograd.gradcheck(f, leaves)
    out, st = merge_attention(outs, stats, normalize=normalize)
    assert float(out[:, :, 0].detach().abs().max()) == 0.0
    assert float(st.value[0, 0, 0].detach()) == empty
    out.sum().backward()
    assert all(not torch.isnan(t.grad).any() for t in leaves)


def test_merge_bad_input_names_the_problem():
    o = torch.zeros(1, 1, 2, 3)
    with pytest.raises(ValueError, match="equal length"):
        merge_attention([o, o], [torch.zeros(1, 1, 2)])
    with pytest.raises(ValueError, match=r"stats\[0\] \(b, h, i\)"):
        merge_attention([o], [torch.zeros(1, 1, 3)])
    with pytest.raises(ValueError, match="different normalisations"):
        merge_attention(
            [o, o], [RowStats("sum", torch.ones(1, 1, 2)), RowStats("relu", torch.ones(1, 1, 2))]
        )


def test_sum_parts_with_negative_row_sums_merge_exactly():
    """A part's row sum is one term of the row's sum: it may be negative (not the whole row)."""
    q, k, v, _, _ = inputs(seed=11)
    q, k = q * 0.1, k * 0.1
    bias = torch.where(torch.arange(29) % 2 == 0, 3.0, -1.0).to(F64).expand(1, 1, 13, 29)
    bias = bias.clone().requires_grad_()
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    full = sa.attention(*leaves, bias=bias, normalize="sum", backend="math")
    with pytest.raises(ValueError, match="sum to > 0"):
        sa.attention(q, k[:, :, 1::2], v[:, :, 1::2], bias=bias[..., 1::2], normalize="sum")
    for backend in ("math", "chunked"):
        parts = [
            sa.attention(leaves[0], leaves[1][:, :, i::2], leaves[2][:, :, i::2],
                         bias=bias[..., i::2], normalize="sum", return_stats=True,
                         backend=backend)
            for i in (0, 1)
        ]  # fmt: skip
        assert bool((parts[1][1].total < 0).all())
        merged, _st = merge_attention([o for o, _ in parts], [s for _, s in parts])
        assert float((merged - full).detach().abs().max()) <= 1e-12
        g_full = torch.autograd.grad(full.sum(), [*leaves, bias], retain_graph=True)
        g_merged = torch.autograd.grad(merged.sum(), [*leaves, bias])
        for a, b in zip(g_full, g_merged, strict=True):
            assert float((a - b).abs().max()) <= 1e-10
