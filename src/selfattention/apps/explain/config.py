"""What one ``explain`` run is asked to do: a frozen config, checked when it is built.

The checks that need no model (empty sentences, the followed word, ``top``, ``scale``) run here,
so bad input fails in milliseconds, before GloVe or the encoder is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selfattention.apps.explain.compare import SCALES, split_sentences
from selfattention.viz._inputs import parse_selection

__all__ = ["DEFAULT_MODEL_NAME", "DEFAULT_SENTENCES", "ExplainConfig"]

DEFAULT_SENTENCES = (
    "I sat on the bank of the river and watched the water.",
    "I deposited the money at the bank and paid the loan.",
)
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class ExplainConfig:
    """One run of ``explain``: static (GloVe) vs contextual (a BERT-family encoder) vectors.

    Attributes:
        sentences: the sentences to compare (at least one; default a river bank and a money bank).
        word: the word to follow; None = the longest word every sentence shares.
        model: a BERT, RoBERTa, DistilBERT, ALBERT or ELECTRA folder (config.json with model_type,
            model.safetensors, tokenizer.json); None = the packaged all-MiniLM-L6-v2.
        glove: a GloVe .txt file; None = the packaged GloVe 6B 50-d.
        scale: scores of the printed GloVe ladder: "1" (X Xᵀ, as the write-ups) or "sqrt"
            (X Xᵀ/√d, as transformers).
        top: attended words kept per layer and head (≥ 1).
        out: the folder ``write_outputs`` fills (report.html, PNGs, attention.json).
        layers, heads: which layers / heads the grid PNGs and the report show (None = all; an
            int, a list or a string "0,5" / "0-3"); means, rollout and flow still use all.

    Raises:
        ValueError: naming the field, when a sentence is empty, ``word`` is not one word or is in
            none of the sentences, the sentences share no word and ``word`` is None, ``top`` < 1
            or ``scale`` is unknown. TypeError for a wrong type (e.g. one string as sentences).
    """

    sentences: tuple[str, ...] = DEFAULT_SENTENCES
    word: str | None = None
    model: Path | None = None
    glove: Path | None = None
    scale: str = "1"
    top: int = 2
    out: Path = Path("results/explain")
    layers: int | str | tuple[int, ...] | None = None
    heads: int | str | tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.sentences, str):
            raise TypeError(
                f"sentences must be a list of strings, got one string {self.sentences!r:.60}"
            )
        sentences = tuple(self.sentences)
        if not sentences:
            raise ValueError("sentences is empty; give at least one sentence")
        for k, s in enumerate(sentences, 1):
            if not isinstance(s, str):
                raise TypeError(f"sentence {k} must be a string, got {type(s).__name__}")
        if self.word is not None and not isinstance(self.word, str):
            raise TypeError(f"word must be a string or None, got {type(self.word).__name__}")
        if isinstance(self.top, bool) or not isinstance(self.top, int) or self.top < 1:
            raise ValueError(f"top must be an integer of at least 1, got {self.top!r}")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {sorted(SCALES)}, got {self.scale!r}")
        # frozen: normalise the fields through object.__setattr__
        object.__setattr__(self, "sentences", sentences)
        for name in ("model", "glove"):
            value = getattr(self, name)
            object.__setattr__(self, name, None if value is None else Path(value))
        object.__setattr__(self, "out", Path(self.out))
        for name in ("layers", "heads"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
            # the range is known once the model is loaded; the syntax is checked now
            parse_selection(getattr(self, name), 10_000, name, strict=False)
        self.resolve()  # the word checks, before anything is loaded

    def resolve(self) -> tuple[list[list[str]], str]:
        """Each sentence's GloVe-style words, and the (lowercase) word to follow."""
        return split_sentences(list(self.sentences), self.word)

    @property
    def model_name(self) -> str:
        """What the report calls the encoder: its folder, or the packaged model's name."""
        return str(self.model) if self.model is not None else DEFAULT_MODEL_NAME
