"""One word in several sentences: static vs contextual, measured.

The write-ups' claim, made testable: a static vector (GloVe) is the same in every sentence
(cosine 1); parameter-free self-attention, Y = softmax(X Xᵀ) X, mixes in the context; a pretrained
encoder's layers move the word further. ``similarity_rows`` puts one number on each stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from selfattention.pretrained import GloVe, words

__all__ = [
    "SCALES",
    "Sentence",
    "choose_word",
    "cosine",
    "pair_names",
    "parameter_free",
    "similarity_rows",
    "split_sentences",
    "static_sentences",
    "top_attended",
]

SCALES = {"1": "softmax(X Xᵀ) X", "sqrt": "softmax(X Xᵀ/√d) X"}


@dataclass(frozen=True, eq=False)
class Sentence:
    """A sentence as the static side sees it.

    Attributes:
        text: as given. words: its GloVe-style tokens, all of them (the model reads these too).
        target: index of the followed word in ``words`` (None if absent).
        known: indices of the words GloVe knows. x: (len(known), d) their GloVe vectors.
    """

    text: str
    words: list[str]
    target: int | None
    known: list[int]
    x: np.ndarray


def choose_word(sentences: list[list[str]]) -> str:
    """The longest word (letters only) that every sentence contains; ties -> the first."""
    common = set.intersection(*(set(w for w in s if w.isalpha()) for s in sentences))
    if not common:
        raise ValueError(
            "the sentences share no word; choose the word to follow (it must appear in at "
            "least one sentence)"
        )
    first = sentences[0]
    return max(sorted(common, key=first.index), key=len)


def split_sentences(texts: list[str], word: str | None) -> tuple[list[list[str]], str]:
    """GloVe-style words of every sentence, and the (lowercase) word to follow."""
    for k, t in enumerate(texts, 1):
        if not t.strip():
            raise ValueError(f"sentence {k} is empty; give sentences with at least one word")
    tokens = [words(t) for t in texts]
    if word is None:
        word = choose_word(tokens)
    target = words(word)
    if len(target) != 1:
        raise ValueError(f"word must be a single word, got {word!r} (split as {target})")
    word = target[0]
    if not any(word in ws for ws in tokens):
        raise ValueError(
            f"word {word!r} is in none of the sentences; their words are: "
            + " | ".join(" ".join(ws) for ws in tokens)
        )
    return tokens, word


def static_sentences(
    texts: list[str], tokens: list[list[str]], word: str, glove: GloVe
) -> list[Sentence]:
    """GloVe vectors of each sentence's known words; unknown words are left out of ``x``."""
    out = []
    for text, ws in zip(texts, tokens, strict=True):
        known = [i for i, w in enumerate(ws) if w in glove]
        x, _ = glove.lookup([ws[i] for i in known])
        out.append(Sentence(text, ws, ws.index(word) if word in ws else None, known, x))
    return out


def parameter_free(x: np.ndarray, scale: str = "1") -> tuple[np.ndarray, np.ndarray]:
    """Self-attention with no parameters on static vectors x (n, d), NumPy float64: (Y, W).

    scale "1": Y = softmax(X Xᵀ) X, as the write-ups; "sqrt": Y = softmax(X Xᵀ/√d) X.
    """
    from selfattention import reference

    if scale == "1":
        return reference.self_attention(x, return_weights=True)
    if scale == "sqrt":
        return reference.attention(x, x, x)  # default scale 1/√d
    raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """a·b / (|a| |b|), 0 for a zero vector."""
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))


def _pairs(sents: list[Sentence]) -> list[tuple[int, int]]:
    idx = [k for k, s in enumerate(sents) if s.target is not None]
    return [(a, b) for n, a in enumerate(idx) for b in idx[n + 1 :]]


def pair_names(sents: list[Sentence]) -> list[str]:
    """'1 vs 2', ... for every pair of sentences that contain the word (1-based)."""
    return [f"{a + 1} vs {b + 1}" for a, b in _pairs(sents)]


def similarity_rows(sents: list[Sentence], encoded) -> list[tuple[str, list[float | None]]]:
    """Cosine of the followed word's vector between every pair of sentences that contain it
    (columns as ``pair_names``), one row per stage: GloVe, parameter-free attention (both
    scales), the model's embeddings and every layer. None where GloVe lacks the word.

    ``encoded``: one ``EncodedWords`` (``apps.explain.contextual``) per sentence.
    """
    pairs = _pairs(sents)

    def static(s: Sentence, scale: str | None):
        if s.target not in s.known:
            return None
        row = s.known.index(s.target)
        return s.x[row] if scale is None else parameter_free(s.x, scale)[0][row]

    rows = []
    for name, scale in (
        ("GloVe (static)", None),
        (f"GloVe + {SCALES['1']} (no parameters)", "1"),
        (f"GloVe + {SCALES['sqrt']} (no parameters)", "sqrt"),
    ):
        vals = []
        for a, b in pairs:
            va, vb = static(sents[a], scale), static(sents[b], scale)
            vals.append(None if va is None or vb is None else cosine(va, vb))
        rows.append((name, vals))
    n_layers = encoded[0].hidden.shape[0] - 1
    names = ["model: embeddings (word + position)"]
    names += [f"model: after layer {n}" for n in range(n_layers)]
    for layer, name in enumerate(names):
        vals = []
        for a, b in pairs:
            va = encoded[a].word_vector(sents[a].target, layer)
            vb = encoded[b].word_vector(sents[b].target, layer)
            vals.append(cosine(va, vb))
        rows.append((name, vals))
    return rows


def top_attended(enc, target: int, k: int) -> list[list[list[tuple[str, float]]]]:
    """[layer][head] -> the k words word ``target`` attends to most ([CLS]/[SEP] not ranked)."""
    n_layers, n_heads = enc.weights.shape[:2]
    return [
        [enc.attended(target, L, h, k, specials=False) for h in range(n_heads)]
        for L in range(n_layers)
    ]
