"""Train the vision transformer (and a same-size MLP beside it) on :class:`ImageSplits`.

Training holds out part of the training split as dev (for picking the best epoch); the test split
is touched once, at the end. With ``config.baseline`` an MLP with the same number of parameters
is trained the same way, for comparison.

    splits = load_dataset("digits")
    metrics = train(ImageTaskConfig.for_dataset("digits", epochs=5), splits, "results/images")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfattention.apps import training
from selfattention.apps.vision.config import ImageTaskConfig
from selfattention.apps.vision.data import ImageSplits
from selfattention.apps.vision.model import MLP, VisionTransformer, ViTConfig, count_parameters

__all__ = ["augment", "batches", "train", "vit_config"]

OnEpoch = Callable[[dict, bool], None]

# The dev split is drawn with its own fixed seed, so that runs with different --seed values
# are scored on the same images.
_DEV_SEED = 12345


def vit_config(config: ImageTaskConfig, splits: ImageSplits) -> ViTConfig:
    """The model of ``config`` for the images and classes of ``splits``."""
    c, h, w = splits.image_shape
    return ViTConfig(
        image_size=(h, w),
        channels=c,
        patch_size=config.patch_size,
        dim=config.dim,
        depth=config.depth,
        heads=config.heads,
        num_classes=len(splits.classes),
        positions=config.positions,
        neighborhood=config.neighborhood,
    )


def batches(
    x: Tensor, y: Tensor, batch_size: int, *, seed: int | None, shift: int = 0, flip: bool = False
) -> Iterator[tuple[tuple[Tensor], Tensor]]:
    """Mini-batches ((images,), labels); shuffled with ``seed`` and augmented when seed is set."""
    n = len(y)
    if seed is None:
        order = torch.arange(n)
    else:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        xb = x[idx]
        if seed is not None and (shift or flip):
            xb = augment(xb, shift, flip, torch.Generator().manual_seed(seed * 100003 + start))
        yield (xb,), y[idx]


class _Epochs:
    """``f(epoch) -> batches`` for ``training.fit`` with a known length (for the lr schedule)."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, seed: int, shift: int, flip: bool):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.seed, self.shift, self.flip = seed, shift, flip

    def __call__(self, epoch: int) -> _EpochBatches:
        seed = self.seed * 1000 + epoch
        return _EpochBatches(self.x, self.y, self.batch_size, seed, self.shift, self.flip)


class _EpochBatches(Sequence):
    """The batches ``batches(x, y, batch_size, seed=seed, ...)`` yields, each one made when it
    is asked for: under torchrun a rank shuffles the same order but augments only its share."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, seed: int, shift: int, flip: bool):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.seed, self.shift, self.flip = seed, shift, flip
        self.order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __getitem__(self, i: int) -> tuple[tuple[Tensor], Tensor]:  # type: ignore[override]
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} of {len(self)}")
        start = i * self.batch_size
        idx = self.order[start : start + self.batch_size]
        xb = self.x[idx]
        if self.shift or self.flip:  # the generator batches() gives the batch at `start`
            g = torch.Generator().manual_seed(self.seed * 100003 + start)
            xb = augment(xb, self.shift, self.flip, g)
        return (xb,), self.y[idx]


def augment(x: Tensor, shift: int, flip: bool, generator: torch.Generator) -> Tensor:
    """Random translation by up to ``shift`` pixels (zero fill) and, if ``flip``, mirror half.

    x (b, c, H, W) -> (b, c, H, W).
    """
    b, _, h, w = x.shape
    if shift:
        padded = F.pad(x, (shift, shift, shift, shift))
        dy = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
        dx = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
        rows = dy[:, None] + torch.arange(h)  # (b, H)
        cols = dx[:, None] + torch.arange(w)  # (b, W)
        bi = torch.arange(b)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # (b, H, W, c)
        x = x.permute(0, 3, 1, 2).contiguous()
    if flip:
        mirror = torch.rand(b, generator=generator) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    return x


def _loss(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y)


def _metric(logits: Tensor, y: Tensor) -> tuple[int, int]:
    return int((logits.argmax(-1) == y).sum()), len(y)


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 500) -> float:
    """Share of ``x`` (n, c, H, W) whose argmax logit is ``y`` (n,)."""
    model.eval()
    correct = sum(_metric(model(xb), yb)[0] for (xb,), yb in batches(x, y, batch_size, seed=None))
    return correct / len(y)


def _fit(
    model: nn.Module,
    config: ImageTaskConfig,
    train_xy: tuple[Tensor, Tensor],
    dev_xy: tuple[Tensor, Tensor],
    out_dir: Path,
    meta: dict,
    *,
    resume: bool,
    progress: bool,
    on_epoch: OnEpoch | None,
) -> training.History:
    steps = -(-len(train_xy[1]) // config.batch_size)  # batches per epoch
    fit_config = training.FitConfig(
        checkpoint=out_dir,
        epochs=config.epochs,
        lr=config.lr,
        patience=None,  # the schedule decays to 0 at the end: keep the best epoch, no early stop
        weight_decay=config.weight_decay,
        warmup_steps=min(steps // 2, 200),
        decay=True,
        time_limit=config.time_limit,
        resume=resume,
        progress=progress,
    )
    return training.fit(
        model,
        _Epochs(*train_xy, config.batch_size, config.seed, config.shift, config.flip),
        list(batches(*dev_xy, 500, seed=None)),
        fit_config,
        loss_fn=_loss,
        metric_fn=_metric,
        meta=meta,
        on_epoch=on_epoch,
    )


def train(
    config: ImageTaskConfig,
    splits: ImageSplits,
    checkpoint: str | Path,
    *,
    resume: bool = False,
    progress: bool = False,
    on_epoch: OnEpoch | None = None,
) -> dict:
    """Train the ViT of ``config`` on ``splits`` (and, with ``config.baseline``, the same-size MLP
    into ``checkpoint/mlp``); save the best epoch to ``checkpoint``; return the metrics (also
    written to ``checkpoint/metrics.json``).

    ``resume`` continues from ``checkpoint/last`` (with the same model options); ``progress``
    shows a progress bar; ``on_epoch(row, improved)`` is called after each epoch (of the ViT,
    then of the MLP). Ctrl-C raises KeyboardInterrupt naming the last checkpoint.
    """
    if not isinstance(config, ImageTaskConfig):
        raise TypeError(f"config must be an ImageTaskConfig, got {type(config).__name__}")
    n = len(splits.y_train)
    if n < 2:
        raise ValueError(f"{splits.name}: need at least 2 training images, got {n}")
    checkpoint = Path(checkpoint)
    cfg = vit_config(config, splits)  # checks the patch size against the images first
    training.set_seed(config.seed)
    dev_size = max(1, min(config.dev_size, n // 5))
    # A fixed random dev split from the training images (the test split stays untouched).
    order = torch.randperm(n, generator=torch.Generator().manual_seed(_DEV_SEED))
    dev_idx, train_idx = order[:dev_size], order[dev_size:]
    train_xy = splits.x_train[train_idx], splits.y_train[train_idx]
    dev_xy = splits.x_train[dev_idx], splits.y_train[dev_idx]
    model = VisionTransformer(cfg)
    saved = {
        "task": "images",
        "dataset": splits.name,
        "classes": list(splits.classes),
        "vit": cfg.to_dict(),
    }
    t0, c0 = time.perf_counter(), time.process_time()
    result = _fit(model, config, train_xy, dev_xy, checkpoint, saved,
                  resume=resume, progress=progress, on_epoch=on_epoch)  # fmt: skip
    vit_seconds, vit_cpu = time.perf_counter() - t0, time.process_time() - c0
    params = count_parameters(model)
    metrics = {
        "dataset": splits.name,
        "threads": torch.get_num_threads(),
        "train_images": len(train_idx),
        "dev_images": dev_size,
        "test_images": len(splits.y_test),
        "vit": {
            "parameters": params,
            "config": cfg.to_dict(),
            "test_accuracy": accuracy(model, splits.x_test, splits.y_test),
            "best_dev_accuracy": result.best_dev_accuracy,
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "stopped": result.stopped,
            "train_seconds": vit_seconds,
            "train_cpu_seconds": vit_cpu,
        },
    }
    if config.baseline:
        c, h, w = splits.image_shape
        hidden = MLP.hidden_for(params, (h, w), c, len(splits.classes))
        training.set_seed(config.seed)
        mlp = MLP((h, w), c, hidden, len(splits.classes))
        t0, c0 = time.perf_counter(), time.process_time()
        base = _fit(mlp, config, train_xy, dev_xy, checkpoint / "mlp", {"hidden": hidden},
                    resume=resume, progress=progress, on_epoch=on_epoch)  # fmt: skip
        metrics["mlp"] = {
            "parameters": count_parameters(mlp),
            "hidden": hidden,
            "test_accuracy": accuracy(mlp, splits.x_test, splits.y_test),
            "best_dev_accuracy": base.best_dev_accuracy,
            "epochs_run": base.epochs_run,
            "train_seconds": time.perf_counter() - t0,
            "train_cpu_seconds": time.process_time() - c0,
        }
    if training.is_main_process():  # under torchrun every rank gets here; rank 0 writes
        training.write_metrics(checkpoint / "metrics.json", metrics)
    return metrics
