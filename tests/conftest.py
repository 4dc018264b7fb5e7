"""Shared helpers: the float64 oracle adapter, a plain low-precision baseline, the tolerance rule.

Tolerance follows flash-attention's tests: a path computed in dtype D passes when its error
against the float64 reference is at most twice the error of a plain torch computation in D,
plus a small absolute slack. A path is then "as accurate as writing the formula in D yourself".

    from conftest import reference_attention, plain_attention, check_close
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from selfattention import reference

DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)

# Absolute slack on top of 2 x the plain error; about 4 units in the last place of a value ~1.
ATOL = {
    torch.float64: 1e-13,
    torch.float32: 1e-6,
    torch.float16: 4e-3,
    torch.bfloat16: 3e-2,
}


@pytest.fixture(autouse=True)
def _one_thread():
    # Two cores are shared by several test processes; one thread each keeps runs predictable.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=["torch", "native"])
def window_path(request):
    """Run a test through each implementation of the window backend: the pure-torch plan and
    the compiled kernel (skipped when it is not built, failed when SELFATTENTION_REQUIRE_NATIVE=1,
    as ``make test`` sets on a machine with a compiler)."""
    from selfattention.functional.backends import native

    if request.param == "torch":
        with native.disabled():
            yield "torch"
        return
    require_native()
    yield "native"


def require_native() -> None:
    """Skip the calling test when the compiled window kernel is not built; fail it instead
    when SELFATTENTION_REQUIRE_NATIVE=1."""
    from selfattention.functional.backends import native

    why = native.unavailable()
    if why is not None:
        if os.environ.get("SELFATTENTION_REQUIRE_NATIVE") == "1":
            pytest.fail(f"the compiled window kernel is required here: {why}")
        pytest.skip(why)


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().to("cpu", torch.float64).numpy()


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    causal: bool = False,
    window=None,
    scale: float | None = None,
    normalize="softmax",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``selfattention.reference.attention`` on torch tensors: float64 (out, weights).

    ``normalize`` is a name or a NumPy callable (scores, allowed) -> weights.
    """
    out, w = reference.attention(
        _np(q),
        _np(k),
        _np(v),
        mask=None if mask is None else mask.cpu().numpy(),
        bias=_np(bias),
        scale=scale,
        normalize=normalize,
        causal=causal,
        window=window,
    )
    return torch.from_numpy(out), torch.from_numpy(w)


def plain_allowed(q_len: int, k_len: int, mask=None, bias=None, causal=False, window=None):
    """The bool mask a call means, built independently of the code under test."""
    left, right = (window, window) if isinstance(window, int) else (window or (None, None))
    if causal:
        right = 0 if right is None else min(right, 0)
    allowed = torch.from_numpy(reference.window_mask(q_len, k_len, left, right))
    if mask is not None:
        allowed = allowed & mask
    if bias is not None:
        allowed = allowed & ~torch.isneginf(bias)
    return allowed


def plain_attention(
    q, k, v, *, mask=None, bias=None, causal=False, window=None, scale=None, normalize="softmax"
):
    """The formula written directly in the inputs' dtype (no upcast): the baseline error.

    ``normalize`` is a name or a torch callable (scores, allowed) -> weights.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    s = (q @ k.transpose(-1, -2)) * scale
    if bias is not None:
        s = s + bias.to(s.dtype)
    allowed = plain_allowed(q.shape[-2], k.shape[-2], mask, bias, causal, window).expand(s.shape)
    has_key = allowed.any(-1, keepdim=True)
    if callable(normalize):
        w = normalize(s.masked_fill(~allowed, 0), allowed)
    elif normalize == "softmax":
        w = torch.softmax(s.masked_fill(~allowed, -torch.inf), dim=-1)
    elif normalize == "sum":
        s = s.masked_fill(~allowed, 0)
        w = s / s.sum(-1, keepdim=True)
    elif normalize == "relu":
        w = torch.relu(s.masked_fill(~allowed, 0)) / allowed.sum(-1, keepdim=True)
    else:
        raise ValueError(normalize)
    w = torch.where(allowed & has_key, w, torch.zeros((), dtype=w.dtype))
    return w @ v, w


def max_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x.detach().double() - ref.double()).abs().max())


def check_close(got: torch.Tensor, ref: torch.Tensor, plain: torch.Tensor, what: str = "") -> float:
    """Assert err(got) <= 2 err(plain) + ATOL[dtype]; return err(got) for the report."""
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
    assert bool(torch.isfinite(got).all()), f"{what}: non-finite values"
    err, err_plain = max_err(got, ref), max_err(plain, ref)
    bound = 2 * err_plain + ATOL[got.dtype]
    assert err <= bound, f"{what} {got.dtype}: error {err:.3g} > 2 x plain {err_plain:.3g} + atol"
    return err


def randn(*shape, dtype=torch.float64, seed: int = 0, positive: bool = False) -> torch.Tensor:
    """Seeded normal samples (|x| + 0.1 when ``positive``), drawn in float64 then cast."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    if positive:
        x = x.abs() + 0.1
    return x.to(dtype)


def rand_mask(*shape, p: float = 0.7, seed: int = 0) -> torch.Tensor:
    """Seeded bool mask, True with probability p."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) < p
