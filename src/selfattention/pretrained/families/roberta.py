"""RoBERTa (``model_type`` "roberta"): BERT's tensor names under ``roberta.``; what differs is
the positions, which start after the padding index (pad + 1 + count of real tokens so far,
padding at pad_token_id, hence 514 rows for 512 tokens), and the byte-level BPE tokenizer."""

from __future__ import annotations

from selfattention.pretrained.families.base import Family
from selfattention.pretrained.families.bert import BERT_CONFIG_KEYS, REQUIRED, names

__all__ = ["ROBERTA"]

ROBERTA = Family(
    model_type="roberta",
    prefix="roberta.",
    keys=BERT_CONFIG_KEYS,
    required=REQUIRED,
    names=names,  # RobertaEmbeddings/RobertaLayer keep BERT's names
    defaults={"positions_after_padding": True, "pad_token_id": 1},
    pooler="pooler.dense",
)
