"""The public entry point: ``attention(q, k, v, ...)``."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from selfattention.functional import backends as _backends
from selfattention.functional import grouped as _grouped
from selfattention.functional import packed as _packed
from selfattention.functional import weights as _weights
from selfattention.functional.backends.base import Result
from selfattention.functional.call import AttentionCall, check_backend, make_call
from selfattention.functional.normalize import Normalize, Softmax
from selfattention.functional.stats import RowStats, from_kernel

__all__ = ["attention", "explain_dispatch"]

Rows = slice | list[int] | tuple[int, ...] | range | Tensor | None


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
    weights_rows: Rows = None,
    return_lse: bool = False,
    return_stats: bool = False,
    backend: str = "auto",
    cu_seqlens: Sequence[int] | Tensor | None = None,
    cu_seqlens_k: Sequence[int] | Tensor | None = None,
) -> Tensor | tuple[Tensor, ...]:
    """Scaled dot-product attention with masks, windows and pluggable normalisation.

        S = scale · Q Kᵀ + bias,   W = normalize(S over allowed keys),   O = W V

    Args:
        q: queries (b, h, i, d). k: keys (b, h_kv, j, d). v: values (b, h_kv, j, e); j may
            differ from i. Grouped-query attention: h_kv may divide h, query head i then reads
            key/value head i // (h / h_kv) (SDPA's ``enable_gqa``), without copying k or v.
        mask: bool, broadcastable to (b, h, i, j); True = may attend (SDPA's polarity).
        bias: float, broadcastable to (b, h, i, j), added to the scores (ALiBi, relative bias);
            -inf entries count as masked.
        causal: query i sees keys j <= i (aligned top-left).
        window: w or (left, right): query i sees keys i-left ... i+right (None = unbounded side).
        scale: defaults to 1/sqrt(d); 1.0 is the write-ups' plain dot product.
        normalize: "softmax" | "sum" | "relu" | callable (scores, allowed) -> weights.
        dropout_p: dropout on the weights (apply only in training).
        return_weights: also return W (b, h, i, j), per head, from every backend: math keeps
            them; the others rebuild them exactly from the row statistic below,
            W_ij = exp(S_ij - lse_i) (softmax), S_ij / z_i (sum), relu(S_ij) / c_i (relu),
            block by block over the rows asked for, so the fast path keeps its speed and
            memory (``explain_dispatch(...).weights`` says how they were served).
        weights_rows: only these query rows of W: a slice, ints or a 1-D integer tensor
            (negative counts from the end); W is then (b, h, r, j), memory O(b·h·r·j).
        return_lse: also return lse (b, h, i) = log Σ_j exp(S_ij) over allowed keys, -inf for
            a row without keys (softmax only; float32 for half inputs). Differentiable:
            ∂lse_i/∂S_ij = W_ij.
        return_stats: also return a ``RowStats`` with the per-row statistic of any built-in
            normalisation: softmax lse, sum z_i = Σ_j S_ij (0 without keys), relu c_i = the
            number of allowed keys. ``merge_attention`` combines results over disjoint key sets
            with it, exactly. Such a result may cover part of a row's keys, so with sum a row
            then needs z_i != 0 only (the whole row still needs z_i > 0).
        backend: "auto" or a registered name (see ``selfattention.functional.backends.REGISTRY``).
        cu_seqlens: packed sequences (``functional.packed``): (0, c_1, ..., T) boundaries of
            sequences laid end to end along i; each attends only to its own keys, with
            causal/window/mask/bias inside it (positions restart at 0); no score is computed
            across sequences. ``packed.cu_seqlens(lengths)`` builds it.
        cu_seqlens_k: the keys' boundaries along j (default: ``cu_seqlens``).

    Returns:
        O (b, h, i, e) (W and lse per query head); with extras, the tuple (O, W, lse) /
        (O, W, RowStats) in this order,
        leaving out those not asked for (e.g. (O, lse)). A query with no allowed key gets a zero
        row in O and W, never NaN.
    """
    if return_lse and return_stats:
        raise ValueError("pass return_lse=True (softmax) or return_stats=True, not both")
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
        return_stats=return_lse or return_stats,
        weights_rows=weights_rows,
    )
    if return_lse and not isinstance(call.normalize, Softmax):
        raise ValueError(
            f"return_lse is softmax's log-sum-exp, got normalize={normalize!r}; "
            "use return_stats=True for the statistic of sum and relu"
        )
    check_backend(backend)
    if cu_seqlens_k is not None and cu_seqlens is None:
        raise ValueError("cu_seqlens_k needs cu_seqlens (the queries' boundaries) as well")

    def serve_one(c: AttentionCall) -> Result:
        return _grouped.serve(c, lambda sub: _serve(sub, backend))

    if cu_seqlens is None:
        result = serve_one(call)
    else:
        q_segs = _packed.check_cu_seqlens(cu_seqlens, call.q_len)
        k_arg, k_name = (
            (cu_seqlens, "cu_seqlens") if cu_seqlens_k is None else (cu_seqlens_k, "cu_seqlens_k")
        )
        k_segs = _packed.check_cu_seqlens(k_arg, call.k_len, k_name)
        if len(k_segs) != len(q_segs):
            raise ValueError(
                f"cu_seqlens and cu_seqlens_k must count the same sequences, got {len(q_segs)} "
                f"and {len(k_segs)}"
            )
        result = _packed.serve(call, q_segs, k_segs, serve_one)
    extras: list[Tensor | RowStats] = []
    if return_weights:
        extras.append(result.weights)
    if return_lse or return_stats:
        stats = from_kernel(call.normalize, result.stat)
        extras.append(stats.value if return_lse else stats)
    return (result.out, *extras) if extras else result.out


def _serve(call: AttentionCall, backend: str) -> Result:
    """One equal-heads call through the chosen backend; weights rebuilt when it has none."""
    chosen = _backends.choose(call, backend).chosen
    result = _backends.REGISTRY[chosen].forward(call)
    if call.return_weights and result.weights is None:
        stat = result.stat if call.return_stats else None
        result = result._replace(weights=_weights.rebuild(call, stat, call.weights_rows))
    return result


def explain_dispatch(q: Tensor, k: Tensor, v: Tensor, **kwargs) -> _backends.Dispatch:
    """Which backend ``attention(q, k, v, **kwargs)`` would take, why each other was refused,
    and (``return_weights=True``) how the weights are served (``Dispatch.weights``)."""
    backend = kwargs.pop("backend", "auto")
    cu_q, cu_k = kwargs.pop("cu_seqlens", None), kwargs.pop("cu_seqlens_k", None)
    defaults = dict(
        mask=None,
        bias=None,
        causal=False,
        window=None,
        scale=None,
        normalize="softmax",
        dropout_p=0.0,
        return_weights=False,
        weights_rows=None,
        return_stats=False,
    )
    if "return_lse" in kwargs:
        kwargs["return_stats"] = bool(kwargs.pop("return_lse")) or kwargs.get("return_stats", False)
    unknown = set(kwargs) - set(defaults)
    if unknown:
        raise TypeError(f"unexpected argument(s) {sorted(unknown)}; expected {sorted(defaults)}")
    call = make_call(q, k, v, **{**defaults, **kwargs})
    if cu_q is not None:  # packed: the first sequence's call stands for all
        (q0, q1) = _packed.check_cu_seqlens(cu_q, call.q_len)[0]
        (k0, k1) = _packed.check_cu_seqlens(cu_q if cu_k is None else cu_k, call.k_len)[0]
        call = _packed.first(call, (q0, q1), (k0, k1))
    if call.groups > 1:  # grouped-query: the first group member's call stands for all
        call = _grouped.split(call)[0]
    return _backends.choose(call, backend)
