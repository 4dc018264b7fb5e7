"""The public entry point: ``attention(q, k, v, ...)``."""

from __future__ import annotations

from torch import Tensor

from selfattention.functional import backends as _backends
from selfattention.functional.call import check_backend, make_call
from selfattention.functional.normalize import Normalize

__all__ = ["attention", "explain_dispatch"]


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    bias: Tensor | None = None,
    causal: bool = False,
    window: int | tuple[int | None, int | None] | None = None,
    scale: float | None = None,
    normalize: str | Normalize = "softmax",
    dropout_p: float = 0.0,
    return_weights: bool = False,
    backend: str = "auto",
) -> Tensor | tuple[Tensor, Tensor]:
    """Scaled dot-product attention with masks, windows and pluggable normalisation.

        S = scale · Q Kᵀ + bias,   W = normalize(S over allowed keys),   O = W V

    Args:
        q: queries (b, h, i, d). k: keys (b, h, j, d). v: values (b, h, j, e); j may differ from i.
        mask: bool, broadcastable to (b, h, i, j); True = may attend (SDPA's polarity).
        bias: float, broadcastable to (b, h, i, j), added to the scores (ALiBi, relative bias);
            -inf entries count as masked.
        causal: query i sees keys j <= i (aligned top-left).
        window: w or (left, right): query i sees keys i-left ... i+right (None = unbounded side).
        scale: defaults to 1/sqrt(d); 1.0 is the write-ups' plain dot product.
        normalize: "softmax" | "sum" | "relu" | callable (scores, allowed) -> weights.
        dropout_p: dropout on the weights (apply only in training).
        return_weights: also return W (b, h, i, j), per head; only the math backend keeps it.
        backend: "auto" or a registered name (see ``selfattention.functional.backends.REGISTRY``).

    Returns:
        O (b, h, i, e), or (O, W) with ``return_weights=True``. A query with no allowed key gets
        a zero row in O and W, never NaN.
    """
    call = make_call(
        q,
        k,
        v,
        mask=mask,
        bias=bias,
        causal=causal,
        window=window,
        scale=scale,
        normalize=normalize,
        dropout_p=dropout_p,
        return_weights=return_weights,
    )
    check_backend(backend)
    chosen = _backends.choose(call, backend).chosen
    out, weights = _backends.REGISTRY[chosen].forward(call)
    if return_weights:
        return out, weights
    return out


def explain_dispatch(q: Tensor, k: Tensor, v: Tensor, **kwargs) -> _backends.Dispatch:
    """Which backend ``attention(q, k, v, **kwargs)`` would take, and why each other was refused."""
    backend = kwargs.pop("backend", "auto")
    defaults = dict(
        mask=None,
        bias=None,
        causal=False,
        window=None,
        scale=None,
        normalize="softmax",
        dropout_p=0.0,
        return_weights=False,
    )
    unknown = set(kwargs) - set(defaults)
    if unknown:
        raise TypeError(f"unexpected argument(s) {sorted(unknown)}; expected {sorted(defaults)}")
    call = make_call(q, k, v, **{**defaults, **kwargs})
    return _backends.choose(call, backend)
