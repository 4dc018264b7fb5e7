"""The backend registry: every backend, listed once below, with one shared signature.

    forward(call: AttentionCall) -> Result(out, weights | None, stat | None)

Each backend module defines one ``BACKEND`` (``base.Backend``: name, forward, refuse, auto_skip,
cost); this module imports them plainly and lists them in ``REGISTRY``. ``choose`` is the one
dispatcher, for 1-D calls (``attention``) and 2-D neighbourhoods (``neighborhood_attention``)
alike: an explicit name that cannot serve a call raises with the backend's reason, and
``backend="auto"`` tries ``AUTO_ORDER`` and records why it passed each one over.

    name     serves
    sdpa     softmax without a window (torch's fused kernel; any mask and bias)
    window   a band bounded on both sides; only the key blocks inside it
    chunked  any mask, bias and band; query × key blocks with online row statistics
    tiles    2-D neighbourhoods; only the patches around each query tile
    math     everything; the readable ground truth, the only one that materialises weights

Weights asked of any other backend are rebuilt from its per-row statistic (``weights.rebuild``),
block by block and only for the rows asked for; ``Dispatch.weights`` says so.
"""

from __future__ import annotations

from selfattention.functional.backends import chunked, math, sdpa, tiles, window
from selfattention.functional.backends.base import Backend, Dispatch, Result
from selfattention.functional.call import AttentionCall

__all__ = ["AUTO_ORDER", "REGISTRY", "Backend", "Dispatch", "Result", "choose", "get"]

REGISTRY: dict[str, Backend] = {
    "sdpa": sdpa.BACKEND,
    "window": window.BACKEND,
    "chunked": chunked.BACKEND,
    "tiles": tiles.BACKEND,
    "math": math.BACKEND,
}
# backend="auto" tries them in this order; math, which serves every call, comes last.
AUTO_ORDER: tuple[str, ...] = ("sdpa", "window", "chunked", "tiles", "math")


def get(name: str) -> Backend:
    """The backend called ``name``; an unknown name raises ValueError naming the known ones."""
    if name not in REGISTRY:
        raise ValueError(f"backend must be 'auto' or one of {sorted(REGISTRY)}, got {name!r}")
    return REGISTRY[name]


def choose(call: AttentionCall, backend: str = "auto") -> Dispatch:
    """Pick the backend for ``call``; an explicit name that cannot serve it raises ValueError."""
    if backend != "auto":
        why = get(backend).refuse(call)
        if why is not None:
            raise ValueError(f"backend={backend!r} cannot serve this call: {why}")
        return _described(Dispatch(backend), call)
    refused: dict[str, str] = {}
    for name in AUTO_ORDER:
        b = REGISTRY[name]
        why = b.refuse(call) or (b.auto_skip(call) if name != "math" else None)
        if why is None:
            return _described(Dispatch(name, refused), call)
        refused[name] = why
    raise AssertionError("the math backend serves every call")  # pragma: no cover


def _described(dispatch: Dispatch, call: AttentionCall) -> Dispatch:
    """Record the implementation (backends with several) and how the weights are served."""
    chosen = REGISTRY[dispatch.chosen]
    if chosen.path is not None:
        dispatch.path = chosen.path(call)
    if not call.return_weights:
        return dispatch
    rows = "every row" if call.weights_rows is None else f"{call.weights_rows.numel()} row(s)"
    if dispatch.chosen == "math":
        dispatch.weights = f"materialised by math, {rows}"
    elif call.return_stats:
        dispatch.weights = (
            f"rebuilt exactly from {dispatch.chosen}'s {call.normalize.stat_label}, "
            f"block by block, {rows}"
        )
    else:
        dispatch.weights = (
            f"rebuilt exactly after {dispatch.chosen}, block by block from each block's "
            f"{call.normalize.stat_label}, {rows}"
        )
    return dispatch
