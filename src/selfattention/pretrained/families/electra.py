"""ELECTRA (``model_type`` "electra", the discriminator or the generator's encoder): BERT's
layers under ``electra.``, embeddings of width embedding_size mapped to hidden_size by
``embeddings_project`` when the two differ; no pooler."""

from __future__ import annotations

from selfattention.pretrained.config import EncoderConfig
from selfattention.pretrained.families.base import Family, both
from selfattention.pretrained.families.bert import BERT_CONFIG_KEYS, REQUIRED
from selfattention.pretrained.families.bert import names as bert_names

__all__ = ["ELECTRA"]


def names(config: EncoderConfig) -> dict[str, str]:
    table = bert_names(config)
    if config.project_embeddings:
        table |= both("embeddings.project", "embeddings_project")
    return table


ELECTRA = Family(
    model_type="electra",
    prefix="electra.",
    keys={**BERT_CONFIG_KEYS, "embedding_size": "embedding_size"},
    required=REQUIRED,
    names=names,
    project="if_sizes_differ",
)
