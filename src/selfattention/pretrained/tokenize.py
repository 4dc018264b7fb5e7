"""WordPiece tokenisation with Hugging Face ``tokenizers`` (the fast Rust tokenizer), batched and
padded to the longest sentence.

``tokenizer.json`` files often carry a fixed padding/truncation (all-MiniLM-L6-v2's pads every
sentence to 128); ``load_tokenizer`` turns both off so that the batch is padded to its longest
sentence and nothing is cut unless ``truncation=True`` is asked for.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from selfattention.pretrained.checkpoint import TOKENIZER_FILE, _fail

__all__ = ["encode", "load_tokenizer"]


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
    if truncation:
        tokenizer.enable_truncation(max_length)
    try:
        encs = tokenizer.encode_batch(
            [list(s) for s in sentences] if split else list(sentences), is_pretokenized=split
        )
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
            out["word_ids"][r, :m] = torch.tensor([-1 if w is None else w for w in e.word_ids])
    return out
