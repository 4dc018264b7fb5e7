"""What a BERT-family ``config.json`` says, in this library's plain names.

One frozen ``EncoderConfig`` serves every family; the family tables (``families/``) say which
``config.json`` key fills which field and what the family fixes (DistilBERT: no token types,
eps 1e-12; RoBERTa: positions counted after the padding index; ALBERT: shared layer groups).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HIDDEN_ACTS", "BertConfig", "EncoderConfig"]

# config.json hidden_act -> selfattention.nn activation name ("gelu_new" and "gelu_fast" are
# both the tanh approximation, "gelu_python" the exact erf form).
HIDDEN_ACTS = {
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}


@dataclass(frozen=True)
class EncoderConfig:
    """The fields of a BERT-family ``config.json`` this implementation uses.

    Attributes:
        model_type: the family ("bert", "roberta", "distilbert", "albert", "electra").
        embedding_size: width E of the embedding tables; None = hidden_size. When
            ``project_embeddings`` the embeddings are mapped E -> hidden_size by a Linear
            (ALBERT's factorised embeddings, ELECTRA's embeddings_project).
        type_vocab_size: segment ids; 0 = the family has no token types (DistilBERT).
        positions_after_padding: RoBERTa's position ids, pad + 1 + (number of real tokens up to
            and including this one); padding takes position pad_token_id.
        layer_groups: 0 = every layer has its own weights; G >= 1 = ALBERT: G groups of
            ``group_size`` layers, layer i (0..num_layers-1) runs group floor(i / (L / G)).
    """

    model_type: str = "bert"
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
    embedding_size: int | None = None
    project_embeddings: bool = False
    positions_after_padding: bool = False
    layer_groups: int = 0
    group_size: int = 1

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def embedding_dim(self) -> int:
        """Width of the embedding tables (E)."""
        return self.hidden_size if self.embedding_size is None else self.embedding_size

    @property
    def max_positions(self) -> int:
        """Most tokens a sequence may have, special tokens included: max_position_embeddings,
        less pad_token_id + 1 for RoBERTa (514 - 2 = 512), whose first rows are never used."""
        if self.positions_after_padding:
            return self.max_position_embeddings - self.pad_token_id - 1
        return self.max_position_embeddings

    def layer_plan(self) -> list[tuple[int, int]]:
        """The weights each of the layers run in order uses, as (group, layer in group).

        BERT-like: [(0, 0), (1, 0), ..., (L-1, 0)], one set per layer. ALBERT: group
        floor(i·G / L) for i = 0..L-1, each running its ``group_size`` layers, so
        L · group_size layers run and only G · group_size weight sets exist.
        """
        if not self.layer_groups:
            return [(i, 0) for i in range(self.num_layers)]
        per_group = self.num_layers / self.layer_groups  # as transformers computes it
        return [
            (int(i / per_group), j) for i in range(self.num_layers) for j in range(self.group_size)
        ]


BertConfig = EncoderConfig  # the name it had when only BERT was read
