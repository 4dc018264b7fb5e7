"""Vocabularies: strings to ids and back, saved inside a checkpoint's ``config.json``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["PAD", "UNK", "Vocab"]

PAD, UNK = "<pad>", "<unk>"


@dataclass
class Vocab:
    """An ordered list of strings; with ``unk`` set, unknown strings map to its id.

    ``Vocab.build(counts, min_count=2)`` keeps strings seen at least ``min_count`` times, most
    frequent first (ties alphabetically, so the order is reproducible), after the specials.
    """

    itos: list[str]
    unk: str | None = UNK
    stoi: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("Vocab: itos holds duplicates")
        if self.unk is not None and self.unk not in self.stoi:
            raise ValueError(f"Vocab: the unknown token {self.unk!r} is not in itos")

    @classmethod
    def build(
        cls,
        items: Iterable[str] | Counter,
        *,
        min_count: int = 1,
        specials: Sequence[str] = (PAD, UNK),
        unk: str | None = UNK,
        extra: Iterable[str] = (),
    ) -> Vocab:
        counts = items if isinstance(items, Counter) else Counter(items)
        keep = sorted(
            (s for s, c in counts.items() if c >= min_count), key=lambda s: (-counts[s], s)
        )
        itos = list(specials)
        seen = set(itos)
        for s in [*keep, *extra]:
            if s not in seen:
                itos.append(s)
                seen.add(s)
        return cls(itos, unk=unk)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, s: object) -> bool:
        return s in self.stoi

    def id(self, s: str) -> int:
        if s in self.stoi:
            return self.stoi[s]
        if self.unk is None:
            raise KeyError(f"{s!r} is not in the vocabulary and it has no unknown token")
        return self.stoi[self.unk]

    def encode(self, items: Iterable[str]) -> list[int]:
        return [self.id(s) for s in items]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def to_json(self) -> dict:
        return {"itos": self.itos, "unk": self.unk}

    @classmethod
    def from_json(cls, data: dict) -> Vocab:
        if not isinstance(data, dict) or not isinstance(data.get("itos"), list):
            raise ValueError(
                f"Vocab.from_json: expected {{'itos': [...], 'unk': ...}}, got {data!r:.60}"
            )
        return cls(list(data["itos"]), unk=data.get("unk"))
