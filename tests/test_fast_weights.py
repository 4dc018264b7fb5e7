"""return_weights from every backend: rebuilt from the row statistic, equal to math's weights.

Float64 <= 1e-12, float32 ~1e-6, for masks, causal, windows, bias and every normalisation on
awkward shapes; ``weights_rows`` returns only the chosen rows; ``explain_dispatch`` says how the
weights were served; auto no longer falls back to math because weights were asked for.
"""

from __future__ import annotations

import pytest
import torch

import selfattention as sa
from selfattention.functional import neighborhood_attention

F64 = torch.float64


def inputs(nq, nk, d=7, e=5, dtype=F64, seed=0, positive=False):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        t = torch.randn(*shape, generator=g, dtype=F64)
        return (t.abs() + 0.1 if positive else t).to(dtype)

    q, k, v = r(2, 3, nq, d), r(2, 3, nk, d), r(2, 3, nk, e)
    mask = torch.rand(2, 1, nq, nk, generator=g) < 0.75
    mask[1, 0, min(3, nq - 1)] = False  # a row with no key
    bias = (0.3 * torch.randn(1, 3, nq, nk, generator=g, dtype=F64)).to(dtype)
    bias[0, 2, 0, : min(5, nk)] = float("-inf")
    return q, k, v, mask, bias


CASES = [
    dict(),
    dict(mask=True),
    dict(causal=True),
    dict(window=(4, 2)),
    dict(window=(0, 9), mask=True, bias=True),
    dict(causal=True, window=(6, None), bias=True),
    dict(window=3, mask=True),
]
SHAPES = [(1, 1), (37, 37), (45, 70), (70, 45)]
BACKENDS = ["sdpa", "chunked", "window"]


def call_kwargs(case, mask, bias):
    kw = dict(case)
    kw["mask"] = mask if case.get("mask") else None
    kw["bias"] = bias if case.get("bias") else None
    return kw


def serves(backend, q, k, v, **kw):
    try:
        sa.explain_dispatch(q, k, v, backend=backend, return_weights=True, **kw)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("normalize", ["softmax", "sum", "relu"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_weights_equal_math(backend, normalize, shape, case):
    q, k, v, mask, bias = inputs(*shape, positive=normalize == "sum")
    kw = call_kwargs(case, mask, bias)
    kw["normalize"] = normalize
    if not serves(backend, q, k, v, **kw):
        pytest.skip(f"{backend} refuses {normalize} {case}")
    out_m, w_m = sa.attention(q, k, v, return_weights=True, backend="math", **kw)
    out, w = sa.attention(q, k, v, return_weights=True, backend=backend, **kw)
    assert w.shape == w_m.shape and w.dtype == F64
    assert not torch.isnan(w).any()
    assert float((w - w_m).abs().max()) <= 1e-12
    assert float((out - out_m).abs().max()) <= 1e-12
    # The same weights from the backend's own statistic (asked for with return_stats).
    _, w_st, st = sa.attention(
        q, k, v, return_weights=True, return_stats=True, backend=backend, **kw
    )
    assert float((w_st - w_m).abs().max()) <= 1e-12 and st.normalize == normalize
    rows = [shape[0] - 1, 0, shape[0] // 2]
    _, w_rows = sa.attention(q, k, v, return_weights=True, weights_rows=rows, backend=backend, **kw)
    assert float((w_rows - w[:, :, rows]).abs().max()) <= 1e-13


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES[1:], ids=str)
def test_float32_weights_within_dtype_tolerance(backend, case):
    q, k, v, mask, bias = inputs(45, 70, dtype=torch.float32, seed=1)
    kw = call_kwargs(case, mask, bias)
    if not serves(backend, q, k, v, **kw):
        pytest.skip(f"{backend} refuses {case}")
    kw64 = {**kw, "bias": None if kw["bias"] is None else kw["bias"].double()}
    ref = sa.attention(q.double(), k.double(), v.double(), return_weights=True, **kw64)[1]
    w = sa.attention(q, k, v, return_weights=True, backend=backend, **kw)[1]
    assert w.dtype == torch.float32
    assert float((w.double() - ref).abs().max()) <= 2e-6


@pytest.mark.parametrize("backend", ["sdpa", "chunked", "window"])
@pytest.mark.parametrize("lse", [False, True])
@pytest.mark.parametrize("shape", [(23, 31), (40, 20)], ids=str)
def test_gradients_through_rebuilt_weights_equal_math(backend, lse, shape):
    q, k, v, mask, bias = inputs(*shape)
    kw = dict(mask=mask, window=(5, 3), weights_rows=[0, -1, 7, 8, 30 % shape[0]])

    def grads(name):
        leaves = [t.detach().clone().requires_grad_() for t in (q, k, v, bias)]
        out, w, *_ = sa.attention(*leaves[:3], bias=leaves[3], return_weights=True,
                                  return_lse=lse, backend=name, **kw)  # fmt: skip
        sel = torch.cos(torch.arange(w.numel(), dtype=F64)).view_as(w)
        ((w * sel).sum() + out.sum()).backward()
        return [t.grad for t in leaves]

    for a, b in zip(grads("math"), grads(backend), strict=True):
        assert not torch.isnan(b).any()
        assert float((a - b).abs().max()) <= 1e-10


@pytest.mark.parametrize(
    "rows",
    [slice(2, 9, 3), [0, -1, 5, 5], torch.tensor([4, 1]), range(3), slice(None)],
    ids=["slice", "list-neg-dup", "tensor", "range", "all"],
)
def test_weights_rows_forms(rows):
    q, k, v, mask, _ = inputs(12, 20)
    full = sa.attention(q, k, v, mask=mask, window=(3, 3), return_weights=True, backend="math")[1]
    idx = torch.arange(12)[rows] if isinstance(rows, slice) else torch.as_tensor(list(rows)) % 12
    for backend in ("math", "chunked", "window", "sdpa"):
        w = sa.attention(q, k, v, mask=mask, window=(3, 3), return_weights=True,
                         weights_rows=rows, backend=backend)[1]  # fmt: skip
        assert w.shape == (2, 3, idx.numel(), 20)
        assert float((w - full[:, :, idx]).abs().max()) <= 1e-12


def test_weights_with_lse_come_in_the_documented_order():
    q, k, v, _, _ = inputs(9, 9)
    _, w, lse = sa.attention(q, k, v, return_weights=True, return_lse=True, backend="chunked")
    s = q @ k.transpose(-1, -2) / 7**0.5
    assert float((lse - torch.logsumexp(s, -1)).abs().max()) <= 1e-12
    assert float((w - torch.softmax(s, -1)).abs().max()) <= 1e-12
    _, w2, st = sa.attention(q, k, v, return_weights=True, return_stats=True, backend="sdpa")
    assert torch.equal(st.lse, st.value) and float((w2 - w).abs().max()) <= 1e-12


def test_auto_no_longer_falls_back_to_math_for_weights():
    big = torch.zeros(1, 8, 4096, 8)
    d = sa.explain_dispatch(big, big, big, window=64, return_weights=True, weights_rows=[1, 2])
    assert d.chosen == "window" and "math" not in d.refused
    assert "rebuilt exactly after window" in d.weights and "2 row(s)" in d.weights
    assert "weights: rebuilt" in str(d)
    d = sa.explain_dispatch(big, big, big, window=64, return_weights=True, return_lse=True)
    assert "rebuilt exactly from window's log-sum-exp" in d.weights
    d = sa.explain_dispatch(big, big, big, return_weights=True)
    assert d.chosen == "sdpa" and "every row" in d.weights
    d = sa.explain_dispatch(big, big, big, causal=True, normalize="relu", return_weights=True)
    assert d.chosen == "chunked" and "key count" in d.weights
    d = sa.explain_dispatch(big, big, big, return_weights=True, dropout_p=0.1)
    assert d.chosen == "math" and "dropout" in d.refused["sdpa"]
    assert d.weights.startswith("materialised by math")


@pytest.mark.parametrize("normalize", ["softmax", "relu"])
def test_tiles_rebuilds_neighbourhood_weights(normalize):
    q, k, v, _, _ = inputs(48, 48)
    kw = dict(grid=(6, 8), kernel_size=3, normalize=normalize, return_weights=True)
    out_m, w_m = neighborhood_attention(q, k, v, backend="math", **kw)
    out, w = neighborhood_attention(q, k, v, backend="tiles", **kw)
    assert float((w - w_m).abs().max()) <= 1e-12 and float((out - out_m).abs().max()) <= 1e-12
    _, w2, st = neighborhood_attention(q, k, v, backend="tiles", return_stats=True, **kw)
    _, st_m = neighborhood_attention(q, k, v, backend="math", return_stats=True, **kw_no_w(kw))
    assert float((w2 - w_m).abs().max()) <= 1e-12
    assert float((st.value - st_m.value).abs().max()) <= 1e-12


def kw_no_w(kw):
    return {key: val for key, val in kw.items() if key != "return_weights"}


def test_fully_masked_rows_have_zero_weights_and_finite_gradients():
    q, k, v, _, _ = inputs(10, 10)
    mask = torch.ones(10, 10, dtype=torch.bool)
    mask[4] = False
    for backend in ("sdpa", "chunked", "window"):
        leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
        out, w, lse = sa.attention(*leaves, mask=mask, window=(2, 2), return_weights=True,
                                   return_lse=True, backend=backend)  # fmt: skip
        assert float(w[:, :, 4].detach().abs().max()) == 0.0 and bool(
            torch.isneginf(lse[:, :, 4]).all()
        )
        (w.sum() + out.sum() + lse.masked_fill(torch.isinf(lse), 0).sum()).backward()
        assert all(torch.isfinite(t.grad).all() for t in leaves), backend
