"""Attention flow (Abnar & Zuidema, 2020): how much of each input token can reach an output
position, as a maximum flow through the layers.

The layer graph has a node (l, t) for every layer boundary l = 0..L and token t; layer l adds an
edge (l - 1, j) -> (l, i) of capacity Â_l[i, j], where Â_l is the layer's attention averaged
over heads and, with ``add_residual``, mixed with the identity as in ``rollout``:

    Â_l = rownorm(mean_h W_l + I)     (= 0.5 Ā_l + 0.5 I when Ā_l's rows sum to 1)

flow[o, j] = the maximum flow from input node (0, j) to output node (L, o). Where rollout
multiplies the layers' mixing matrices (every path counts, in proportion), flow is limited by the
narrowest cut, so a token that reaches the output through one thin edge gets little.

Max-flow is solved by Edmonds-Karp (shortest augmenting paths, which terminates with real-valued
capacities), once per (input, output) pair on a dense ((L + 1) n)² residual matrix; that is why
``attention_flow`` refuses more than ``MAX_FLOW_TOKENS`` tokens (rollout has no such limit).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from selfattention.viz._inputs import stack_layers

__all__ = ["MAX_FLOW_TOKENS", "attention_flow", "max_flow"]

MAX_FLOW_TOKENS = 64
_EPS = 1e-12  # residual capacity below this is treated as saturated (float round-off)


def _mixing(w: np.ndarray, add_residual: bool) -> np.ndarray:
    """(L, n, n) per-layer mixing matrices Â_l (row = output token, column = input token)."""
    a = w.mean(axis=1)
    if add_residual:
        a = a + np.eye(a.shape[-1])
    rows = a.sum(axis=-1, keepdims=True)
    return np.divide(a, rows, out=np.zeros_like(a), where=rows > 0)


def _capacities(mix: np.ndarray) -> np.ndarray:
    """The layer graph as one dense capacity matrix C (N, N), N = (L + 1) n, node (l, t) = l n + t;
    C[(l - 1, j), (l, i)] = Â_l[i, j]."""
    n_layers, n, _ = mix.shape
    cap = np.zeros(((n_layers + 1) * n, (n_layers + 1) * n))
    for layer in range(n_layers):
        src, dst = layer * n, (layer + 1) * n
        cap[src : src + n, dst : dst + n] = mix[layer].T
    return cap


def max_flow(capacity: np.ndarray, source: int, sink: int) -> float:
    """The maximum flow from ``source`` to ``sink`` through a graph of capacities (N, N)
    (capacity[u, v] >= 0 on the edge u -> v), by Edmonds-Karp: augment along shortest paths
    (breadth-first, one frontier at a time) until the sink is unreachable."""
    cap = np.asarray(capacity, dtype=np.float64)
    if cap.ndim != 2 or cap.shape[0] != cap.shape[1]:
        raise ValueError(f"capacity must be a square (N, N) matrix, got shape {cap.shape}")
    if np.any(cap < 0) or not np.all(np.isfinite(cap)):
        raise ValueError("capacity must hold finite values >= 0")
    n = cap.shape[0]
    residual = cap.copy()
    total = 0.0
    if source == sink:
        raise ValueError(f"source and sink must differ, got {source} for both")
    while True:
        parent = np.full(n, -1)
        parent[source] = source
        frontier = np.array([source])
        while frontier.size and parent[sink] < 0:
            open_edges = residual[frontier] > _EPS  # (f, N)
            new = np.flatnonzero(open_edges.any(axis=0) & (parent < 0))
            if not new.size:
                break
            parent[new] = frontier[open_edges[:, new].argmax(axis=0)]
            frontier = new
        if parent[sink] < 0:
            return total
        path, v = [], sink
        while v != source:
            path.append((parent[v], v))
            v = parent[v]
        us, vs = np.array(path).T
        push = residual[us, vs].min()
        residual[us, vs] -= push
        residual[vs, us] += push
        total += push


def attention_flow(
    weights: Any,
    outputs: int | Iterable[int] | None = None,
    *,
    add_residual: bool = True,
    max_tokens: int = MAX_FLOW_TOKENS,
) -> np.ndarray:
    """Attention flow from every input token to the chosen output positions.

    Args:
        weights: per layer (H, n, n) (a list, or an array (L, H, n, n)); heads are averaged.
        outputs: output positions o (rows of the result); None = all n.
        add_residual: mix in the identity as ``rollout`` does (the residual connection).
        max_tokens: refuse longer inputs (one max-flow per pair on a graph of (L + 1) n nodes:
            about 64 tokens is where it stops being interactive; use ``rollout`` beyond).

    Returns:
        flow (len(outputs), n): flow[k, j] = max-flow from input j to output ``outputs[k]``
        (an int ``outputs`` gives (n,)).
    """
    w = stack_layers(weights)
    n_i, n = w.shape[2:]
    if n_i != n:
        raise ValueError(f"attention flow needs square self-attention maps (n, n), got {w.shape}")
    if n > max_tokens:
        raise ValueError(
            f"attention flow is limited to {max_tokens} tokens (one max-flow per token pair); "
            f"this input has {n}: use rollout, or pass fewer tokens"
        )
    if w.min() < 0:
        raise ValueError(
            f"attention flow needs weights >= 0 (they are capacities); got a minimum of "
            f"{w.min():.3g}"
        )
    single = isinstance(outputs, int | np.integer)
    outs = list(range(n)) if outputs is None else [int(outputs)] if single else list(outputs)
    for o in outs:
        if not 0 <= o < n:
            raise ValueError(f"outputs must be positions in 0..{n - 1}, got {o}")
    cap = _capacities(_mixing(w, add_residual))
    top = w.shape[0] * n  # node id of (L, 0)
    flow = np.array([[max_flow(cap, j, top + o) for j in range(n)] for o in outs])
    return flow[0] if single else flow
