"""Checkpoints: a folder whose ``config.json`` is the manifest, written last.

Layout of a checkpoint folder::

    config.json                      # the task's config + "_checkpoint": format, files, extra
    model-<sha256[:16]>.safetensors  # the state dict
    optimizer-<...>.safetensors      # optional: AdamW's tensors (its settings are in the JSON)
    rng-<...>.safetensors            # optional: any other named group of tensors

Why it survives an interrupt at any point: tensor files are named by their content, so a new
save never overwrites a file the current manifest names. A save writes the new tensor files
(each atomically: temp file, fsync, rename), then replaces ``config.json`` in one atomic rename
-- the commit point -- and only then deletes the files no manifest names any more. Until the
commit a reader sees the previous checkpoint, complete; after it, the new one. Each file's
SHA-256 is in the manifest, so a file damaged later is reported by name instead of loaded.
No pickles: a checkpoint can be read without running code.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfattention.apps.training.files import TEMP_SUFFIX, jsonable, remove_file, write_atomic

# One error type for every checkpoint the library reads (pretrained folders and training runs).
from selfattention.pretrained.checkpoint import CheckpointError

__all__ = [
    "CONFIG_FILE",
    "CheckpointError",
    "CheckpointMismatch",
    "check_same_config",
    "load_checkpoint",
    "load_optimizer",
    "load_state",
    "load_tensors",
    "read_checkpoint_extra",
    "save_checkpoint",
]

CONFIG_FILE = "config.json"
FORMAT = "selfattention-checkpoint/2"
_META = "_checkpoint"  # reserved key in config.json
# Files a save may leave behind and the next save sweeps: content-named tensor files, the fixed
# names of format 1 (model.safetensors, ...), and temp files of an interrupted write.
_OURS = re.compile(
    r"(?:[a-z_]+-[0-9a-f]{16}|model|optimizer|rng)\.safetensors|\..+" + re.escape(TEMP_SUFFIX)
)


class CheckpointMismatch(CheckpointError):
    """A checkpoint saved with other options than the ones asked for now."""


# ---------------------------------------------------------------------------------------------
# saving


def _tensor_bytes(tensors: Mapping[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    # Clone: safetensors refuses tensors that share storage (tied weights); loading restores ties.
    return save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()})


def save_checkpoint(
    directory: str | Path,
    model: nn.Module | Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    tensors: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
) -> Path:
    """Save ``model``'s weights and ``config`` to ``directory``, atomically as a whole.

    Args:
        config: JSON-serialisable; what a task needs to rebuild the model.
        extra: JSON-serialisable facts about the run (epoch, history, ...), see
            :func:`read_checkpoint_extra`.
        optimizer: its tensors go to ``optimizer-*.safetensors``, its settings to the JSON.
        tensors: more named groups of tensors (e.g. ``{"rng": {...}}``), read back with
            :func:`load_tensors`.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"save_checkpoint: config must be a dict, got {type(config).__name__}")
    if _META in config:
        raise ValueError(f"save_checkpoint: config key {_META!r} is reserved")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    groups: dict[str, Mapping[str, torch.Tensor]] = {
        "model": model.state_dict() if isinstance(model, nn.Module) else dict(model)
    }
    meta: dict[str, Any] = {"format": FORMAT, "files": {}, "extra": jsonable(extra or {})}
    if optimizer is not None:
        groups["optimizer"], meta["optimizer"] = _flatten_optimizer(optimizer.state_dict())
    for role, group in (tensors or {}).items():
        if role in groups or not re.fullmatch(r"[a-z_]+", role):
            raise ValueError(f"save_checkpoint: tensors key {role!r} is taken or not [a-z_]+")
        groups[role] = group
    # 1. the tensor files, under names no current manifest uses for other bytes
    for role, group in groups.items():
        data = _tensor_bytes(group)
        digest = hashlib.sha256(data).hexdigest()
        name = f"{role}-{digest[:16]}.safetensors"
        write_atomic(directory / name, data)
        meta["files"][role] = {"file": name, "sha256": digest}
    # 2. the manifest: this one rename switches from the previous checkpoint to the new one
    body = {**jsonable(dict(config)), _META: meta}
    write_atomic(directory / CONFIG_FILE, (json.dumps(body, indent=2) + "\n").encode())
    # 3. what no manifest names any more
    keep = {entry["file"] for entry in meta["files"].values()}
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.name not in keep and _OURS.fullmatch(path.name):
            remove_file(path)
    return directory


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = jsonable(value)
    return tensors, {"param_groups": jsonable(state["param_groups"]), "scalars": scalars}


# ---------------------------------------------------------------------------------------------
# loading


def _read_manifest(directory: Path) -> dict:
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint file {path} is truncated or corrupt ({e})") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint file {path} should hold a JSON object, got {data!r:.40}")
    return data


def _file_of(directory: Path, meta: dict, role: str) -> tuple[Path, str | None]:
    files = meta.get("files", {})
    if isinstance(files.get(role), dict):
        return directory / files[role]["file"], files[role].get("sha256")
    legacy = f"{role}.safetensors"  # format 1: fixed names, {name: sha256}
    if legacy in files or (role == "model" and not files):
        return directory / legacy, files.get(legacy)
    raise CheckpointError(f"{directory / CONFIG_FILE} names no {role} file")


def load_tensors(directory: str | Path, role: str = "model") -> dict[str, torch.Tensor]:
    """The tensors saved under ``role`` ("model", "optimizer" or a ``tensors=`` key), checked
    against the SHA-256 in the manifest."""
    from safetensors.torch import load

    directory = Path(directory)
    path, expected = _file_of(directory, _read_manifest(directory).get(_META, {}), role)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    data = path.read_bytes()
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise CheckpointError(
            f"checkpoint file {path} is truncated or corrupt (its SHA-256 differs from the one "
            f"recorded in {directory / CONFIG_FILE})"
        )
    try:
        return load(data)
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise CheckpointError(f"checkpoint file {path} is truncated or corrupt ({e})") from e


def load_checkpoint(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`; returns ``(state_dict, config)``.

    Raises:
        CheckpointError: (a ValueError) naming the file that is missing, truncated or corrupt.
    """
    config = _read_manifest(Path(directory))
    config.pop(_META, None)
    return load_tensors(directory, "model"), config


def load_state(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    message: str,
    error: type[Exception] = ValueError,
) -> None:
    """``model.load_state_dict(state)``; a mismatch raises ``error(f"{message} ({line})")``, line
    being the last of torch's many-line message (a user reads one line, not the key list)."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip()
        raise error(f"{message} ({first})") from e


def read_checkpoint_extra(directory: str | Path) -> dict[str, Any]:
    """The ``extra`` dict saved with a checkpoint (e.g. epoch, best dev accuracy, history)."""
    return dict(_read_manifest(Path(directory)).get(_META, {}).get("extra", {}))


def load_optimizer(directory: str | Path, optimizer: torch.optim.Optimizer) -> None:
    """Restore ``optimizer``'s state (tensors and settings) from a checkpoint."""
    directory = Path(directory)
    meta = _read_manifest(directory).get(_META, {})
    if "optimizer" not in meta:
        raise CheckpointError(f"{directory / CONFIG_FILE} has no optimizer state to resume from")
    state: dict[int, dict[str, Any]] = {}
    for name, value in load_tensors(directory, "optimizer").items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, entries in meta["optimizer"]["scalars"].items():
        state.setdefault(int(idx), {}).update(entries)
    groups = meta["optimizer"]["param_groups"]
    for g in groups:  # JSON turned tuples into lists
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except ValueError as e:  # other parameter groups than the ones saved
        raise CheckpointMismatch(f"{directory}: the saved optimizer does not fit ({e})") from e


# ---------------------------------------------------------------------------------------------
# comparing configs (resume)


def _differences(saved: Any, wanted: Any, key: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(saved, dict) and isinstance(wanted, dict):
        out = []
        for k in [*saved, *(k for k in wanted if k not in saved)]:
            out += _differences(saved.get(k), wanted.get(k), f"{key}.{k}" if key else str(k))
        return out
    return [] if saved == wanted else [(key, saved, wanted)]


def _short(value: Any) -> str:
    if isinstance(value, list | dict) and len(value) > 4:
        return f"<{type(value).__name__} of {len(value)} items>"
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_same_config(directory: str | Path, wanted: Mapping[str, Any]) -> None:
    """Raise :class:`CheckpointMismatch` naming each option where the checkpoint in
    ``directory`` differs from ``wanted`` (``model.dim is 32 there, 64 here``)."""
    saved = _read_manifest(Path(directory))
    saved.pop(_META, None)
    diffs = _differences(saved, jsonable(dict(wanted)))
    if diffs:
        listed = "; ".join(f"{k} is {_short(a)} there, {_short(b)} here" for k, a, b in diffs)
        raise CheckpointMismatch(
            f"cannot resume from {directory}: it was saved with other options: {listed}. "
            "Use the checkpoint's options, or train afresh into another checkpoint directory"
        )
