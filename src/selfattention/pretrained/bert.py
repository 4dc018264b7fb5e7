"""The names this package had when it read BERT only: ``Bert`` is ``PretrainedEncoder``,
``BertEmbeddings`` is ``Embeddings``; ``load_bert`` reads BERT folders only (``load_encoder``
reads every supported family)."""

from __future__ import annotations

from selfattention.pretrained.encoder import Embeddings, PretrainedEncoder
from selfattention.pretrained.load import load_bert
from selfattention.pretrained.pooling import Pooling, max_pool, mean_pool

__all__ = ["Bert", "BertEmbeddings", "Pooling", "load_bert", "max_pool", "mean_pool"]

Bert = PretrainedEncoder
BertEmbeddings = Embeddings
