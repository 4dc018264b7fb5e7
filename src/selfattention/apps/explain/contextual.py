"""From word pieces back to words: what a pretrained encoder does to each word of a sentence.

A word may be split into several pieces ("riverbank" -> river, ##bank). A word's vector at a
layer is the mean of its pieces' vectors; a word's attention as a query is the mean of its
pieces' rows, and the weight it gives another word is the sum over that word's pieces (so rows
still sum to 1). Special tokens ([CLS], [SEP]) stay as they are: BERT heads attend to them a lot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from selfattention.apps.explain.views import head_vectors

__all__ = ["EncodedWords", "encode_words"]


@dataclass(frozen=True)
class EncodedWords:
    """One sentence through the encoder.

    Attributes:
        words: the n_w input words.
        tokens: the n pieces, special tokens included (no padding).
        word_ids: (n,) the word each piece belongs to, -1 for special tokens.
        hidden: (L + 1, n, dim) float32: the embedding output, then every layer's output.
        weights: (L, H, n, n) float32 attention weights [layer, head, query, key].
        queries, keys: (L, H, n, d) projected queries and keys; scale: scores = scale · q·k.
        value_norms: (L, H, n) ‖v_j W_o^h‖ (value-weighted attention = weights · value_norms).
    """

    words: list[str]
    tokens: list[str]
    word_ids: np.ndarray
    hidden: np.ndarray
    weights: np.ndarray
    queries: np.ndarray | None = None
    keys: np.ndarray | None = None
    scale: float | None = None
    value_norms: np.ndarray | None = None

    def pieces(self, word: int) -> np.ndarray:
        """Positions of the pieces of word number ``word``."""
        if not 0 <= word < len(self.words):
            raise IndexError(f"word index {word} out of range for {len(self.words)} words")
        return np.flatnonzero(self.word_ids == word)

    def word_vector(self, word: int, layer: int) -> np.ndarray:
        """(dim,) mean of the word's pieces at ``layer`` (0 = embeddings, L = last layer)."""
        pieces = self.pieces(word)
        if not len(pieces):
            raise ValueError(
                f"word {self.words[word]!r} produced no tokens (the tokenizer drops it)"
            )
        return self.hidden[layer, pieces].mean(0)

    def units(self) -> tuple[list[str], list[np.ndarray]]:
        """Labels and piece positions of every attention target: specials and words, in order."""
        labels, groups = [], []
        seen = set()
        for pos, w in enumerate(self.word_ids.tolist()):
            if w < 0:
                labels.append(self.tokens[pos])
                groups.append(np.array([pos]))
            elif w not in seen:
                seen.add(w)
                labels.append(self.words[w])
                groups.append(self.pieces(w))
        return labels, groups

    def attended(
        self, word: int, layer: int, head: int, k: int = 3, *, specials: bool = True
    ) -> list[tuple[str, float]]:
        """The ``k`` words that ``word`` attends to most, with their weight, summed over the
        word's pieces and over repeats of the same word.

        ``layer`` counts from 0 (the first encoder layer); ``specials=False`` leaves [CLS] and
        [SEP] out of the ranking (see ``special_weight``).
        """
        pieces = self.pieces(word)
        if not len(pieces):
            raise ValueError(
                f"word {self.words[word]!r} produced no tokens (the tokenizer drops it)"
            )
        row = self.weights[layer, head, pieces].mean(0)  # (n,) over pieces
        totals: dict[str, float] = {}  # a repeated word ("the" x 3) is summed into one entry
        for label, g in zip(*self.units(), strict=True):
            if specials or self.word_ids[g[0]] >= 0:
                totals[label] = totals.get(label, 0.0) + float(row[g].sum())
        return sorted(totals.items(), key=lambda kv: -kv[1])[:k]

    def special_weight(self, word: int) -> np.ndarray:
        """(L, H) total weight ``word`` gives the special tokens ([CLS], [SEP])."""
        pieces = self.pieces(word)
        rows = self.weights[:, :, pieces].mean(2)  # (L, H, n)
        return rows[..., self.word_ids < 0].sum(-1)


@torch.no_grad()
def encode_words(
    model, sentences: list[list[str]], *, max_length: int | None = None
) -> list[EncodedWords]:
    """Run ``model`` (a ``Bert``) on pre-split sentences; one ``EncodedWords`` per sentence.

    A sentence longer than ``max_length`` pieces (default: the model's positions) raises
    ValueError (see ``Bert.encode``).
    """
    batch = model.encode(sentences, max_length=max_length)
    out = model(
        batch["input_ids"],
        batch["attention_mask"],
        batch["token_type_ids"],
        return_weights=True,
        return_hidden_states=True,
    )
    views = head_vectors(model, out.hidden_states)
    hidden = torch.stack(out.hidden_states, 1)  # (b, L + 1, n, dim)
    weights = torch.stack(out.weights, 1)  # (b, L, H, n, n)
    tokens = model.tokens(batch["input_ids"], batch["attention_mask"])
    result = []
    for r, words in enumerate(sentences):
        n = len(tokens[r])
        result.append(
            EncodedWords(
                words=list(words),
                tokens=tokens[r],
                word_ids=batch["word_ids"][r, :n].numpy(),
                hidden=hidden[r, :, :n].float().numpy(),
                weights=weights[r, :, :, :n, :n].float().numpy(),
                queries=views.queries[r, :, :, :n],
                keys=views.keys[r, :, :, :n],
                scale=views.scale,
                value_norms=views.value_norms[r, :, :, :n],
            )
        )
    return result
