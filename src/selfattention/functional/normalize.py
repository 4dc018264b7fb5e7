"""Row normalisations that turn relevance scores into weights.

Each takes scores s (b, h, i, j) and ``allowed`` (bool, broadcastable, or None) and returns weights
w (b, h, i, j) with w = 0 wherever a key is not allowed, and a row of zeros where no key is.

- softmax: w_ij = exp(s_ij) / sum_j' exp(s_ij'), computed in at least float32;
- sum:     w_ij = s_ij / sum_j' s_ij'   (the write-ups' ``relevances /= sum(relevances)``);
- relu:    w_ij = relu(s_ij) / n_i, n_i = number of keys query i may attend to;
- a callable f(scores, allowed) -> weights: it sees 0 at disallowed scores, and its weights
  there are set to 0 afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Normalize = Callable[[Tensor, Tensor | None], Tensor]

__all__ = ["NORMALIZATIONS", "Normalize", "relu", "resolve", "softmax", "sum_"]


def _compute_dtype(scores: Tensor) -> torch.dtype:
    return torch.float32 if scores.dtype in (torch.float16, torch.bfloat16) else scores.dtype


def softmax(scores: Tensor, allowed: Tensor | None) -> Tensor:
    """Softmax over keys; disallowed keys get exactly 0, fully masked rows are all 0 (no NaN)."""
    s = scores.to(_compute_dtype(scores))
    if allowed is None:
        return torch.softmax(s, dim=-1)
    # The most negative finite value (not -inf) keeps fully masked rows finite, also backward.
    s = s.masked_fill(~allowed, torch.finfo(s.dtype).min)
    return torch.softmax(s, dim=-1).masked_fill(~allowed, 0.0)


def sum_(scores: Tensor, allowed: Tensor | None) -> Tensor:
    """Divide each row by its sum; a row whose allowed scores sum to <= 0 raises ValueError."""
    s = scores.to(_compute_dtype(scores))
    if allowed is not None:
        s = s.masked_fill(~allowed, 0.0)
        has_key = allowed.any(dim=-1, keepdim=True)
    else:
        has_key = torch.ones((), dtype=torch.bool, device=s.device)
    total = s.sum(dim=-1, keepdim=True)
    bad = has_key & (total <= 0)
    if bool(bad.any()):
        raise ValueError(
            f'normalize="sum" needs every row of scores to sum to > 0, but {int(bad.sum())} '
            "row(s) sum to <= 0 (dot products can be negative); use softmax or relu, or make "
            "the scores positive"
        )
    return s / torch.where(has_key, total, torch.ones_like(total))


def relu(scores: Tensor, allowed: Tensor | None) -> Tensor:
    """relu(s) divided by the number of keys each query may attend to."""
    s = torch.relu(scores.to(_compute_dtype(scores)))
    if allowed is None:
        return s / scores.shape[-1]
    s = s.masked_fill(~allowed, 0.0)
    count = allowed.expand(s.shape).sum(dim=-1, keepdim=True).clamp_min(1)
    return s / count


NORMALIZATIONS: dict[str, Normalize] = {"softmax": softmax, "sum": sum_, "relu": relu}


def resolve(normalize: str | Normalize) -> Normalize:
    """Look up a named normalisation, or wrap a user callable (scores, allowed) -> weights."""
    if callable(normalize):
        user = normalize

        def wrapped(scores: Tensor, allowed: Tensor | None) -> Tensor:
            if allowed is not None:
                # Disallowed scores (maybe -inf from a bias) reach the user as 0, as in the
                # reference: any finite function of them then has finite gradients.
                scores = scores.masked_fill(~allowed, 0.0)
            w = user(scores, allowed)
            if not isinstance(w, Tensor) or w.shape != scores.shape:
                got = getattr(w, "shape", type(w).__name__)
                raise ValueError(
                    f"normalize callable must return weights of shape {tuple(scores.shape)}, "
                    f"got {got}"
                )
            return w if allowed is None else w.masked_fill(~allowed, 0.0)

        return wrapped
    if normalize not in NORMALIZATIONS:
        raise ValueError(
            f"normalize must be one of {sorted(NORMALIZATIONS)} or a callable "
            f"(scores, mask) -> weights, got {normalize!r}"
        )
    return NORMALIZATIONS[normalize]
