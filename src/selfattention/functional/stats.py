"""Per-row statistics of attention and the exact merge of partial results.

Attention over the union of disjoint key sets K_1 ∪ ... ∪ K_P is a combination of the results
over each set, given one number per query row and part:

    name     statistic t_i (``RowStats.value``)        merge
    softmax  lse_i = log Σ_j exp(s_ij)  (-inf: no key)   O = Σ_p exp(lse_p - lse) O_p,
                                                         lse = log Σ_p exp(lse_p)
    sum      z_i = Σ_j s_ij             (0: no key)      O = Σ_p z_p O_p / Σ_p z_p,  z = Σ_p z_p
    relu     c_i = #keys row i may see  (0: no key)      O = Σ_p c_p O_p / Σ_p c_p,  c = Σ_p c_p

s_ij = scale · q_i·k_j + bias_ij over the keys row i may attend to. A row with no key in any part
merges to zeros with lse = -inf (z = c = 0), never NaN, and gradients stay finite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from selfattention.functional import normalize as _norm

__all__ = ["RowStats", "merge_attention"]


@dataclass(frozen=True)
class RowStats:
    """The per-row statistic of one attention result: ``value`` (b, h, i), float32 or wider.

    ``normalize`` names the normalisation it belongs to; ``lse`` (softmax), ``total`` (sum) and
    ``count`` (relu) are the same tensor under its meaning, and raise for the other kinds.
    """

    normalize: str
    value: Tensor

    def _named(self, kind: str) -> Tensor:
        if self.normalize != kind:
            raise AttributeError(
                f"RowStats of normalize={self.normalize!r} has no {kind} statistic"
            )
        return self.value

    @property
    def lse(self) -> Tensor:
        """softmax: log Σ_j exp(s_ij), -inf for a row without keys."""
        return self._named("softmax")

    @property
    def total(self) -> Tensor:
        """sum: z_i = Σ_j s_ij, 0 for a row without keys."""
        return self._named("sum")

    @property
    def count(self) -> Tensor:
        """relu: the number of keys row i may attend to."""
        return self._named("relu")


def from_kernel(norm: _norm.Normalization, stat: Tensor) -> RowStats:
    """Kernel statistic (b, h, i, 1) (softmax: +inf = no key) -> public ``RowStats`` (b, h, i)."""
    return RowStats(norm.name, norm.public_stat(stat.squeeze(-1)))


def merge_attention(
    outs: Sequence[Tensor],
    stats: Sequence[RowStats | Tensor],
    *,
    normalize: str | None = None,
) -> tuple[Tensor, RowStats]:
    """Exact attention over the union of disjoint key sets, from the result over each set.

    Args:
        outs: P partial outputs (b, h, i, e), each attention of the same queries over its keys.
        stats: their ``RowStats`` (from ``attention(..., return_stats=True)``), or plain (b, h, i)
            tensors: log-sum-exps (``return_lse=True``), or z / c when ``normalize`` says so.
        normalize: "softmax" | "sum" | "relu"; only needed for plain tensors (default softmax).

    Returns:
        (O (b, h, i, e), RowStats of the union), both differentiable; merging again with a
        further part gives the same as merging all parts at once.
    """
    outs, stats = list(outs), list(stats)
    if not outs or len(outs) != len(stats):
        raise ValueError(
            f"outs and stats must be non-empty lists of equal length, got {len(outs)} and "
            f"{len(stats)}"
        )
    kinds = {s.normalize for s in stats if isinstance(s, RowStats)}
    if normalize is not None:
        kinds.add(normalize)
    if len(kinds) > 1:
        raise ValueError(f"cannot merge statistics of different normalisations: {sorted(kinds)}")
    name = kinds.pop() if kinds else "softmax"
    if name not in _norm.NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {sorted(_norm.NORMALIZATIONS)}, got {name!r}")
    values = [s.value if isinstance(s, RowStats) else s for s in stats]
    for p, (o, t) in enumerate(zip(outs, values, strict=True)):
        if not isinstance(o, Tensor) or not isinstance(t, Tensor):
            raise TypeError(f"outs[{p}] and stats[{p}] must be tensors / RowStats")
        if o.ndim != 4 or tuple(t.shape) != tuple(o.shape[:3]):
            raise ValueError(
                f"outs[{p}] must be (b, h, i, e) and stats[{p}] (b, h, i); got "
                f"{tuple(o.shape)} and {tuple(t.shape)}"
            )
        if o.shape != outs[0].shape:
            raise ValueError(
                f"outs[{p}] has shape {tuple(o.shape)}, outs[0] {tuple(outs[0].shape)}"
            )
    dtype = torch.promote_types(values[0].dtype, outs[0].dtype)
    coefs, merged = _norm.NORMALIZATIONS[name].merge_coefficients([t.to(dtype) for t in values])
    out = sum(c.unsqueeze(-1) * o.to(dtype) for c, o in zip(coefs, outs, strict=True))
    return out.to(outs[0].dtype), RowStats(name, merged)
