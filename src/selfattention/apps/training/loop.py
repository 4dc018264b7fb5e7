"""The training loop: a frozen :class:`FitConfig` and :func:`fit`, which returns a :class:`History`.

One epoch = AdamW steps over the training batches (learning rate from a warm-up/decay schedule,
gradient norm clipped), then the dev set is scored. The best dev accuracy so far is saved to
``config.checkpoint``; the latest state (weights, AdamW, RNG, history) to
``config.checkpoint / "last"`` so that ``resume=True`` continues exactly where a run stopped.

A batch is a pair ``(inputs, targets)``. The model is called as ``model(*inputs)`` when ``inputs``
is a tuple, ``model(**inputs)`` when it is a dict and ``model(inputs)`` otherwise.
``loss_fn(output, targets)`` returns a scalar tensor; ``metric_fn(output, targets)`` returns
``(correct, total)`` counts so that accuracy over padded batches adds up exactly.

Under ``torchrun`` (an initialised process group) the same :func:`fit` trains with
DistributedDataParallel; ``ddp.py`` holds what differs, and a single process is unchanged.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from selfattention.apps.training import ddp
from selfattention.apps.training.batches import (
    Batch,
    Batches,
    LossFn,
    MetricFn,
    call,
    count,
    device_of,
    epoch_batches,
    evaluate,
    progress_bar,
    score,
    to_device,
)
from selfattention.apps.training.checkpoint import (
    CheckpointError,
    CheckpointMismatch,
    check_same_config,
    load_checkpoint,
    load_optimizer,
    load_state,
    load_tensors,
    read_checkpoint_extra,
    save_checkpoint,
)
from selfattention.apps.training.config import FitConfig, History

__all__ = ["Batches", "evaluate", "fit", "set_seed"]


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators so that a run can be repeated exactly."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"set_seed: seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (code that uses the global NumPy generator)
    torch.manual_seed(seed)


def fit(
    model: nn.Module,
    train_batches: Batches,
    dev_batches: Iterable[Batch],
    config: FitConfig,
    *,
    loss_fn: LossFn,
    metric_fn: MetricFn,
    meta: Mapping[str, Any] | None = None,
    param_groups: list[dict] | None = None,
    on_epoch: Callable[[dict[str, float], bool], None] | None = None,
) -> History:
    """Train ``model`` with AdamW and early stopping on dev accuracy; on return it holds the
    best weights, which are also saved in ``config.checkpoint`` with ``meta`` as their config.

    Args:
        meta: JSON-serialisable config saved with the weights (what rebuilds the model); on
            resume it must equal the saved one, else :class:`CheckpointMismatch` names the keys.
        param_groups: AdamW parameter groups (e.g. a smaller rate for a pretrained encoder);
            default: every parameter with ``requires_grad``.
        on_epoch: called after each epoch with its row and whether dev accuracy improved
            (on rank 0 only when several processes train).

    Several processes (a ``torch.distributed`` process group of N > 1 is initialised, e.g. by
    :func:`~selfattention.apps.training.ddp.process_group` under ``torchrun``): every rank
    calls ``fit`` with the same arguments. The model is wrapped in DistributedDataParallel;
    each rank trains on batches ``rank, rank + N, ...`` of every epoch (padded by wrapping
    around so that all take ``ceil(batches / N)`` steps: the effective batch is N times the
    task's); the dev batches are shared out the same way and their sums added up over the
    ranks. Rank 0 writes the checkpoints (the others wait at a barrier), shows the progress
    bar and calls ``on_epoch``; its decisions to stop (time limit, patience) are broadcast. On
    return every rank's model holds rank 0's best weights. With NCCL the model and batches
    move to this rank's GPU while training, and back at the end.

    Raises:
        KeyboardInterrupt: on Ctrl-C, re-raised with a message naming the last checkpoint.
        DistributedError: another rank stopped or died, or stayed silent past the process
            group's timeout (several processes only).
    """
    meta = dict(meta or {})
    group = ddp.current()
    home = device_of(model)
    if group.device is not None and group.device != home:
        model.to(group.device)  # NCCL: this rank's GPU (the Parameter objects stay the same)
    optimizer = _optimizer(model, config, param_groups)
    if config.resume:  # every rank reads the same checkpoint; a failure on one stops all
        run = group.everywhere(lambda: _resume(model, optimizer, config, meta), "to resume")
    else:
        run = _Run()
    schedule = _Schedule(config, train_batches, run.epoch, group)
    clock = _Clock(config.time_limit, run.history[-1]["elapsed"] if run.history else 0.0)
    stopped = run.stop_reason(config)
    try:
        net = group.wrap(model)
        while stopped is None:
            if clock.limit is not None and group.decide(clock.expired()):
                stopped = "time_limit"
                break
            row, cut = _train_epoch(
                net, optimizer, train_batches, run, config, schedule, clock, group, loss_fn,
                metric_fn,
            )  # fmt: skip
            if row is None:  # the time ran out before this epoch's first batch
                stopped = "time_limit"
                break
            # The dev set is shared out and scored on the bare model, the sums reduced over the
            # ranks: every rank gets the same numbers and the same best epoch.
            dev = score(model, group.share(dev_batches, pad=False), loss_fn, metric_fn, group)
            row.update(dev_loss=dev["loss"], dev_accuracy=dev["accuracy"], elapsed=clock.elapsed())
            improved = run.record(row)
            if improved and group.main:
                save_checkpoint(config.checkpoint, model, meta, extra=row)
            _save_last(config, model, optimizer, meta, run, group.main)
            group.barrier()  # the others wait while rank 0 writes
            if on_epoch is not None and group.main:
                on_epoch(row, improved)
            stopped = group.decide("time_limit" if cut else run.stop_reason(config))
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_where_to_resume(config)) from None
    except RuntimeError as e:
        explained = group.explain(e, "training")
        if explained is e:
            raise
        raise explained from e
    if not run.history:
        raise RuntimeError(f"fit: time_limit={config.time_limit}s ran out before the first batch")
    if group.main:
        state, _ = load_checkpoint(config.checkpoint)
        model.load_state_dict(state)
    group.broadcast_state(model)
    model.to(home)
    return History(
        tuple(run.history), run.best_epoch, run.best_dev_accuracy, stopped, clock.elapsed()
    )


# ---------------------------------------------------------------------------------------------
# the pieces of the loop


@dataclass
class _Run:
    """Where a run stands; saved in ``last`` so that a resumed run continues from it."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_dev_accuracy: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    epoch: int = 0  # epochs finished
    step: int = 0  # optimizer steps taken

    def record(self, row: dict[str, float]) -> bool:
        """Add an epoch's row; True when its dev accuracy is the best so far."""
        self.history.append(row)
        self.epoch = int(row["epoch"])
        if row["dev_accuracy"] > self.best_dev_accuracy:
            self.best_dev_accuracy, self.best_epoch, self.bad_epochs = (
                row["dev_accuracy"],
                self.epoch,
                0,
            )
            return True
        self.bad_epochs += 1
        return False

    def stop_reason(self, config: FitConfig) -> str | None:
        if config.patience is not None and self.bad_epochs >= config.patience:
            return "patience"
        return "epochs" if self.epoch >= config.epochs else None


class _Clock:
    def __init__(self, limit: float | None, already: float) -> None:
        self.limit, self.t0 = limit, time.perf_counter() - already

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def expired(self) -> bool:
        return self.limit is not None and self.elapsed() > self.limit


class _Schedule:
    """Learning-rate factor per step: linear warm-up, then constant or linear decay to 0."""

    def __init__(self, config: FitConfig, batches: Batches, epoch: int, group: ddp.Local) -> None:
        self.warmup = config.warmup_steps
        # steps per epoch: this rank's share of the batches
        self.total = group.steps(count(batches, epoch)) * config.epochs if config.decay else None

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        if self.warmup and step < self.warmup:
            factor = (step + 1) / self.warmup
        elif self.total:
            factor = max(0.0, (self.total - step) / max(1, self.total - self.warmup))
        else:
            factor = 1.0
        for g in optimizer.param_groups:
            g["lr"] = g["initial_lr"] * factor


def _optimizer(
    model: nn.Module, config: FitConfig, param_groups: list[dict] | None
) -> torch.optim.Optimizer:
    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    for g in optimizer.param_groups:
        g.setdefault("initial_lr", g["lr"])
    return optimizer


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Batches,
    run: _Run,
    config: FitConfig,
    schedule: _Schedule,
    clock: _Clock,
    group: ddp.Local,
    loss_fn: LossFn,
    metric_fn: MetricFn,
) -> tuple[dict[str, float] | None, bool]:
    """One pass over this rank's share of the training batches (every rank takes as many
    steps): ``(row or None if no batch ran, cut by the clock)``; the row's sums are added up
    over the ranks."""
    model.train()
    loss_sum, correct, total, cut = 0.0, 0, 0, False
    epoch = run.epoch + 1
    progress = config.progress and group.main
    mine = group.share(epoch_batches(batches, run.epoch), pad=True)
    bar = progress_bar(mine, progress, f"epoch {epoch}/{config.epochs}")
    for inputs, targets in bar:
        # rank 0's clock decides for all (no collective when there is no limit)
        if clock.limit is not None and group.decide(clock.expired()):
            cut = True  # finish this epoch early: it is scored and saved like any other
            break
        inputs, targets = (
            to_device(inputs, group.batch_device),
            to_device(targets, group.batch_device),
        )
        schedule.apply(optimizer, run.step)
        out = call(model, inputs)
        loss = loss_fn(out, targets)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"fit: loss became {loss.item()} at epoch {epoch}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        run.step += 1
        with torch.no_grad():
            c, t = metric_fn(out, targets)
        loss_sum += float(loss.detach()) * int(t)
        correct, total = correct + int(c), total + int(t)
        if progress:
            bar.set_postfix(loss=f"{loss_sum / total:.4f}", acc=f"{correct / total:.4f}")
    loss_sum, correct, total = group.sum([loss_sum, correct, total])
    if total == 0 and cut:
        return None, True
    if total == 0:
        raise ValueError(
            f"fit: train_batches yielded no examples in epoch {epoch}; expected at least "
            "one (inputs, targets) batch"
        )
    return {"epoch": epoch, "train_loss": loss_sum / total, "train_accuracy": correct / total}, cut


def _save_last(
    config: FitConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    meta: dict,
    run: _Run,
    write: bool,
) -> None:
    seed = random.randrange(2**31)  # the next epoch's Python RNG, reproducible on resume
    random.seed(seed)  # on every rank, so that they stay alike; only rank 0 writes
    if not write:
        return
    extra = {**asdict(run), "python_seed": seed}
    rng = {"rng": {"torch": torch.get_rng_state()}}
    save_checkpoint(config.last, model, meta, extra=extra, optimizer=optimizer, tensors=rng)


def _resume(
    model: nn.Module, optimizer: torch.optim.Optimizer, config: FitConfig, meta: dict
) -> _Run:
    if not (config.last / "config.json").is_file():
        raise CheckpointError(f"cannot resume: {config.last} holds no checkpoint of an earlier run")
    check_same_config(config.last, meta)
    state, _ = load_checkpoint(config.last)
    # Same options, yet other shapes: say so in one line.
    load_state(
        model, state, f"cannot resume from {config.last}: the model differs", CheckpointMismatch
    )
    load_optimizer(config.last, optimizer)
    extra = read_checkpoint_extra(config.last)
    torch.set_rng_state(load_tensors(config.last, "rng")["torch"])
    random.seed(int(extra.pop("python_seed")))
    return _Run(**extra)


def _where_to_resume(config: FitConfig) -> str:
    try:
        epoch = read_checkpoint_extra(config.last).get("epoch")
    except CheckpointError:
        return "no checkpoint was written yet (interrupted in the first epoch)"
    return f"last checkpoint: {config.last} (epoch {epoch}; best weights in {config.checkpoint})"
