"""``explain(config) -> ExplainResult``: every number the command prints and writes, as data.

The steps, for the followed word w:
1. static vectors X (GloVe) of each sentence's known words;
2. the parameter-free ladder on the first sentence that has w: S = X Xᵀ (or X Xᵀ/√d),
   W = softmax(S) row by row, Y = W X;
3. the encoder's hidden states and per-head weights, mapped from word pieces back to words;
4. cos(w in sentence a, w in sentence b) for every pair, one row per stage (GloVe, both
   parameter-free scales, the embeddings, every layer);
5. the words w attends to most in each layer and head, and its weight on [CLS]/[SEP].
Nothing here prints or writes; ``write_outputs`` turns a result into files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from selfattention.apps.explain.compare import (
    Sentence,
    pair_names,
    parameter_free,
    similarity_rows,
    static_sentences,
    top_attended,
)
from selfattention.apps.explain.config import ExplainConfig
from selfattention.apps.explain.contextual import EncodedWords, encode_words
from selfattention.pretrained import Bert, GloVe, load_encoder, load_glove

__all__ = ["ExplainResult", "Ladder", "ModelInfo", "StaticInfo", "explain"]

# [layer][head] -> [(word, weight), ...] best first
TopWords = list[list[list[tuple[str, float]]]]


@dataclass(frozen=True)
class Ladder:
    """The parameter-free ladder on one sentence's n known words (float64).

    Attributes:
        sentence: its index (0-based). labels: the n words. x: (n, d) GloVe vectors.
        scores: (n, n) X Xᵀ (unscaled, as printed). weights: (n, n) softmax of the scaled scores.
        y: (n, d) W X. scale: "1" or "sqrt".
    """

    sentence: int
    labels: list[str]
    x: np.ndarray
    scores: np.ndarray
    weights: np.ndarray
    y: np.ndarray
    scale: str

    def sources(self, row: int, k: int = 2) -> list[tuple[str, float]]:
        """The ``k`` words row ``row`` takes most weight from; a repeated word is summed once."""
        totals: dict[str, float] = dict.fromkeys(self.labels, 0.0)
        for j, other in enumerate(self.labels):
            totals[other] += float(self.weights[row, j])
        return sorted(totals.items(), key=lambda kv: -kv[1])[:k]


@dataclass(frozen=True)
class StaticInfo:
    """The static vectors used: dimension, vocabulary size, where they were read from."""

    dim: int
    size: int
    source: str


@dataclass(frozen=True)
class ModelInfo:
    """The encoder used: its name (folder or packaged model) and shape."""

    name: str
    layers: int
    heads: int
    hidden: int


@dataclass(frozen=True)
class ExplainResult:
    """Everything one ``explain`` run found (see the module docstring for the steps).

    Attributes:
        config: the config it ran. word: the followed word (lowercase).
        sentences: the static side of each sentence (words, GloVe vectors, the word's index).
        encoded: the encoder's view of each sentence (tokens, hidden states, weights (L, H, n, n)).
        glove, model: what was loaded.
        ladder: the parameter-free ladder on the first sentence with the word (None if GloVe
            knows none of its words).
        pairs: "1 vs 2", ... the sentence pairs that both contain the word.
        similarity: (stage name, one cosine per pair, None where GloVe lacks the word).
        top: sentence index -> [layer][head] -> the ``config.top`` words the word attends to most.
        special_share: sentence index -> (L,) weight on [CLS]/[SEP], mean over heads.
    """

    config: ExplainConfig
    word: str
    sentences: list[Sentence]
    encoded: list[EncodedWords]
    glove: StaticInfo
    model: ModelInfo
    ladder: Ladder | None
    pairs: list[str]
    similarity: list[tuple[str, list[float | None]]]
    top: dict[int, TopWords] = field(default_factory=dict)
    special_share: dict[int, np.ndarray] = field(default_factory=dict)

    def unknown_words(self, k: int) -> list[str]:
        """Words of sentence ``k`` (0-based) that GloVe has no vector for."""
        s = self.sentences[k]
        return [w for i, w in enumerate(s.words) if i not in s.known]

    @property
    def glove_lacks_word(self) -> bool:
        """GloVe has no vector for the followed word (its GloVe rows are blank)."""
        return any(s.target is not None and s.target not in s.known for s in self.sentences)


def _check_length(model: Bert, tokens: list[list[str]]) -> None:
    limit = model.config.max_positions
    # Joined as text, as the encoder itself tokenises pre-split words (byte-level BPE marks
    # word starts only then).
    encs = model.tokenizer.encode_batch([" ".join(t) for t in tokens])
    for k, e in enumerate(encs, 1):
        if len(e.ids) > limit:
            raise ValueError(
                f"sentence {k} has {len(e.ids)} tokens ([CLS] and [SEP] included), more than the "
                f"model's {limit} positions; split it into shorter sentences"
            )


def _ladder(sents: list[Sentence], scale: str) -> Ladder | None:
    k, first = next((k, s) for k, s in enumerate(sents) if s.target is not None)
    if not len(first.known):
        return None
    x = first.x.astype(np.float64)
    y, w = parameter_free(x, scale)
    labels = [first.words[i] for i in first.known]
    return Ladder(k, labels, x, x @ x.T, w, y, scale)


def explain(
    config: ExplainConfig, *, model: Bert | None = None, glove: GloVe | None = None
) -> ExplainResult:
    """Run the comparison ``config`` describes; returns data only (no printing, no files).

    Args:
        config: the sentences, the word, which vectors and model, ``top``, ``scale``.
        model, glove: already-loaded ones to use instead of loading ``config.model`` /
            ``config.glove`` (a notebook or a test running several configs loads them once).

    Raises:
        ValueError: a sentence longer than the model's positions (before any encoding).
        FileNotFoundError / CheckpointError: the model folder or GloVe file is missing or broken
            (the loaders' messages name the file).
    """
    tokens, word = config.resolve()
    if model is None:
        model = load_encoder(config.model)
    _check_length(model, tokens)
    encoded = encode_words(model, tokens)
    if glove is None:
        glove = load_glove(config.glove)
    sents = static_sentences(list(config.sentences), tokens, word, glove)
    top, special = {}, {}
    for k, (s, enc) in enumerate(zip(sents, encoded, strict=True)):
        if s.target is not None:
            top[k] = top_attended(enc, s.target, config.top)
            special[k] = enc.special_weight(s.target).mean(1)  # (L, H) -> (L,)
    cfg = model.config
    return ExplainResult(
        config=config,
        word=word,
        sentences=sents,
        encoded=encoded,
        glove=StaticInfo(glove.dim, len(glove), str(glove.source)),
        model=ModelInfo(config.model_name, cfg.num_layers, cfg.num_heads, cfg.hidden_size),
        ladder=_ladder(sents, config.scale),
        pairs=pair_names(sents),
        similarity=similarity_rows(sents, encoded),
        top=top,
        special_share=special,
    )
