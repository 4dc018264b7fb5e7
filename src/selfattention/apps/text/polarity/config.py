"""The polarity task's options: one frozen config for both models (trained here or MiniLM)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selfattention.apps.text import common
from selfattention.apps.text.model import POOLINGS

__all__ = ["ENSEMBLE", "LABELS", "PolarityConfig"]

LABELS = ("negative", "positive")
ENSEMBLE = 10  # default ensemble size of the encoder trained here


@dataclass(frozen=True)
class PolarityConfig:
    """Model and training options. ``None`` for ``epochs``, ``patience``, ``lr`` and
    ``ensemble`` means the default of the chosen model, filled in on construction:
    30 / 6 / 1e-3 / 10 for the encoder trained here, 3 / 2 / 4e-5 / 1 with ``pretrained``."""

    pretrained: bool = False  # fine-tune the packaged MiniLM instead
    epochs: int | None = None
    patience: int | None = None
    batch_size: int = 32
    lr: float | None = None
    word_dim: int = 50  # trained word vectors (0 = none)
    dim: int = 64
    layers: int = 1
    heads: int = 4
    dropout: float = 0.5
    word_dropout: float = 0.3  # share of words replaced by <unk> while training
    label_smoothing: float = 0.0
    pooling: str = "attention"  # "mean" | "max" | "mean+max" | "attention"
    ensemble: int | None = None  # members trained with seeds seed, seed+1, ...
    positions: str = "rotary"
    glove: bool = True
    glove_words: int = 50000
    glove_path: Path | None = None
    time_limit: float | None = 480.0  # seconds, for the whole run (all members)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pretrained and self.ensemble not in (None, 1):
            raise ValueError(
                f"PolarityConfig: ensemble={self.ensemble!r}: ensembles are for the encoder "
                "trained here, not the pretrained one"
            )
        defaults = (3, 2, 4e-5, 1) if self.pretrained else (30, 6, 1e-3, ENSEMBLE)
        for name, default in zip(("epochs", "patience", "lr", "ensemble"), defaults, strict=True):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        common.check_config(
            self,
            positive=("epochs", "patience", "batch_size", "dim", "layers", "heads", "ensemble"),
            non_negative=("word_dim", "glove_words"),
            fraction=("dropout", "word_dropout", "label_smoothing"),
        )
        if self.pooling not in POOLINGS:
            raise ValueError(
                f"PolarityConfig: pooling must be one of {', '.join(POOLINGS)}, "
                f"got {self.pooling!r}"
            )
