"""What :func:`~selfattention.apps.training.fit` does with batches: call the model on one,
move one to a device, score a model over many (:func:`evaluate`), count them, show a bar.

A batch is a pair ``(inputs, targets)``. The model is called as ``model(*inputs)`` when ``inputs``
is a tuple, ``model(**inputs)`` when it is a dict and ``model(inputs)`` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from selfattention.apps.training import ddp

__all__ = ["Batch", "Batches", "LossFn", "MetricFn", "evaluate"]

Batch = tuple[Any, Any]
# A re-iterable of batches, or ``f(epoch) -> batches`` (to reshuffle each epoch).
Batches = Iterable[Batch] | Callable[[int], Iterable[Batch]]
LossFn = Callable[[Any, Any], torch.Tensor]
MetricFn = Callable[[Any, Any], tuple[int, int]]


@torch.no_grad()
def evaluate(
    model: nn.Module, batches: Iterable[Batch], *, loss_fn: LossFn, metric_fn: MetricFn
) -> dict[str, float]:
    """Mean loss (weighted by the metric's ``total``) and accuracy of ``model`` over ``batches``."""
    return score(model, batches, loss_fn, metric_fn, ddp.Local())


@torch.no_grad()
def score(
    model: nn.Module,
    batches: Iterable[Batch],
    loss_fn: LossFn,
    metric_fn: MetricFn,
    group: ddp.Local,
) -> dict[str, float]:
    """:func:`evaluate` on this rank's batches, the sums added up over the ranks."""
    was_training = model.training
    model.eval()
    loss_sum, correct, total = 0.0, 0, 0
    for inputs, targets in batches:
        inputs, targets = (
            to_device(inputs, group.batch_device),
            to_device(targets, group.batch_device),
        )
        out = call(model, inputs)
        c, t = metric_fn(out, targets)
        loss_sum += float(loss_fn(out, targets)) * int(t)
        correct, total = correct + int(c), total + int(t)
    model.train(was_training)
    loss_sum, correct, total = group.sum([loss_sum, correct, total])
    if total == 0:
        raise ValueError("evaluate: the batches held no examples")
    return {"loss": loss_sum / total, "accuracy": correct / total}


def call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, tuple):
        return model(*inputs)
    if isinstance(inputs, Mapping):
        return model(**inputs)
    return model(inputs)


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters(), torch.empty(0)).device


def to_device(x: Any, device: torch.device | None) -> Any:
    """``x`` (a tensor, or tuples/lists/dicts of them) on ``device`` (None: as it is)."""
    if device is None:
        return x
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, Mapping):
        return {k: to_device(v, device) for k, v in x.items()}
    if isinstance(x, tuple | list):
        return type(x)(to_device(v, device) for v in x)
    return x


def epoch_batches(batches: Batches, epoch: int) -> Iterable[Batch]:
    return batches(epoch) if callable(batches) else batches


def count(batches: Batches, epoch: int) -> int:
    it = epoch_batches(batches, epoch)
    try:
        return len(it)  # type: ignore[arg-type]
    except TypeError:
        return sum(1 for _ in it)


def progress_bar(it: Iterable, progress: bool, desc: str) -> Any:
    if not progress:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, leave=False, dynamic_ncols=True)
