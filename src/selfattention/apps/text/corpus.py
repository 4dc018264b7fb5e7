"""Reading the two sentence corpora, and the fixed train/dev/test split.

* Tagged text (``tagged-en-oanc.txt``): one sentence a line, tokens ``word/TAG`` separated by
  spaces; the tag is what follows the *last* slash (``1/2/CD`` is the word ``1/2``).
* Polarity CSV (``polarity-en-pang&lee2.csv``): two columns, label (``1`` or ``-1``) and text;
  a sentence may run over a line break inside its quotes; a UTF-8 byte-order mark is allowed.

The split is by position, so it never depends on a random generator: sentence i goes to dev when
``i % 10 == 8``, to test when ``i % 10 == 9`` and to train otherwise (80/10/10, interleaved over
the whole file so that every document and both classes are spread evenly).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

__all__ = ["read_polarity", "read_tagged", "split", "split_indices", "tokenize"]

T = TypeVar("T")
_TOKEN = re.compile(r"\w+(?=n't\b)|n't\b|'\w+|\w+(?:[-./]\w+)*|\.\.\.|--|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Split raw text into Penn-style tokens: punctuation apart, ``don't`` -> ``do n't``,
    ``John's`` -> ``John 's``. Case is kept."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return _TOKEN.findall(text)


def _check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file {path} does not exist")
    return path


def read_tagged(path: str | Path) -> list[list[tuple[str, str]]]:
    """Sentences as lists of ``(word, tag)``; blank lines are skipped.

    Raises:
        ValueError: a token without ``/TAG`` (its line and text are named), or no sentence at all.
    """
    path = _check_file(path)
    sentences = []
    with open(path, encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, start=1):
            tokens = line.split()
            if not tokens:
                continue
            sent = []
            for tok in tokens:
                word, slash, tag = tok.rpartition("/")
                if not slash or not word or not tag:
                    raise ValueError(f"{path}:{line_no}: token {tok!r} is not of the form word/TAG")
                sent.append((word, tag))
            sentences.append(sent)
    if not sentences:
        raise ValueError(f"{path} holds no tagged sentence (expected lines of word/TAG tokens)")
    return sentences


def read_polarity(path: str | Path) -> tuple[list[str], list[int]]:
    """Texts and labels (1 = positive, 0 = negative) from a ``label,text`` CSV (labels 1/-1).

    Raises:
        ValueError: a row that is not ``label,text`` or has another label (named by its row), or
            no row at all.
    """
    path = _check_file(path)
    texts, labels = [], []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for row_no, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 2:
                raise ValueError(f"{path}: row {row_no} has {len(row)} fields, expected label,text")
            label, text = row[0].strip(), " ".join(row[1].split())
            if label not in ("1", "-1"):
                raise ValueError(f"{path}: row {row_no} has label {label!r}, expected 1 or -1")
            if not text:
                raise ValueError(f"{path}: row {row_no} has an empty text")
            texts.append(text)
            labels.append(1 if label == "1" else 0)
    if not texts:
        raise ValueError(f"{path} holds no labelled sentence (expected rows of label,text)")
    return texts, labels


def split_indices(n: int) -> dict[str, list[int]]:
    """Indices of the fixed split: dev ``i % 10 == 8``, test ``i % 10 == 9``, train the rest."""
    parts: dict[str, list[int]] = {"train": [], "dev": [], "test": []}
    for i in range(n):
        parts["dev" if i % 10 == 8 else "test" if i % 10 == 9 else "train"].append(i)
    return parts


def split(items: Sequence[T]) -> dict[str, list[T]]:
    """``items`` cut by :func:`split_indices` into train, dev and test lists."""
    return {k: [items[i] for i in idx] for k, idx in split_indices(len(items)).items()}
