"""ALBERT (``model_type`` "albert"): factorised embeddings (width embedding_size, mapped to
hidden_size by ``encoder.embedding_hidden_mapping_in``) and layer groups whose weights are shared:
num_hidden_layers layers run group floor(i·G / L) of num_hidden_groups (G = 1 in every released
model: one layer's weights, repeated)."""

from __future__ import annotations

from selfattention.pretrained.config import EncoderConfig
from selfattention.pretrained.families.base import Family, both, layer_names
from selfattention.pretrained.families.bert import BERT_CONFIG_KEYS, REQUIRED, embedding_names

__all__ = ["ALBERT"]

LAYER = {
    "attn.query_proj": "attention.query",
    "attn.key_proj": "attention.key",
    "attn.value_proj": "attention.value",
    "attn.out_proj": "attention.dense",
    "norm1": "attention.LayerNorm",
    "ff.fc1": "ffn",
    "ff.fc2": "ffn_output",
    "norm2": "full_layer_layer_norm",
}


def names(config: EncoderConfig) -> dict[str, str]:
    return (
        embedding_names(config)  # AlbertEmbeddings keeps BERT's names, at width E
        | both("embeddings.project", "encoder.embedding_hidden_mapping_in")
        | layer_names(
            config,
            LAYER,
            lambda group, inner: f"encoder.albert_layer_groups.{group}.albert_layers.{inner}",
        )
    )


ALBERT = Family(
    model_type="albert",
    prefix="albert.",
    keys={
        **BERT_CONFIG_KEYS,
        "embedding_size": "embedding_size",
        "num_hidden_groups": "layer_groups",
        "inner_group_num": "group_size",
    },
    required=REQUIRED,
    names=names,
    defaults={"layer_groups": 1, "embedding_size": 128, "hidden_act": "gelu_new"},
    pooler="pooler",
    project="always",
)
