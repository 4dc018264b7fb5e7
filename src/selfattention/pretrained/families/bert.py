"""BERT (``model_type`` "bert"): the names of ``BertModel`` and its task checkpoints."""

from __future__ import annotations

from selfattention.pretrained.config import EncoderConfig
from selfattention.pretrained.families.base import Family, both, layer_names

__all__ = ["BERT", "BERT_CONFIG_KEYS", "BERT_LAYER", "bert_name_map"]

# config.json key -> EncoderConfig field; RoBERTa and ELECTRA spell theirs the same way.
BERT_CONFIG_KEYS = {
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
REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads")

# One layer, ours -> theirs (RobertaLayer and ElectraLayer are copies of BertLayer).
BERT_LAYER = {
    "attn.query_proj": "attention.self.query",
    "attn.key_proj": "attention.self.key",
    "attn.value_proj": "attention.self.value",
    "attn.out_proj": "attention.output.dense",
    "norm1": "attention.output.LayerNorm",
    "ff.fc1": "intermediate.dense",
    "ff.fc2": "output.dense",
    "norm2": "output.LayerNorm",
}


def embedding_names(config: EncoderConfig) -> dict[str, str]:
    """BertEmbeddings: word, position and token-type tables, then LayerNorm."""
    return {
        "embeddings.word.weight": "embeddings.word_embeddings.weight",
        "embeddings.position.weight": "embeddings.position_embeddings.weight",
        "embeddings.token_type.weight": "embeddings.token_type_embeddings.weight",
        **both("embeddings.norm", "embeddings.LayerNorm"),
    }


def names(config: EncoderConfig) -> dict[str, str]:
    return embedding_names(config) | layer_names(
        config, BERT_LAYER, lambda group, _: f"encoder.layer.{group}"
    )


BERT = Family(
    model_type="bert",
    prefix="bert.",
    keys=BERT_CONFIG_KEYS,
    required=REQUIRED,
    names=names,
    pooler="pooler.dense",
)


def bert_name_map(num_layers: int, *, pooler: bool = False) -> dict[str, str]:
    """The BERT table for ``num_layers`` layers: our parameter name -> the checkpoint's."""
    return BERT.name_map(EncoderConfig(num_layers=num_layers), pooler=pooler)
