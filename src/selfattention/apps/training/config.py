"""What :func:`~selfattention.apps.training.fit` is told (:class:`FitConfig`) and what it
reports (:class:`History`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FitConfig", "History", "format_epoch"]


@dataclass(frozen=True)
class FitConfig:
    """How :func:`fit` trains.

    Attributes:
        checkpoint: folder for the best weights; the latest state goes to ``checkpoint/last``.
        epochs: at most this many epochs (counted over resumed runs too).
        lr: peak learning rate. With ``warmup_steps`` it rises linearly over that many steps
            (``lr * (step + 1) / warmup``); with ``decay`` it then falls linearly to 0 at the
            end of ``epochs``.
        patience: stop after this many epochs without a better dev accuracy (None: never).
        weight_decay: AdamW's decoupled weight decay.
        grad_clip: clip the gradients' global L2 norm to this (None: no clipping).
        time_limit: stop after this many seconds (checked between batches; the cut epoch is
            still scored and saved).
        resume: continue from ``checkpoint/last`` (its options must match the model's).
        progress: show a tqdm bar with the running loss and accuracy.
    """

    checkpoint: Path
    epochs: int = 10
    lr: float = 1e-3
    patience: int | None = None
    weight_decay: float = 0.01
    grad_clip: float | None = 1.0
    warmup_steps: int = 0
    decay: bool = False
    time_limit: float | None = None
    resume: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoint", Path(self.checkpoint))

        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise ValueError(
                    f"FitConfig: {name} must be {expected}, got {getattr(self, name)!r}"
                )

        def is_int(x: Any) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        def is_num(x: Any) -> bool:
            return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)

        need(is_int(self.epochs) and self.epochs >= 1, "epochs", "a positive int")
        need(is_num(self.lr) and self.lr > 0, "lr", "a finite number > 0")
        need(
            self.patience is None or (is_int(self.patience) and self.patience >= 1),
            "patience",
            "a positive int or None",
        )
        need(is_num(self.weight_decay) and self.weight_decay >= 0, "weight_decay", "a number >= 0")
        need(
            self.grad_clip is None or (is_num(self.grad_clip) and self.grad_clip > 0),
            "grad_clip",
            "a number > 0 or None",
        )
        need(is_int(self.warmup_steps) and self.warmup_steps >= 0, "warmup_steps", "an int >= 0")
        need(
            self.time_limit is None or (is_num(self.time_limit) and self.time_limit >= 0),
            "time_limit",
            "a number of seconds >= 0 or None",
        )

    @property
    def last(self) -> Path:
        """Where the latest state (for ``resume``) is kept."""
        return self.checkpoint / "last"


@dataclass(frozen=True)
class History:
    """What :func:`fit` did. ``rows`` holds one dict per epoch: ``epoch``, ``train_loss``,
    ``train_accuracy``, ``dev_loss``, ``dev_accuracy``, ``elapsed`` (seconds since the start)."""

    rows: tuple[dict[str, float], ...]
    best_epoch: int
    best_dev_accuracy: float
    stopped: str  # "patience" | "epochs" | "time_limit"
    seconds: float

    @property
    def epochs_run(self) -> int:
        return len(self.rows)

    def to_dict(self) -> dict[str, Any]:
        """``{"history": [rows], "best_epoch", "best_dev_accuracy", "epochs_run", "stopped",
        "seconds"}`` (JSON-ready)."""
        return {
            "history": [dict(r) for r in self.rows],
            "best_epoch": self.best_epoch,
            "best_dev_accuracy": self.best_dev_accuracy,
            "epochs_run": self.epochs_run,
            "stopped": self.stopped,
            "seconds": self.seconds,
        }


def format_epoch(row: Mapping[str, float], improved: bool) -> str:
    """One line about an epoch, ``*`` marking a new best (for an ``on_epoch`` printer)."""
    return (
        f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc "
        f"{row['train_accuracy']:.4f} | dev loss {row['dev_loss']:.4f} acc "
        f"{row['dev_accuracy']:.4f}{' *' if improved else ''}"
    )
