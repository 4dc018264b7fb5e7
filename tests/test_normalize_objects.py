"""A normalisation is one object: its dense form, blockwise fold and finish, per-row statistic and
tile gradients agree with each other (float64, exact up to rounding)."""

from __future__ import annotations

import itertools

import pytest
import torch

import selfattention as sa
from selfattention.functional import normalize as nz

BUILTIN = [nz.SOFTMAX, nz.SUM, nz.RELU]


def tile_inputs(seed=0, rows=5, keys=12, e=3):
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(2, rows, keys, generator=g, dtype=torch.float64) + 0.1  # > 0: sum is defined
    allowed = torch.rand(2, rows, keys, generator=g) < 0.7
    allowed[0, 1] = False  # a row with no key
    v = torch.randn(2, keys, e, generator=g, dtype=torch.float64)
    return s, allowed, v


def statistic(norm, s, allowed):
    """What the docstring says the per-row statistic is."""
    if norm is nz.SOFTMAX:
        lse = torch.logsumexp(s.masked_fill(~allowed, float("-inf")), -1, keepdim=True)
        return lse.masked_fill(~allowed.any(-1, keepdim=True), float("inf"))
    count = allowed.sum(-1, keepdim=True).to(s.dtype)
    if norm is nz.SUM:
        return s.masked_fill(~allowed, 0.0).sum(-1, keepdim=True)  # 0 without keys
    return count


def fold_in_tiles(norm, s, allowed, v, cuts):
    state = nz.RowState()
    for a, b in itertools.pairwise(cuts):
        norm.fold(state, s[..., a:b].clone(), allowed[..., a:b], v[..., a:b, :])
    out = torch.empty(*s.shape[:-1], v.shape[-1], dtype=s.dtype)
    stat = torch.empty(*s.shape[:-1], 1, dtype=s.dtype)
    norm.finish(state, out, stat)
    return out, stat


def test_resolve_once_to_an_object():
    assert nz.resolve("softmax") is nz.SOFTMAX and nz.resolve(nz.RELU) is nz.RELU
    user = nz.resolve(torch.sigmoid)
    assert isinstance(user, nz.UserNormalization) and not user.blockwise
    assert all(n.blockwise for n in BUILTIN)
    assert nz.NORMALIZATIONS == {"softmax": nz.SOFTMAX, "sum": nz.SUM, "relu": nz.RELU}
    with pytest.raises(ValueError, match=r"normalize must be one of .*'sparsemax'"):
        nz.resolve("sparsemax")
    q = torch.zeros(1, 1, 3, 2)
    call = sa.functional.call.make_call(
        q, q, q, mask=None, bias=None, causal=False, window=None, scale=None,
        normalize="relu", dropout_p=0.0, return_weights=False,
    )  # fmt: skip
    assert call.normalize is nz.RELU


@pytest.mark.parametrize("norm", BUILTIN, ids=lambda n: n.name)
def test_fold_and_finish_equal_the_dense_form_with_the_documented_statistic(norm):
    s, allowed, v = tile_inputs()
    dense = norm.dense(s, allowed) @ v
    for cuts in ([0, 12], [0, 5, 12], [0, 1, 7, 8, 12]):
        out, stat = fold_in_tiles(norm, s, allowed, v, cuts)
        torch.testing.assert_close(out, dense, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(stat, statistic(norm, s, allowed), rtol=1e-12, atol=1e-12)
    assert float(out[0, 1].abs().max()) == 0.0 and float(stat[0, 1]) == norm.empty_stat
    whole = torch.empty_like(dense)
    stat = torch.empty(*s.shape[:-1], 1, dtype=s.dtype)
    norm.whole(s.clone(), allowed, v, whole, stat)
    torch.testing.assert_close(whole, dense, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stat, statistic(norm, s, allowed), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("norm", BUILTIN, ids=lambda n: n.name)
def test_the_statistic_merges_partial_results_exactly(norm):
    """What a later feature needs: results over disjoint key sets merge into the full one."""
    s, allowed, v = tile_inputs(seed=1)
    allowed[:, :, 0] = True  # every row has a key in both halves
    allowed[:, :, 11] = True
    full = norm.dense(s, allowed) @ v
    (o1, t1), (o2, t2) = (
        fold_in_tiles(norm, s[..., a:b], allowed[..., a:b], v[..., a:b, :], [0, b - a])
        for a, b in ((0, 6), (6, 12))
    )
    if norm is nz.SOFTMAX:
        lse = torch.logaddexp(t1, t2)
        merged = torch.exp(t1 - lse) * o1 + torch.exp(t2 - lse) * o2
    else:
        merged = (t1 * o1 + t2 * o2) / (t1 + t2)
    torch.testing.assert_close(merged, full, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("norm", BUILTIN, ids=lambda n: n.name)
def test_tile_gradients_equal_autograd_of_the_dense_form(norm):
    s, allowed, v = tile_inputs(seed=2)
    s = s.requires_grad_()
    weights = norm.dense(s, allowed)
    out = weights @ v
    dout = torch.randn_like(out)
    (ds_ref,) = torch.autograd.grad(out, s, dout)
    stat = statistic(norm, s.detach(), allowed)
    delta = (dout * out.detach()).sum(-1, keepdim=True)
    p, ds = norm.grads(s.detach().clone(), allowed, stat, delta, dout, v)
    torch.testing.assert_close(p, weights.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ds.masked_fill(~allowed, 0.0), ds_ref.masked_fill(~allowed, 0.0))


def test_sum_finish_checks_only_real_rows():
    s, allowed, v = tile_inputs()
    s[1, 2] = -s[1, 2]  # a real row with keys summing to < 0
    state = nz.RowState()
    nz.SUM.fold(state, s.clone(), allowed, v)
    out = torch.empty(2, 5, 3, dtype=s.dtype)
    stat = torch.empty(2, 5, 1, dtype=s.dtype)
    with pytest.raises(ValueError, match=r'normalize="sum" .* 1 row\(s\) sum to <= 0'):
        nz.SUM.finish(state, out, stat)
    rows = torch.ones(2, 5, 1, dtype=torch.bool)
    rows[1, 2] = False  # the same row marked as padding: not checked
    nz.SUM.finish(state, out, stat, rows)


def test_an_object_can_be_passed_where_a_name_can():
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, 9, 4, generator=g, dtype=torch.float64) for _ in range(3))
    for backend in ("math", "chunked", "window"):
        torch.testing.assert_close(
            sa.attention(q, k, v, normalize=nz.RELU, window=2, backend=backend),
            sa.attention(q, k, v, normalize="relu", window=2, backend="math"),
        )
