"""DistilBERT (``model_type`` "distilbert"): no token types, its own config keys and names
(``transformer.layer.i.attention.q_lin`` ...), LayerNorm eps fixed at 1e-12."""

from __future__ import annotations

from selfattention.pretrained.config import EncoderConfig
from selfattention.pretrained.families.base import Family, both, layer_names

__all__ = ["DISTILBERT"]

KEYS = {
    "vocab_size": "vocab_size",
    "dim": "hidden_size",
    "n_layers": "num_layers",
    "n_heads": "num_heads",
    "hidden_dim": "intermediate_size",
    "max_position_embeddings": "max_position_embeddings",
    "activation": "hidden_act",
    "dropout": "hidden_dropout",
    "attention_dropout": "attention_dropout",
    "pad_token_id": "pad_token_id",
}

LAYER = {
    "attn.query_proj": "attention.q_lin",
    "attn.key_proj": "attention.k_lin",
    "attn.value_proj": "attention.v_lin",
    "attn.out_proj": "attention.out_lin",
    "norm1": "sa_layer_norm",
    "ff.fc1": "ffn.lin1",
    "ff.fc2": "ffn.lin2",
    "norm2": "output_layer_norm",
}


def names(config: EncoderConfig) -> dict[str, str]:
    return {
        "embeddings.word.weight": "embeddings.word_embeddings.weight",
        "embeddings.position.weight": "embeddings.position_embeddings.weight",
        **both("embeddings.norm", "embeddings.LayerNorm"),
    } | layer_names(config, LAYER, lambda group, _: f"transformer.layer.{group}")


DISTILBERT = Family(
    model_type="distilbert",
    prefix="distilbert.",
    keys=KEYS,
    required=("vocab_size", "dim", "n_layers", "n_heads"),
    names=names,
    # sinusoidal_pos_embds only changes how the table was initialised: it is stored all the same
    defaults={"type_vocab_size": 0, "layer_norm_eps": 1e-12},
)
