"""Backend registry. Every backend has one signature: ``forward(call) -> (out, weights | None)``.

A backend also says when it cannot serve a call (``refuse``) and when ``backend="auto"`` should
pass it over although it could (``auto_skip``); both return a reason string or None.
``explain_dispatch`` reports the choice and every refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from selfattention.functional.call import AttentionCall

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


REGISTRY: dict[str, Backend] = {}
AUTO_ORDER: list[str] = []  # tried in this order by backend="auto"; math is the last resort
_AUTO_RANK: dict[str, int] = {}


def register(backend: Backend, *, auto_rank: int | None = None) -> Backend:
    """Add a backend; ``auto_rank`` places it in auto's order (lower = tried first).

    The order depends on the ranks only, not on which module is imported first (equal ranks
    keep registration order).
    """
    REGISTRY[backend.name] = backend
    if auto_rank is not None and backend.name not in AUTO_ORDER:
        _AUTO_RANK[backend.name] = auto_rank
        AUTO_ORDER.append(backend.name)
        AUTO_ORDER.sort(key=_AUTO_RANK.__getitem__)
    return backend


def get(name: str) -> Backend:
    if name not in REGISTRY:
        raise ValueError(f"backend must be 'auto' or one of {sorted(REGISTRY)}, got {name!r}")
    return REGISTRY[name]


@dataclass
class Dispatch:
    """Which backend a call takes and why each other one was refused."""

    chosen: str
    refused: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"backend: {self.chosen}"]
        lines += [f"  not {name}: {why}" for name, why in self.refused.items()]
        return "\n".join(lines)


def choose(call: AttentionCall, backend: str = "auto") -> Dispatch:
    """Pick the backend for ``call``; an explicit name that cannot serve it raises ValueError."""
    if backend != "auto":
        b = get(backend)
        why = b.refuse(call)
        if why is not None:
            raise ValueError(f"backend={backend!r} cannot serve this call: {why}")
        return Dispatch(backend)
    refused: dict[str, str] = {}
    order = AUTO_ORDER + [n for n in REGISTRY if n not in AUTO_ORDER and n != "math"] + ["math"]
    for name in order:
        b = REGISTRY[name]
        why = b.refuse(call) or (b.auto_skip(call) if name != "math" else None)
        if why is None:
            return Dispatch(name, refused)
        refused[name] = why
    raise AssertionError("the math backend serves every call")  # pragma: no cover


# Registration happens on import of the backend modules.
from selfattention.functional.backends import chunked as _chunked  # noqa: E402, F401
from selfattention.functional.backends import math as _math  # noqa: E402, F401
from selfattention.functional.backends import sdpa as _sdpa  # noqa: E402, F401
from selfattention.functional.backends import window as _window  # noqa: E402, F401
