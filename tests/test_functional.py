"""Every functional path against the float64 reference, on awkward sizes, in every dtype.

Backends are read from the registry at collection time, so a new backend is covered as soon as it
is registered; a backend that refuses a call (``explain_dispatch`` names the reason) is skipped
for that call only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import selfattention as sa
from conftest import (
    DTYPES,
    check_close,
    max_err,
    plain_attention,
    rand_mask,
    randn,
    reference_attention,
)
from selfattention import reference
from selfattention.functional import backends

BACKENDS = ["auto", *sorted(backends.REGISTRY)]


def sigmoid_torch(s: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    return torch.sigmoid(s)


def sigmoid_numpy(s: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-s))


@dataclass(frozen=True)
class Case:
    id: str
    i: int
    j: int
    d: int
    e: int | None = None  # value size; defaults to d
    b: int = 2
    h: int = 2
    mask: str | None = None  # "random", "padding", "empty_rows", "2d", "bhij"
    bias: str | None = None  # "random", "alibi", "neginf"
    causal: bool = False
    window: object = None
    scale: float | None = None
    normalize: str = "softmax"  # or "sigmoid" (a callable)
    kwargs: dict = field(default_factory=dict, compare=False)


CASES = [
    Case("seq1-d1", 1, 1, 1),
    Case("seq7-d3", 7, 7, 3),
    Case("seq97-d64", 97, 97, 64),
    Case("seq257-d64", 257, 257, 64, b=1),
    Case("seq257-d1", 257, 257, 1, b=1, h=1),
    Case("cross-7x97-d3", 7, 97, 3),
    Case("cross-97x7-d64", 97, 7, 64),
    Case("cross-1x257-d3", 1, 257, 3),
    Case("value-size-5", 7, 97, 3, e=5),
    Case("scale-1", 7, 7, 3, scale=1.0),
    Case("causal-97", 97, 97, 64, causal=True),
    Case("causal-cross-7x97", 7, 97, 3, causal=True),
    Case("causal-cross-97x7", 97, 7, 3, causal=True),
    Case("window3-97", 97, 97, 64, window=3),
    Case("window5-0-97", 97, 97, 3, window=(5, 0)),
    Case("window0-7-97", 97, 97, 3, window=(0, 7)),
    Case("window0-7", 7, 7, 3, window=0),
    Case("window0-0-cross", 7, 97, 3, window=(0, 0)),
    Case("window-ge-n", 257, 257, 64, b=1, window=300),
    Case("window-none-2", 97, 97, 3, window=(None, 2)),
    Case("window4-1-causal", 97, 97, 3, window=(4, 1), causal=True),
    Case("mask-2d", 97, 97, 3, mask="2d"),
    Case("mask-padding", 97, 97, 64, mask="padding"),
    Case("mask-empty-rows", 7, 7, 3, mask="empty_rows"),
    Case("mask-bhij-causal", 97, 97, 3, mask="bhij", causal=True),
    Case("mask-cross", 7, 97, 64, mask="random"),
    Case("bias-random", 97, 97, 64, bias="random"),
    Case("bias-alibi-causal", 97, 97, 3, bias="alibi", causal=True),
    Case("bias-neginf", 7, 7, 3, bias="neginf"),
    Case("bias-mask-window", 97, 97, 3, bias="random", mask="random", window=(3, 2)),
    Case("sum-97", 97, 97, 3, normalize="sum"),
    Case("sum-mask-empty", 7, 7, 3, normalize="sum", mask="empty_rows"),
    Case("sum-cross-causal", 7, 97, 64, normalize="sum", causal=True),
    Case("relu-97", 97, 97, 64, normalize="relu"),
    Case("relu-window-mask", 97, 97, 3, normalize="relu", window=2, mask="random"),
    Case("relu-empty", 7, 7, 1, normalize="relu", mask="empty_rows"),
    Case("callable-97", 97, 97, 3, normalize="sigmoid"),
    Case("callable-mask-causal", 7, 7, 3, normalize="sigmoid", mask="random", causal=True),
]


def build(case: Case, dtype: torch.dtype, seed: int = 0):
    """(q, k, v, kwargs for sa.attention, kwargs for the reference)."""
    b, h, e = case.b, case.h, case.e or case.d
    positive = case.normalize == "sum"  # positive q, k: every row sum > 0
    q = randn(b, h, case.i, case.d, dtype=dtype, seed=seed, positive=positive)
    k = randn(b, h, case.j, case.d, dtype=dtype, seed=seed + 1, positive=positive)
    v = randn(b, h, case.j, e, dtype=dtype, seed=seed + 2)
    mask = None
    if case.mask == "random":
        mask = rand_mask(b, 1, case.i, case.j, seed=seed + 3)
    elif case.mask == "2d":
        mask = rand_mask(case.i, case.j, seed=seed + 3)
    elif case.mask == "bhij":
        mask = rand_mask(b, h, case.i, case.j, seed=seed + 3)
    elif case.mask == "padding":
        mask = sa.masks.padding([case.j, case.j // 2 + 1][:b], case.j)
    elif case.mask == "empty_rows":
        mask = rand_mask(b, h, case.i, case.j, seed=seed + 3)
        mask[..., 1, :] = False  # query 1 may attend to nothing, in every head
        mask[0, 0, -1, :] = False
    bias = None
    if case.bias == "random":
        bias = randn(b, h, case.i, case.j, dtype=dtype, seed=seed + 4)
    elif case.bias == "alibi":
        bias = torch.from_numpy(reference.alibi_bias(h, case.i, case.j)).to(dtype)
    elif case.bias == "neginf":
        bias = randn(b, 1, case.i, case.j, dtype=dtype, seed=seed + 4)
        bias[rand_mask(b, 1, case.i, case.j, p=0.3, seed=seed + 5)] = -torch.inf
        bias[0, 0, 2, :] = -torch.inf  # a fully masked row through the bias alone
    norm_t = sigmoid_torch if case.normalize == "sigmoid" else case.normalize
    norm_np = sigmoid_numpy if case.normalize == "sigmoid" else case.normalize
    common = dict(mask=mask, bias=bias, causal=case.causal, window=case.window, scale=case.scale)
    return q, k, v, {**common, "normalize": norm_t}, {**common, "normalize": norm_np}


def accepts(q, k, v, backend: str, **kw) -> str | None:
    """None if ``backend`` serves the call, else its reason for refusing."""
    try:
        sa.explain_dispatch(q, k, v, backend=backend, **kw)
    except ValueError as err:
        if "cannot serve" in str(err):
            return str(err)
        raise
    return None


_SEEN: dict[tuple[str, torch.dtype, str], dict[str, float] | None] = {}


def run_case(case: Case, dtype: torch.dtype, backend: str) -> dict[str, float] | None:
    """Compare one backend on one case; returns the errors, or None if the backend refused.

    Memoised, so that ``test_report_errors`` reuses the sweep when it runs in the same process.
    """
    key = (case.id, dtype, backend)
    if key not in _SEEN:
        _SEEN[key] = _run_case(case, dtype, backend)
    return _SEEN[key]


def _run_case(case: Case, dtype: torch.dtype, backend: str) -> dict[str, float] | None:
    q, k, v, kw, kw_ref = build(case, dtype)
    if accepts(q, k, v, backend, **kw) is not None:
        return None
    ref_out, ref_w = reference_attention(q, k, v, **kw_ref)
    plain_out, plain_w = plain_attention(q, k, v, **kw)
    errors = {"plain_out": max_err(plain_out, ref_out)}
    out = sa.attention(q, k, v, backend=backend, **kw)
    assert out.dtype == dtype
    errors["out"] = check_close(out, ref_out, plain_out, f"{case.id}/{backend}")
    errors["out_rel"] = errors["out"] / max(float(ref_out.abs().max()), 1e-300)
    if accepts(q, k, v, backend, return_weights=True, **kw) is None:
        out2, w = sa.attention(q, k, v, backend=backend, return_weights=True, **kw)
        assert w.shape == (case.b, case.h, case.i, case.j)
        errors["weights"] = check_close(w, ref_w, plain_w, f"{case.id}/{backend} weights")
        check_close(out2, ref_out, plain_out, f"{case.id}/{backend} (with weights)")
    return errors


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_reference(case: Case, dtype: torch.dtype, backend: str):
    if run_case(case, dtype, backend) is None:
        q, k, v, kw, _ = build(case, dtype)
        pytest.skip(f"{backend} refuses: {accepts(q, k, v, backend, **kw)}")


def test_new_backends_are_exercised():
    """Every registered backend accepts some case in float32 (else the sweep proves nothing)."""
    for name in backends.REGISTRY:
        if name == "tiles":  # serves 2-D grids only: tests/test_neighborhood.py
            q = torch.zeros(1, 1, 64, 4)
            assert sa.functional.explain_neighborhood_dispatch(q, q, q, (8, 8), 3).chosen == name
            continue
        served = []
        for case in CASES:
            q, k, v, kw, _ = build(case, torch.float32)
            if accepts(q, k, v, name, **kw) is None:
                served.append(case.id)
        assert served, f"backend {name!r} refused every case"


def test_report_errors():
    """Largest error against the float64 reference per dtype and backend -> results/errors.json.

    Run with ``pytest tests/test_functional.py::test_report_errors -s`` to see the table.
    """
    table: dict[str, dict[str, dict]] = {}
    for dtype in DTYPES:
        name = str(dtype).removeprefix("torch.")
        for backend in BACKENDS:
            worst: dict = {"out": 0.0, "out_rel": 0.0, "weights": None, "plain_out": 0.0}
            worst["worst_case"] = None
            for case in CASES:
                errors = run_case(case, dtype, backend) or {}
                if errors.get("out", -1.0) > worst["out"]:
                    worst["worst_case"] = case.id
                for key, err in errors.items():
                    worst[key] = max(worst[key] or 0.0, err)
            table.setdefault(name, {})[backend] = worst
    path = Path(__file__).resolve().parents[1] / "results" / "errors.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(table, indent=2) + "\n")
    head = ("dtype", "backend", "max |O-ref|", "relative", "max |W-ref|", "plain |O-ref|", "worst")
    lines = ["{:<9} {:<8} {:>12} {:>9} {:>12} {:>14}  {}".format(*head)]
    for dtype_name, row in table.items():
        for backend, w in row.items():
            weights = "-" if w["weights"] is None else f"{w['weights']:.3g}"
            lines.append(
                f"{dtype_name:<9} {backend:<8} {w['out']:>12.3g} {w['out_rel']:>9.2g} "
                f"{weights:>12} {w['plain_out']:>14.3g}  {w['worst_case']}"
            )
    print("\n" + "\n".join(lines))
    assert table["float64"]["math"]["out"] < 1e-12


@pytest.mark.parametrize("backend", BACKENDS)
def test_callable_sees_finite_scores_and_gives_finite_grads(backend):
    """-inf in the bias must not reach a user's normalize callable (s² would give NaN grads)."""
    q, k, v = (randn(1, 2, 5, 3, seed=s).requires_grad_() for s in range(3))
    bias = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    bias[..., 1, :] = -torch.inf  # an empty row
    bias[..., 2, 3] = -torch.inf
    seen = []

    def squares(s, allowed):
        seen.append(bool(torch.isfinite(s).all()))
        return s.square() / (1 + s.square().sum(-1, keepdim=True))

    kw = {"bias": bias, "normalize": squares}
    if accepts(q, k, v, backend, **kw) is not None:
        pytest.skip(f"{backend} refuses a callable")
    out = sa.attention(q, k, v, backend=backend, **kw)
    out.sum().backward()
    assert seen and all(seen)
    assert all(bool(torch.isfinite(t.grad).all()) for t in (q, k, v))
    sq = lambda s, allowed: s**2 / (1 + (s**2).sum(-1, keepdims=True))  # noqa: E731
    ref, _ = reference_attention(q, k, v, bias=bias, normalize=sq)
    torch.testing.assert_close(out.detach(), ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs(backend):
    """Heads split from (b, n, h, d) by a transpose are views, not copies: same numbers."""
    x = randn(2, 9, 3, 4, seed=0)  # (b, n, h, d)
    q, k, v = x.transpose(1, 2), (2 * x).transpose(1, 2), x.flip(-1).transpose(1, 2)
    assert not q.is_contiguous()
    kw = {"window": (2, 1), "mask": rand_mask(2, 1, 9, 9, seed=1)}
    if accepts(q, k, v, backend, **kw) is not None:
        pytest.skip(f"{backend} refuses this call")
    got = sa.attention(q, k, v, backend=backend, **kw)
    expected = sa.attention(q.contiguous(), k.contiguous(), v.contiguous(), backend="math", **kw)
    torch.testing.assert_close(got, expected)


def test_dropout_in_math_drops_and_rescales_the_weights():
    q, k, v = (randn(1, 2, 6, 4, seed=s) for s in range(3))
    _, w = sa.attention(q, k, v, backend="math", return_weights=True)
    torch.manual_seed(0)
    out, w_drop = sa.attention(q, k, v, backend="math", return_weights=True, dropout_p=0.25)
    kept = w_drop != 0
    assert 0 < int(kept.sum()) < w.numel()
    torch.testing.assert_close(w_drop[kept], w[kept] / 0.75)
    torch.testing.assert_close(out, w_drop @ v)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_is_unbiased(backend):
    """E[dropout(W) V] = W V: the mean over many independent draws approaches the plain output."""
    q, k, v = (randn(1, 1, 3, 2, seed=s) for s in range(3))
    expected = sa.attention(q, k, v, backend="math")
    reps = 20000
    big = [t.expand(reps, 1, 3, 2).contiguous() for t in (q, k, v)]
    if accepts(*big, backend, dropout_p=0.3) is not None:
        pytest.skip(f"{backend} refuses dropout")
    torch.manual_seed(0)
    out = sa.attention(*big, backend=backend, dropout_p=0.3)
    assert not torch.allclose(out[0], expected[0])  # dropout did happen
    torch.testing.assert_close(out.mean(0, keepdim=True), expected, atol=0.03, rtol=0)


# --- parity with torch's own scaled_dot_product_attention -----------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "kind", ["none", "bool-2d", "bool-4d", "is_causal", "float-mask", "causal-cross"]
)
def test_parity_with_torch_sdpa(kind: str, backend: str):
    b, h, i, j, d = 2, 3, 11, 11, 8
    if kind == "causal-cross":
        i = 5
    q, k, v = (randn(b, h, n, d, dtype=torch.float32, seed=s) for s, n in enumerate((i, j, j)))
    mask = rand_mask(b, h, i, j, seed=7)
    mask[..., 0] = True  # every query keeps a key: torch gives NaN for an empty row
    ours: dict = {}
    theirs: dict = {}
    if kind == "bool-2d":
        ours["mask"] = theirs["attn_mask"] = mask[0, 0]
    elif kind == "bool-4d":
        ours["mask"] = theirs["attn_mask"] = mask
    elif kind in ("is_causal", "causal-cross"):
        ours["causal"] = theirs["is_causal"] = True
    elif kind == "float-mask":
        ours["bias"] = theirs["attn_mask"] = randn(b, 1, i, j, dtype=torch.float32, seed=9)
    expected = F.scaled_dot_product_attention(q, k, v, **theirs)
    if accepts(q, k, v, backend, **ours) is not None:
        pytest.skip(f"{backend} refuses this call")
    got = sa.attention(q, k, v, backend=backend, **ours)
    torch.testing.assert_close(got, expected, atol=2e-6, rtol=1e-5)


def test_parity_is_causal_equals_tril_mask_in_torch():
    """Our top-left causal alignment is torch's: is_causal == tril mask even when i != j."""
    q, k, v = randn(1, 1, 4, 3, seed=0), randn(1, 1, 9, 3, seed=1), randn(1, 1, 9, 3, seed=2)
    tril = torch.ones(4, 9, dtype=torch.bool).tril()
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=tril)
    torch.testing.assert_close(sa.attention(q, k, v, causal=True), expected)
    torch.testing.assert_close(sa.attention(q, k, v, causal=True, backend="math"), expected)


# --- gradients ------------------------------------------------------------------------------

GRAD_CASES = {
    "plain": {},
    "causal": {"causal": True},
    "window": {"window": (1, 2)},
    "mask-empty-row": {"mask": "empty"},
    "bias": {"bias": True},
    "bias-neginf-row": {"bias": "neginf"},
    "causal-cross": {"causal": True, "cross": True},
    "sum": {"normalize": "sum"},
    "relu": {"normalize": "relu"},
}


@pytest.mark.parametrize("backend", sorted(backends.REGISTRY))
@pytest.mark.parametrize("name", list(GRAD_CASES))
def test_gradcheck(name: str, backend: str):
    spec = GRAD_CASES[name]
    normalize = spec.get("normalize", "softmax")
    i, j = (3, 5) if spec.get("cross") else (4, 4)
    positive = normalize == "sum"
    q = randn(1, 2, i, 3, seed=0, positive=positive).requires_grad_()
    k = randn(1, 2, j, 3, seed=1, positive=positive).requires_grad_()
    v = randn(1, 2, j, 2, seed=2).requires_grad_()
    inputs = [q, k, v]
    kw = {"causal": spec.get("causal", False), "window": spec.get("window"), "normalize": normalize}
    if spec.get("mask") == "empty":
        mask = rand_mask(1, 2, i, j, seed=3)
        mask[0, :, 1] = False
        kw["mask"] = mask
    fixed_bias = None
    if spec.get("bias"):
        bias = randn(1, 2, i, j, seed=4)
        if spec["bias"] == "neginf":
            bias[0, 0, 2] = -torch.inf  # a fully masked row
            bias[0, 1, 0, 1] = -torch.inf
            fixed_bias = bias
        else:
            inputs.append(bias.requires_grad_())

    def f(q, k, v, *rest):
        bias = rest[0] if rest else fixed_bias
        return sa.attention(q, k, v, bias=bias, backend=backend, **kw)

    bias = inputs[3] if len(inputs) == 4 else fixed_bias
    if accepts(q, k, v, backend, bias=bias, **kw) is not None:
        pytest.skip(f"{backend} refuses this call")
    assert torch.autograd.gradcheck(f, tuple(inputs), eps=1e-6, atol=1e-6)
