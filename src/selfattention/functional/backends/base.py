"""What a backend is: one signature, ``forward(call) -> Result(out, weights, stat)``, its reasons.

``Result.stat`` is the per-row statistic (b, h, i, 1) in the kernels' convention (see
``functional.normalize``), present when the call asks for stats or weights; ``Result.weights`` is
given only by a backend that materialises them (math): the others' weights are rebuilt from
``stat`` (``functional.weights``).

A backend says when it cannot serve a call (``refuse``) and when ``backend="auto"`` should pass
it over although it could (``auto_skip``); both return a reason string or None. ``Dispatch``
records the choice and every reason, for ``explain_dispatch``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from torch import Tensor

from selfattention.functional.call import AttentionCall

__all__ = ["Backend", "Dispatch", "Forward", "Reason", "Result"]


class Result(NamedTuple):
    """What a backend returns: out (b, h, i, e); weights (b, h, i|rows, j) or None; stat
    (b, h, i, 1) in the compute dtype, or None when the call asked for neither."""

    out: Tensor
    weights: Tensor | None = None
    stat: Tensor | None = None


Forward = Callable[[AttentionCall], Result]
Reason = Callable[[AttentionCall], str | None]


def _never(call: AttentionCall) -> str | None:
    return None


@dataclass(frozen=True)
class Backend:
    name: str
    forward: Forward
    refuse: Reason = _never
    auto_skip: Reason = _never
    cost: str = ""  # time and memory, for the docs and `explain_dispatch`
    path: Callable[[AttentionCall], str] | None = None  # which implementation serves a call


@dataclass
class Dispatch:
    """Which backend a call takes and why each other one was refused."""

    chosen: str
    refused: dict[str, str] = field(default_factory=dict)
    weights: str = ""  # how the weights are served, when they are asked for
    path: str = ""  # which implementation of the backend serves the call, when it has several

    def __str__(self) -> str:
        lines = [f"backend: {self.chosen}"]
        if self.path:
            lines.append(f"  path: {self.path}")
        if self.weights:
            lines.append(f"  weights: {self.weights}")
        lines += [f"  not {name}: {why}" for name, why in self.refused.items()]
        return "\n".join(lines)
