"""Real vectors and weights, offline.

- ``load_glove(path=None) -> GloVe``: static word vectors (the packaged GloVe 6B 50-d, or any
  GloVe .txt file); ``words(text)`` splits text the way GloVe was trained (lowercase,
  punctuation apart).
- ``load_encoder(path=None) -> PretrainedEncoder``: a BERT, RoBERTa, DistilBERT, ALBERT or
  ELECTRA folder (config.json + model.safetensors + tokenizer.json; default all-MiniLM-L6-v2) as
  this library's modules, returning hidden states and per-layer, per-head attention weights.
  The family comes from config.json's ``model_type``; each has one name table (``FAMILIES``).
- ``load_bert(path=None)``: the same for BERT folders only (``Bert`` is ``PretrainedEncoder``).
- ``contextual.encode_words``: a sentence's words through the encoder (pieces -> words);
  ``compare``: one word across sentences, static vs contextual (what ``selfattention explain``
  prints).
"""

from selfattention.nn import EncoderOutput
from selfattention.pretrained.bert import Bert, BertEmbeddings
from selfattention.pretrained.checkpoint import CheckpointError, default_model_path
from selfattention.pretrained.config import BertConfig, EncoderConfig
from selfattention.pretrained.encoder import Embeddings, PretrainedEncoder
from selfattention.pretrained.families import FAMILIES, Family, bert_name_map, read_config
from selfattention.pretrained.glove import GloVe, default_glove_path, load_glove, words
from selfattention.pretrained.load import load_bert, load_encoder
from selfattention.pretrained.pooling import Pooling, max_pool, mean_pool

__all__ = [
    "FAMILIES",
    "Bert",
    "BertConfig",
    "BertEmbeddings",
    "CheckpointError",
    "Embeddings",
    "EncoderConfig",
    "EncoderOutput",
    "Family",
    "GloVe",
    "Pooling",
    "PretrainedEncoder",
    "bert_name_map",
    "default_glove_path",
    "default_model_path",
    "load_bert",
    "load_encoder",
    "load_glove",
    "max_pool",
    "mean_pool",
    "read_config",
    "words",
]
