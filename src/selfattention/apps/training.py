"""Training utilities shared by every classifier and tagger in ``selfattention.apps``.

* :func:`set_seed` makes a run repeatable (Python, NumPy and torch generators).
* :func:`fit` is the loop: AdamW, gradient clipping, optional linear warm-up and decay, a tqdm bar
  showing running loss and accuracy, evaluation on dev after each epoch, early stopping on dev
  accuracy, the best weights saved as a checkpoint, and ``resume=True`` to continue a run.
* :func:`save_checkpoint` / :func:`load_checkpoint`: ``model.safetensors`` (tensors) and
  ``config.json`` (everything else). No pickles: a checkpoint can be read without running code.
* :func:`write_metrics` writes a metrics dict as JSON.

A batch is a pair ``(inputs, targets)``. The model is called as ``model(*inputs)`` when ``inputs``
is a tuple, ``model(**inputs)`` when it is a dict and ``model(inputs)`` otherwise.
``loss_fn(output, targets)`` returns a scalar tensor; ``metric_fn(output, targets)`` returns
``(correct, total)`` counts so that accuracy over padded batches adds up exactly.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

# One error type for every checkpoint the library reads (pretrained folders and training runs).
from selfattention.pretrained.checkpoint import CheckpointError

__all__ = [
    "CheckpointError",
    "evaluate",
    "fit",
    "load_checkpoint",
    "read_checkpoint_extra",
    "save_checkpoint",
    "set_seed",
    "write_metrics",
]

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OPTIMIZER_FILE = "optimizer.safetensors"
FORMAT = "selfattention-checkpoint/1"
_META = "_checkpoint"  # reserved key in config.json: format, file digests, extra

Batches = Iterable[tuple[Any, Any]] | Callable[[int], Iterable[tuple[Any, Any]]]


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators so that a run can be repeated exactly."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"set_seed: seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (code that uses the global NumPy generator)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# JSON and files


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.item() if x.numel() == 1 else x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and not math.isfinite(x):
        return None  # JSON has no NaN/inf
    return x


def _atomic_write(path: Path, data: bytes) -> None:
    # Write then rename, so an interrupted run never leaves a half-written file under the real name.
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_metrics(path: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Write ``metrics`` as indented JSON (tensors and NumPy scalars become numbers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_jsonable(metrics), indent=2, sort_keys=False) + "\n"
    _atomic_write(path, text.encode())
    return path


def _sha256(path: Path) -> str:
    from selfattention.apps.datasets import sha256_of

    return sha256_of(path)


# ---------------------------------------------------------------------------------------------
# checkpoints


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save

    # Clone: safetensors refuses tensors that share storage (tied weights); loading restores ties.
    plain = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    _atomic_write(path, save(plain))


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise CheckpointError(f"checkpoint file {path} is truncated or corrupt ({e})") from e


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint file {path} is truncated or corrupt ({e})") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint file {path} should hold a JSON object, got {data!r:.40}")
    return data


def save_checkpoint(
    directory: str | Path,
    model: nn.Module | Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Save ``model``'s weights and ``config`` to ``directory``.

    Files: ``model.safetensors`` (the state dict), ``config.json`` (``config`` plus a reserved
    ``"_checkpoint"`` entry with the format, the SHA-256 of each tensor file and ``extra``), and
    with ``optimizer`` also ``optimizer.safetensors`` (its tensors; its settings go in the JSON).
    ``config`` must be JSON-serialisable: it is what a task needs to rebuild the model.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"save_checkpoint: config must be a dict, got {type(config).__name__}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    _save_tensors(state, directory / MODEL_FILE)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "files": {MODEL_FILE: _sha256(directory / MODEL_FILE)},
        "extra": _jsonable(extra or {}),
    }
    if optimizer is not None:
        tensors, groups = _flatten_optimizer(optimizer.state_dict())
        _save_tensors(tensors, directory / OPTIMIZER_FILE)
        meta["files"][OPTIMIZER_FILE] = _sha256(directory / OPTIMIZER_FILE)
        meta["optimizer"] = groups
    body = {**_jsonable(dict(config)), _META: meta}
    _atomic_write(directory / CONFIG_FILE, (json.dumps(body, indent=2) + "\n").encode())
    return directory


def _check_digest(directory: Path, name: str, meta: dict) -> None:
    expected = meta.get("files", {}).get(name)
    path = directory / name
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    if expected is not None and _sha256(path) != expected:
        raise CheckpointError(
            f"checkpoint file {path} is truncated or corrupt (its SHA-256 differs from the one "
            f"recorded in {directory / CONFIG_FILE})"
        )


def load_checkpoint(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`; returns ``(state_dict, config)``.

    Raises:
        CheckpointError: (a ValueError) naming the file that is missing, truncated or corrupt.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    config = _read_json(directory / CONFIG_FILE)
    meta = config.pop(_META, {})
    _check_digest(directory, MODEL_FILE, meta)
    return _load_tensors(directory / MODEL_FILE), config


def read_checkpoint_extra(directory: str | Path) -> dict[str, Any]:
    """The ``extra`` dict saved with a checkpoint (e.g. epoch, best dev accuracy, history)."""
    return dict(_read_json(Path(directory) / CONFIG_FILE).get(_META, {}).get("extra", {}))


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = _jsonable(value)
    return tensors, {"param_groups": _jsonable(state["param_groups"]), "scalars": scalars}


def _load_optimizer(directory: Path, optimizer: torch.optim.Optimizer) -> None:
    config = _read_json(directory / CONFIG_FILE)
    meta = config.get(_META, {})
    if "optimizer" not in meta:
        raise CheckpointError(f"{directory / CONFIG_FILE} has no optimizer state to resume from")
    _check_digest(directory, OPTIMIZER_FILE, meta)
    tensors = _load_tensors(directory / OPTIMIZER_FILE)
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, entries in meta["optimizer"]["scalars"].items():
        state.setdefault(int(idx), {}).update(entries)
    groups = meta["optimizer"]["param_groups"]
    for g in groups:  # JSON turned tuples into lists
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ---------------------------------------------------------------------------------------------
# the loop


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, tuple):
        return model(*inputs)
    if isinstance(inputs, Mapping):
        return model(**inputs)
    return model(inputs)


def _epoch_batches(batches: Batches, epoch: int) -> Iterable[tuple[Any, Any]]:
    return batches(epoch) if callable(batches) else batches


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Any, Any]],
    *,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    metric_fn: Callable[[Any, Any], tuple[int, int]],
) -> dict[str, float]:
    """Mean loss (weighted by the metric's ``total``) and accuracy of ``model`` over ``batches``."""
    was_training = model.training
    model.eval()
    loss_sum, correct, total = 0.0, 0, 0
    for inputs, targets in batches:
        out = _call(model, inputs)
        c, t = metric_fn(out, targets)
        loss_sum += float(loss_fn(out, targets)) * int(t)
        correct, total = correct + int(c), total + int(t)
    model.train(was_training)
    if total == 0:
        raise ValueError("evaluate: the batches held no examples")
    return {"loss": loss_sum / total, "accuracy": correct / total}


def _lr_factor(step: int, warmup: int, total: int | None) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if total:
        return max(0.0, (total - step) / max(1, total - warmup))
    return 1.0


def fit(
    model: nn.Module,
    train_batches: Batches,
    dev_batches: Iterable[tuple[Any, Any]],
    *,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    metric_fn: Callable[[Any, Any], tuple[int, int]],
    epochs: int,
    lr: float,
    patience: int,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    config: Mapping[str, Any] | None = None,
    weight_decay: float = 0.01,
    grad_clip: float | None = 1.0,
    warmup_steps: int = 0,
    decay: bool = False,
    param_groups: list[dict] | None = None,
    time_limit: float | None = None,
) -> dict[str, Any]:
    """Train ``model`` with AdamW and early stopping on dev accuracy.

    After each epoch the dev set is evaluated; when dev accuracy improves, the weights are saved to
    ``out_dir`` (``model.safetensors`` + ``config.json`` holding ``config``). The latest state
    (weights, optimizer, epoch, history, RNG) goes to ``out_dir/last`` so that ``resume=True``
    continues where a run stopped. Training stops after ``patience`` epochs without improvement,
    after ``epochs`` epochs, or when ``time_limit`` seconds have passed. On return ``model`` holds
    the best weights.

    Args:
        train_batches: a re-iterable of ``(inputs, targets)`` or ``f(epoch) -> iterable`` (to
            reshuffle each epoch).
        lr: peak learning rate; with ``warmup_steps`` it rises linearly over that many steps, and
            with ``decay`` it falls linearly to 0 at the end of ``epochs``.
        param_groups: AdamW parameter groups (e.g. a smaller rate for a pretrained encoder);
            default: every parameter with ``requires_grad``.

    Returns:
        ``{"history": [per-epoch dicts], "best_epoch", "best_dev_accuracy", "epochs_run",
        "stopped": "patience" | "epochs" | "time_limit", "seconds"}``.
    """
    for name, value in (("epochs", epochs), ("patience", patience)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"fit: {name} must be a positive int, got {value!r}")
    if not lr > 0:
        raise ValueError(f"fit: lr must be > 0, got {lr!r}")
    out_dir = Path(out_dir)
    last_dir = out_dir / "last"
    config = dict(config or {})
    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    for g in optimizer.param_groups:
        g.setdefault("initial_lr", g["lr"])

    history: list[dict[str, Any]] = []
    best_acc, best_epoch, bad, start_epoch, step = -1.0, 0, 0, 0, 0
    if resume:
        state, _ = load_checkpoint(last_dir)
        model.load_state_dict(state)
        _load_optimizer(last_dir, optimizer)
        extra = read_checkpoint_extra(last_dir)
        history = extra["history"]
        best_acc, best_epoch = extra["best_dev_accuracy"], extra["best_epoch"]
        bad, start_epoch, step = extra["bad_epochs"], extra["epoch"], extra["step"]
        rng = _load_tensors(last_dir / "rng.safetensors")
        torch.set_rng_state(rng["torch"])
        random.seed(int(rng["python_seed"]))

    steps_per_epoch = _count(train_batches, start_epoch) if decay else None
    total_steps = steps_per_epoch * epochs if steps_per_epoch else None
    t0 = time.perf_counter() - (history[-1]["elapsed"] if history else 0.0)
    stopped = "epochs"
    if start_epoch >= epochs or bad >= patience:
        stopped = "patience" if bad >= patience else "epochs"
    for epoch in range(start_epoch, epochs):
        if bad >= patience:
            stopped = "patience"
            break
        if time_limit is not None and time.perf_counter() - t0 > time_limit:
            stopped = "time_limit"
            break
        model.train()
        loss_sum, correct, total = 0.0, 0, 0
        bar = _bar(_epoch_batches(train_batches, epoch), progress, f"epoch {epoch + 1}/{epochs}")
        for inputs, targets in bar:
            if time_limit is not None and time.perf_counter() - t0 > time_limit:
                stopped = "time_limit"  # finish this epoch early: evaluate and save what we have
                break
            factor = _lr_factor(step, warmup_steps, total_steps)
            for g in optimizer.param_groups:
                g["lr"] = g["initial_lr"] * factor
            out = _call(model, inputs)
            loss = loss_fn(out, targets)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"fit: loss became {loss.item()} at epoch {epoch + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            step += 1
            with torch.no_grad():
                c, t = metric_fn(out, targets)
            loss_sum += float(loss.detach()) * int(t)
            correct, total = correct + int(c), total + int(t)
            if progress:
                bar.set_postfix(loss=f"{loss_sum / total:.4f}", acc=f"{correct / total:.4f}")
        if total == 0:
            if stopped == "time_limit":  # the time ran out before this epoch's first batch
                break
            raise ValueError(
                f"fit: train_batches yielded no examples in epoch {epoch + 1}; expected at least "
                "one (inputs, targets) batch"
            )
        dev = evaluate(model, dev_batches, loss_fn=loss_fn, metric_fn=metric_fn)
        row = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(total, 1),
            "train_accuracy": correct / max(total, 1),
            "dev_loss": dev["loss"],
            "dev_accuracy": dev["accuracy"],
            "elapsed": time.perf_counter() - t0,
        }
        history.append(row)
        if dev["accuracy"] > best_acc:
            best_acc, best_epoch, bad = dev["accuracy"], epoch + 1, 0
            save_checkpoint(out_dir, model, config, extra={"epoch": epoch + 1, **row})
        else:
            bad += 1
        if progress:
            mark = " *" if bad == 0 else ""
            print(
                f"epoch {epoch + 1}: train loss {row['train_loss']:.4f} acc "
                f"{row['train_accuracy']:.4f} | dev loss {dev['loss']:.4f} acc "
                f"{dev['accuracy']:.4f}{mark}",
                flush=True,
            )
        extra = {
            "history": history,
            "best_dev_accuracy": best_acc,
            "best_epoch": best_epoch,
            "bad_epochs": bad,
            "epoch": epoch + 1,
            "step": step,
        }
        save_checkpoint(last_dir, model, config, extra=extra, optimizer=optimizer)
        seed = random.randrange(2**31)  # the next epoch's Python RNG, reproducible on resume
        random.seed(seed)
        _save_tensors(
            {"torch": torch.get_rng_state(), "python_seed": torch.tensor(seed)},
            last_dir / "rng.safetensors",
        )
        if stopped == "time_limit":
            break
    else:
        stopped = "patience" if bad >= patience else "epochs"
    if not history:
        raise RuntimeError(f"fit: time_limit={time_limit}s ran out before the first batch")

    state, _ = load_checkpoint(out_dir)
    model.load_state_dict(state)
    return {
        "history": history,
        "best_epoch": best_epoch,
        "best_dev_accuracy": best_acc,
        "epochs_run": len(history),
        "stopped": stopped,
        "seconds": time.perf_counter() - t0,
    }


def _count(batches: Batches, epoch: int) -> int:
    it = _epoch_batches(batches, epoch)
    try:
        return len(it)  # type: ignore[arg-type]
    except TypeError:
        return sum(1 for _ in it)


def _bar(it: Iterable, progress: bool, desc: str) -> Any:
    if not progress:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, leave=False, dynamic_ncols=True)
