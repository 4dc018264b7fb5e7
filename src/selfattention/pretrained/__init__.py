"""Real vectors and weights, offline.

- ``load_glove(path=None) -> GloVe``: static word vectors (the packaged GloVe 6B 50-d, or any
  GloVe .txt file); ``words(text)`` splits text the way GloVe was trained (lowercase,
  punctuation apart).
- ``load_bert(path=None) -> Bert``: a BERT-format folder (config.json + model.safetensors +
  tokenizer.json; default all-MiniLM-L6-v2) as this library's modules, returning hidden states
  and per-layer, per-head attention weights.
"""

from selfattention.nn import EncoderOutput
from selfattention.pretrained.bert import (
    Bert,
    BertEmbeddings,
    Pooling,
    load_bert,
    max_pool,
    mean_pool,
)
from selfattention.pretrained.checkpoint import (
    BertConfig,
    CheckpointError,
    bert_name_map,
    default_model_path,
)
from selfattention.pretrained.glove import GloVe, default_glove_path, load_glove, words

__all__ = [
    "Bert",
    "BertConfig",
    "BertEmbeddings",
    "CheckpointError",
    "EncoderOutput",
    "GloVe",
    "Pooling",
    "bert_name_map",
    "default_glove_path",
    "default_model_path",
    "load_bert",
    "load_glove",
    "max_pool",
    "mean_pool",
    "words",
]
