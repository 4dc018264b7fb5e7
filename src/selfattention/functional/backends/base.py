"""What a backend is: one signature, ``forward(call) -> (out, weights | None)``, and its reasons.

A backend says when it cannot serve a call (``refuse``) and when ``backend="auto"`` should pass
it over although it could (``auto_skip``); both return a reason string or None. ``Dispatch``
records the choice and every reason, for ``explain_dispatch``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from selfattention.functional.call import AttentionCall

__all__ = ["Backend", "Dispatch", "Forward", "Reason"]

Forward = Callable[[AttentionCall], tuple[Tensor, Tensor | None]]
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


@dataclass
class Dispatch:
    """Which backend a call takes and why each other one was refused."""

    chosen: str
    refused: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"backend: {self.chosen}"]
        lines += [f"  not {name}: {why}" for name, why in self.refused.items()]
        return "\n".join(lines)
