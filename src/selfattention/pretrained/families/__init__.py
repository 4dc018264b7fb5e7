"""The supported BERT-family layouts, one name table per family, and reading ``config.json``.

``FAMILIES`` maps ``config.json``'s ``model_type`` to its ``Family``; ``read_config(folder)``
picks the family from ``model_type`` (an unknown or missing one is a ``CheckpointError`` naming
the supported ones: a folder is never read as another family) and fills an ``EncoderConfig``.
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

from selfattention.pretrained.checkpoint import CONFIG_FILE, _fail
from selfattention.pretrained.config import HIDDEN_ACTS, EncoderConfig
from selfattention.pretrained.families.albert import ALBERT
from selfattention.pretrained.families.base import Family
from selfattention.pretrained.families.bert import BERT, bert_name_map
from selfattention.pretrained.families.distilbert import DISTILBERT
from selfattention.pretrained.families.electra import ELECTRA
from selfattention.pretrained.families.roberta import ROBERTA

__all__ = ["FAMILIES", "Family", "bert_name_map", "family_of", "read_config"]

FAMILIES: dict[str, Family] = {
    "bert": BERT,
    "roberta": ROBERTA,
    "distilbert": DISTILBERT,
    "albert": ALBERT,
    "electra": ELECTRA,
}

_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "int | None": int}
_POSITIVE = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size")
_POSITIVE += ("max_position_embeddings", "group_size")


def family_of(model_type: object, where: Path | str = CONFIG_FILE) -> Family:
    """The ``Family`` of a ``model_type``; CheckpointError naming the supported ones if none."""
    if isinstance(model_type, str) and model_type in FAMILIES:
        return FAMILIES[model_type]
    what = "has no model_type" if model_type is None else f"model_type {model_type!r}"
    raise _fail(where, f"{what} is not supported; supported model types: {', '.join(FAMILIES)}")


def read_config(folder: Path) -> tuple[EncoderConfig, Family]:
    """Parse ``folder/config.json``: its family and an ``EncoderConfig``; errors name the file
    and the key."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise _fail(path, "file not found")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(path, f"not valid JSON ({e})") from e
    if not isinstance(raw, dict):
        raise _fail(path, f"expected a JSON object, got {type(raw).__name__}")
    if "model_type" not in raw:
        raise _fail(path, f"missing key(s) ['model_type']; supported: {', '.join(FAMILIES)}")
    family = family_of(raw["model_type"], path)
    missing = [k for k in family.required if k not in raw]
    if missing:
        raise _fail(path, f"missing key(s) {missing} for model_type {family.model_type!r}")
    kind = raw.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise _fail(path, f"position_embedding_type {kind!r} is not supported (only 'absolute')")
    types = {f.name: _TYPES[f.type] for f in fields(EncoderConfig)}
    values = {"model_type": family.model_type, **family.defaults}
    for key, name in family.keys.items():
        if key not in raw or (raw[key] is None and key not in family.required):
            continue  # null (ELECTRA's embedding_size, some pad_token_id): the default
        value, want = raw[key], types[name]
        ok = isinstance(value, want) or (want is float and isinstance(value, int))
        if not ok or isinstance(value, bool):
            raise _fail(path, f"{key} must be {want.__name__}, got {value!r}")
        values[name] = want(value)
    cfg = EncoderConfig(**values)
    _check(cfg, family, path)
    sizes_differ = cfg.embedding_dim != cfg.hidden_size
    if family.project == "always" or (family.project == "if_sizes_differ" and sizes_differ):
        cfg = replace(cfg, project_embeddings=True)
    return cfg, family


def _check(cfg: EncoderConfig, family: Family, path: Path) -> None:
    """Values the model cannot be built from (a CheckpointError naming the key)."""
    for name in _POSITIVE:
        if getattr(cfg, name) < 1:
            raise _fail(path, f"{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.hidden_size % cfg.num_heads:
        raise _fail(
            path, f"hidden_size {cfg.hidden_size} is not divisible by {cfg.num_heads} heads"
        )
    if cfg.hidden_act not in HIDDEN_ACTS:
        supported = ", ".join(sorted(HIDDEN_ACTS))
        raise _fail(path, f"hidden_act {cfg.hidden_act!r} is not supported (only {supported})")
    if not 0 <= cfg.pad_token_id < cfg.vocab_size:
        raise _fail(path, f"pad_token_id {cfg.pad_token_id} is outside [0, {cfg.vocab_size})")
    if cfg.max_positions < 1:
        raise _fail(path, f"max_position_embeddings {cfg.max_position_embeddings} leaves no room")
    if "layer_groups" in family.defaults and not 1 <= cfg.layer_groups <= cfg.num_layers:
        raise _fail(
            path, f"num_hidden_groups must lie in [1, {cfg.num_layers}], got {cfg.layer_groups}"
        )
