"""Shared by the POS and polarity tasks: token encoding, batches, losses, checkpoints, pictures."""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from selfattention.apps.text.model import Ensemble, TextModel, TextModelConfig, case_class
from selfattention.apps.text.vocab import Vocab
from selfattention.apps.training import load_checkpoint, load_state

__all__ = [
    "Encoded",
    "Encoder",
    "batches",
    "check_config",
    "cls_loss",
    "cls_metric",
    "glove",
    "glove_table",
    "length_pooled",
    "load_model",
    "save_attention_picture",
    "set_glove",
    "tag_loss",
    "tag_metric",
]

IGNORE = -100  # target of padding positions (cross_entropy's ignore_index)
POSITIONS = ("learned", "sinusoidal", "rotary")


def check_config(
    config: Any,
    *,
    positive: Sequence[str] = (),
    non_negative: Sequence[str] = (),
    fraction: Sequence[str] = (),
) -> None:
    """The checks every task config shares; a ValueError names the field, the value and what
    was expected. Also: ``lr`` > 0, ``time_limit`` >= 0 or None, ``positions`` known, ``dim``
    divisible by ``heads``."""
    name = type(config).__name__

    def fail(field: str, expected: str) -> None:
        raise ValueError(f"{name}: {field} must be {expected}, got {getattr(config, field)!r}")

    def is_int(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    def is_number(x: Any) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)

    for f in positive:
        if not (is_int(getattr(config, f)) and getattr(config, f) >= 1):
            fail(f, "a positive int")
    for f in non_negative:
        if not (is_int(getattr(config, f)) and getattr(config, f) >= 0):
            fail(f, "an int >= 0")
    for f in fraction:
        if not (is_number(getattr(config, f)) and 0 <= getattr(config, f) < 1):
            fail(f, "a number in [0, 1)")
    if not (is_number(config.lr) and config.lr > 0):
        fail("lr", "a number > 0")
    if config.time_limit is not None and not (
        is_number(config.time_limit) and config.time_limit >= 0
    ):
        fail("time_limit", "a number of seconds >= 0 or None")
    if config.positions not in POSITIONS:
        fail("positions", " or ".join(POSITIONS))
    if config.dim % config.heads:
        raise ValueError(f"{name}: dim={config.dim} must be divisible by heads={config.heads}")
    if not is_int(config.seed):
        fail("seed", "an int")


def check_limit(limit: int | None) -> None:
    if limit is not None and not (isinstance(limit, int) and limit >= 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")


def split_nonempty(items: Sequence[Any], path: Path) -> dict[str, list]:
    """The fixed train/dev/test split of ``items``; a ValueError when one part is empty."""
    from selfattention.apps.text import corpus

    parts = corpus.split(items)
    for name, part in parts.items():
        if not part:
            raise ValueError(f"{path}: {len(items)} sentences leave the {name} split empty")
    return parts


@functools.lru_cache(maxsize=2)
def glove(path: Path | None) -> Any:
    """GloVe vectors (the packaged ones when ``path`` is None), read once per process."""
    from selfattention.pretrained import load_glove

    return load_glove(path)


@dataclass
class Encoded:
    """One sentence as ids: words (n,), chars (n, c), case (n,), and a target (tags (n,) or int)."""

    words: list[int]
    chars: list[list[int]]
    case: list[int]
    target: Any = None


class Encoder:
    """Turns token lists into :class:`Encoded` with a word vocabulary (lower-cased), a character
    vocabulary (case kept) and the case class of each token."""

    def __init__(self, words: Vocab, chars: Vocab | None, max_chars: int = 16) -> None:
        self.words, self.chars, self.max_chars = words, chars, max_chars

    def __call__(self, tokens: Sequence[str], target: Any = None) -> Encoded:
        if not tokens:
            raise ValueError("cannot encode an empty sentence")
        words = self.words.encode(t.lower() for t in tokens)
        chars: list[list[int]] = []
        if self.chars is not None:
            for t in tokens:
                # Long tokens keep their start and end, where prefixes and suffixes live.
                s = (
                    t
                    if len(t) <= self.max_chars
                    else t[: self.max_chars // 2] + t[-self.max_chars // 2 :]
                )
                chars.append(self.chars.encode(s))
        return Encoded(words, chars, [case_class(t) for t in tokens], target)


def length_pooled(
    order: list[int], length: Callable[[int], int], pool: int, rng: random.Random
) -> list[int]:
    """``order`` shuffled by ``rng``, then sorted by ``length`` inside each run of ``pool``
    items: batches cut from it hold items of similar length (little padding) yet differ from
    one shuffle to the next. Shuffles ``order`` in place."""
    rng.shuffle(order)
    return [
        i
        for start in range(0, len(order), pool)
        for i in sorted(order[start : start + pool], key=length)
    ]


def batches(
    data: Sequence[Encoded],
    batch_size: int,
    *,
    seed: int | None = None,
    task: str = "tag",
) -> list[tuple[dict[str, Tensor], Tensor]]:
    """Padded batches ``({"words", "chars", "case"}, targets)``.

    With ``seed`` the order is shuffled (``random.Random(seed)``), then sentences of similar
    length are grouped (sorted inside pools of 50 batches) so that little time goes on padding.
    Without it the order is kept. Tag targets are padded with -100 (ignored by the loss).
    """
    order = list(range(len(data)))
    if seed is not None:
        order = length_pooled(
            order, lambda k: len(data[k].words), batch_size * 50, random.Random(seed)
        )
    groups = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if seed is not None:
        random.Random(seed + 1).shuffle(groups)
    return [_collate([data[i] for i in g], task) for g in groups]


def _collate(items: list[Encoded], task: str) -> tuple[dict[str, Tensor], Tensor]:
    b, n = len(items), max(len(e.words) for e in items)
    words = torch.zeros(b, n, dtype=torch.long)
    case = torch.zeros(b, n, dtype=torch.long)
    has_chars = bool(items[0].chars)
    c = max((len(w) for e in items for w in e.chars), default=1) if has_chars else 1
    chars = torch.zeros(b, n, max(c, 1), dtype=torch.long)
    targets = torch.full((b, n), IGNORE, dtype=torch.long) if task == "tag" else None
    for r, e in enumerate(items):
        m = len(e.words)
        words[r, :m] = torch.tensor(e.words)
        case[r, :m] = torch.tensor(e.case)
        for k, w in enumerate(e.chars):
            chars[r, k, : len(w)] = torch.tensor(w)
        if task == "tag" and e.target is not None:
            targets[r, :m] = torch.tensor(e.target)
    if task != "tag":
        targets = torch.tensor([-1 if e.target is None else e.target for e in items])
    inputs = {"words": words, "case": case}
    if has_chars:
        inputs["chars"] = chars
    return inputs, targets


def tag_loss(logits: Tensor, targets: Tensor) -> Tensor:
    return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


def tag_metric(logits: Tensor, targets: Tensor) -> tuple[int, int]:
    real = targets != IGNORE
    return int(((logits.argmax(-1) == targets) & real).sum()), int(real.sum())


def cls_loss(logits: Tensor, targets: Tensor) -> Tensor:
    return nn.functional.cross_entropy(logits, targets)


def cls_metric(logits: Tensor, targets: Tensor) -> tuple[int, int]:
    return int((logits.argmax(-1) == targets).sum()), int(targets.numel())


def glove_table(vocab: Vocab, glove: Any) -> tuple[Tensor, int]:
    """(len(vocab), glove.dim) rows of GloVe for each word (zeros when GloVe lacks it), and how
    many words were found."""
    table = np.zeros((len(vocab), glove.dim), dtype=np.float32)
    found = 0
    for i, w in enumerate(vocab.itos):
        row = glove.index.get(w)
        if row is not None:
            table[i] = glove.vectors[row]
            found += 1
    return torch.from_numpy(table), found


def set_glove(model: TextModel, vocab: Vocab, glove: Any) -> tuple[Tensor | None, int]:
    """Give ``model`` its frozen GloVe table for ``vocab`` (nothing when ``glove`` is None);
    returns ``(table or None, words found)``, as :func:`glove_table`."""
    if glove is None:
        return None, 0
    table, found = glove_table(vocab, glove)
    model.set_glove(table)
    return table, found


def load_model(checkpoint: str | Path) -> tuple[TextModel | Ensemble, dict[str, Any]]:
    """Rebuild a :class:`TextModel` (an :class:`Ensemble` of them when the config says
    ``"ensemble": N``) and its vocabularies from a checkpoint directory."""
    state, config = load_checkpoint(checkpoint)
    for key in ("model", "vocab"):
        if key not in config:
            raise ValueError(f"{Path(checkpoint) / 'config.json'} has no {key!r}: not a text model")
    model_config = TextModelConfig.from_json(config["model"])
    size = config.get("ensemble")
    model = TextModel(model_config) if size is None else Ensemble(model_config, size)
    load_state(model, state, f"the weights in {checkpoint} do not fit its config.json")
    model.eval()
    config["encoder"] = Encoder(
        Vocab.from_json(config["vocab"]),
        Vocab.from_json(config["chars"]) if config.get("chars") else None,
        config.get("max_chars", 16),
    )
    return model, config


@torch.no_grad()
def save_attention_picture(
    model: TextModel, enc: Encoded, tokens: list[str], path: Path, title: str
) -> Path:
    """PNG of which words each word attends to: every layer and head for one sentence."""
    from selfattention import viz

    inputs, _ = _collate([enc], model.config.task)
    _, weights = model(**inputs, return_weights=True)
    fig = viz.grid([w[0] for w in weights], tokens, title=title)
    return viz.save(fig, path)


def timer() -> float:
    return time.perf_counter()


def run_summary(model: nn.Module, history: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The training facts every task records beside its test metrics."""
    return {
        "train_seconds": seconds,
        "threads": torch.get_num_threads(),
        "epochs_run": history["epochs_run"],
        "best_epoch": history["best_epoch"],
        "stopped": history["stopped"],
        "dev_accuracy": history["best_dev_accuracy"],
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "history": history["history"],
    }
