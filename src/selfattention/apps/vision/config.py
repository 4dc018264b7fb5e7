"""The options of the images task: a frozen :class:`ImageTaskConfig` and each data set's defaults.

No torch here, so the command line can build its help (data set names, defaults) cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = ["DATASETS", "DATASET_DEFAULTS", "ImageTaskConfig"]

DATASETS = ("digits", "fashion-mnist")

# Per data set: chosen so that the Fashion-MNIST run fits in 15 minutes with 2 threads, and the
# digits run (8x8 images, 1,437 training images) in about a minute.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "fashion-mnist": dict(
        patch_size=7, dim=96, depth=6, heads=4, epochs=10, batch_size=128, lr=1e-3,
        dev_size=5000, shift=0, flip=False, time_limit=14 * 60,
    ),
    "digits": dict(
        patch_size=2, dim=64, depth=4, heads=4, epochs=60, batch_size=64, lr=2e-3,
        dev_size=144, shift=1, flip=False, time_limit=None,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class ImageTaskConfig:
    """Model and training options of ``train images`` (the defaults are Fashion-MNIST's).

    Model: ``patch_size`` p (must divide the image), ``dim`` (divisible by ``heads``, and by 4
    for ``positions="sin2d"``), ``depth`` layers, ``heads``, ``positions`` ("sin2d" | "learned"),
    ``neighborhood`` (None: every patch sees all; odd k: the k×k patches around it).
    Training: ``epochs``, ``batch_size``, peak ``lr`` (linear warm-up, linear decay to 0),
    ``weight_decay``, ``dev_size`` training images held out as dev (at most a fifth of them),
    augmentation by random shifts of up to ``shift`` pixels and, with ``flip``, mirroring;
    ``time_limit`` seconds (None: none); ``baseline`` also trains a same-size MLP; ``seed``.
    """

    patch_size: int = 7
    dim: int = 96
    depth: int = 6
    heads: int = 4
    positions: str = "sin2d"
    neighborhood: int | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    dev_size: int = 5000
    shift: int = 0
    flip: bool = False
    time_limit: float | None = 14 * 60
    baseline: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("patch_size", "dim", "depth", "heads", "epochs", "batch_size", "dev_size"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("shift", self.shift, minimum=0)
        _check_int("seed", self.seed, minimum=0)
        if self.positions not in ("sin2d", "learned"):
            raise ValueError(f"positions must be 'sin2d' or 'learned', got {self.positions!r}")
        if self.dim % self.heads:
            raise ValueError(
                f"dim must be divisible by heads, got dim={self.dim} and heads={self.heads}"
            )
        if self.positions == "sin2d" and self.dim % 4:
            raise ValueError(
                f"dim must be divisible by 4 with positions='sin2d' (sin/cos of rows and "
                f"columns), got {self.dim}"
            )
        k = self.neighborhood
        if k is not None:
            _check_int("neighborhood", k, minimum=1)
            if k % 2 == 0:
                raise ValueError(f"neighborhood must be an odd number of patches, got {k}")
        if not (_is_number(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if not (_is_number(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(
                f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}"
            )
        if self.time_limit is not None and not (
            _is_number(self.time_limit) and self.time_limit > 0
        ):
            raise ValueError(f"time_limit must be None or seconds > 0, got {self.time_limit!r}")

    @classmethod
    def for_dataset(cls, dataset: str, **overrides: Any) -> ImageTaskConfig:
        """The defaults of ``dataset`` ("digits" | "fashion-mnist") with ``overrides`` applied;
        an override of None means "the data set's default" (so argparse values pass straight in).
        """
        if dataset not in DATASET_DEFAULTS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown ImageTaskConfig option(s) {unknown}; known: {sorted(names)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(cls(), **{**DATASET_DEFAULTS[dataset], **given})


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
