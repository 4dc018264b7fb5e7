"""Tokenisation with Hugging Face ``tokenizers`` (the fast Rust tokenizer: WordPiece, byte-level
BPE, SentencePiece), batched and padded to the longest sentence.

``tokenizer.json`` files often carry a fixed padding/truncation (all-MiniLM-L6-v2's pads every
sentence to 128); ``load_tokenizer`` turns both off so that the batch is padded to its longest
sentence and nothing is cut unless ``truncation=True`` is asked for.

Pre-split words are joined with spaces and tokenised as the text they make, so every family
sees what it saw in training (byte-level BPE marks a word that follows a space with "Ġ"; fed
word by word it would see none). Each piece is then given to a word by its character offsets,
never by its spelling ("##" is WordPiece's mark only).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from selfattention.pretrained.checkpoint import TOKENIZER_FILE, _fail

__all__ = ["encode", "load_tokenizer", "piece_words"]


def load_tokenizer(folder: Path):
    """``tokenizers.Tokenizer`` from ``folder/tokenizer.json``, padding and truncation off."""
    from tokenizers import Tokenizer

    path = folder / TOKENIZER_FILE
    if not path.is_file():
        raise _fail(path, "file not found")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
        raise _fail(path, f"not a readable tokenizer ({e})") from e
    tok.no_padding()
    tok.no_truncation()
    return tok


def _check_sentences(sentences) -> bool:
    """Validate; True if the input is pre-split words (list of lists of str)."""
    if isinstance(sentences, str) or not isinstance(sentences, list | tuple):
        raise TypeError(
            "sentences must be a list of strings or a list of word lists, got "
            f"{type(sentences).__name__}" + (" (wrap one sentence in a list)" if sentences else "")
        )
    if not sentences:
        raise ValueError("sentences must not be empty")
    split = isinstance(sentences[0], list | tuple)
    for n, s in enumerate(sentences):
        if split:
            if not isinstance(s, list | tuple) or not all(isinstance(w, str) for w in s):
                raise TypeError(
                    f"sentences[{n}] must be a list of str like sentences[0], got {s!r}"
                )
            empty = not any(w.strip() for w in s)
        else:
            if not isinstance(s, str):
                raise TypeError(f"sentences[{n}] must be a str like sentences[0], got {s!r}")
            empty = not s.strip()
        if empty:
            raise ValueError(f"sentences[{n}] is empty; every sentence needs at least one word")
    return split


def encode(
    tokenizer,
    sentences: list[str] | list[list[str]],
    *,
    max_length: int,
    truncation: bool = False,
    pad_id: int = 0,
) -> dict[str, Tensor]:
    """Tokenise and pad a batch.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` (padding/truncation off, see ``load_tokenizer``).
        sentences: strings, or pre-split words (lists of str).
        max_length: most tokens a sentence may have, special tokens included.
        truncation: cut longer sentences to ``max_length`` instead of raising ValueError.
        pad_id: the id that fills positions past a sentence's end.

    Returns:
        input_ids, attention_mask (1 = real token), token_type_ids: (b, n) int64, n = the longest
        sentence; for pre-split input also word_ids (b, n): the word each token came from,
        -1 for special and padding tokens.
    """
    split = _check_sentences(sentences)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an int >= 2, got {max_length!r}")
    texts = [" ".join(s) for s in sentences] if split else list(sentences)
    if truncation:
        tokenizer.enable_truncation(max_length)
    try:
        encs = tokenizer.encode_batch(texts)
    finally:
        tokenizer.no_truncation()
    for n, e in enumerate(encs):
        if len(e.ids) > max_length:
            raise ValueError(
                f"sentences[{n}] has {len(e.ids)} tokens (special tokens included), more than "
                f"max_length={max_length}; shorten it or pass truncation=True to keep the first "
                f"{max_length}"
            )
    b, n = len(encs), max(len(e.ids) for e in encs)
    out = {
        "input_ids": torch.full((b, n), pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((b, n), dtype=torch.long),
        "token_type_ids": torch.zeros((b, n), dtype=torch.long),
    }
    if split:
        out["word_ids"] = torch.full((b, n), -1, dtype=torch.long)
    for r, e in enumerate(encs):
        m = len(e.ids)
        out["input_ids"][r, :m] = torch.tensor(e.ids)
        out["attention_mask"][r, :m] = torch.tensor(e.attention_mask)
        out["token_type_ids"][r, :m] = torch.tensor(e.type_ids)
        if split:
            out["word_ids"][r, :m] = torch.tensor(piece_words(e, sentences[r]))
    return out


def piece_words(encoding, words: list[str] | tuple[str, ...]) -> list[int]:
    """The word (index into ``words``) each piece of ``encoding`` came from, -1 for special
    tokens; ``encoding`` is the tokenizer's ``Encoding`` of ``" ".join(words)``.

    A piece belongs to the word that holds the first character of its offsets. A piece whose
    offsets hold no word character (a lone "Ġ", empty with trim_offsets, or a space) takes the
    word of the tokenizer's pre-token (``Encoding.word_ids``) it is part of.
    """
    owner: list[int] = []  # character -> word, -1 for the joining spaces
    for w, word in enumerate(words):
        owner += [w] * len(word) + [-1]

    def first_word(start: int, end: int) -> int:
        return next((owner[c] for c in range(start, min(end, len(owner))) if owner[c] >= 0), -1)

    spans: dict[int, tuple[int, int]] = {}  # pre-token -> its characters
    for pre, (s, e) in zip(encoding.word_ids, encoding.offsets, strict=True):
        if pre is not None:
            lo, hi = spans.get(pre, (s, e))
            spans[pre] = (min(lo, s), max(hi, e))
    result = []
    for special, pre, (s, e) in zip(
        encoding.special_tokens_mask, encoding.word_ids, encoding.offsets, strict=True
    ):
        w = -1 if special or pre is None else first_word(s, e)
        if w < 0 and not special and pre is not None:
            w = first_word(*spans[pre])
        result.append(w)
    return result
