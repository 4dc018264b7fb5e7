"""Sentence polarity: data, baseline, and the train / evaluate / predict functions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from selfattention.apps.text import common, corpus
from selfattention.apps.text.polarity import pretrained, scratch
from selfattention.apps.text.polarity.config import LABELS, PolarityConfig
from selfattention.apps.text.vocab import Vocab
from selfattention.apps.training import is_main_process, load_checkpoint, set_seed, write_metrics

__all__ = ["Prediction", "baseline", "evaluate", "load_data", "predict", "train"]

SAMPLE = "not a bad film , but the ending is far too long and rather dull ."
Item = tuple[list[str], int]  # (tokens, label: 1 positive, 0 negative)


@dataclass(frozen=True)
class Prediction:
    label: str  # "negative" | "positive"
    probability: float  # of that label


def load_data(path: str | Path | None = None, limit: int | None = None) -> dict[str, list[Item]]:
    """Train/dev/test items of a ``label,text`` CSV (default: the installed
    ``pang-lee-polarity``; raises ``DataUnavailable`` naming the fetch command when missing).
    ``limit`` keeps N sentences spread over the file (it is sorted by label)."""
    from selfattention.apps import datasets

    common.check_limit(limit)
    path = Path(path) if path is not None else datasets.require("pang-lee-polarity")
    texts, labels = corpus.read_polarity(path)
    items = [(t.split(), y) for t, y in zip(texts, labels, strict=True)]
    if limit:
        items = items[:: max(1, len(items) // limit)][:limit]
    return common.split_nonempty(items, path)


def baseline(data: dict[str, list[Item]], glove: Any) -> dict[str, float]:
    """Averaged GloVe vectors + logistic regression; C chosen on dev from 0.01 ... 100."""
    from sklearn.linear_model import LogisticRegression

    def features(part: list[Item]) -> tuple[np.ndarray, np.ndarray]:
        x = np.zeros((len(part), glove.dim), dtype=np.float64)
        for r, (tokens, _) in enumerate(part):
            rows = [glove.index[t] for t in tokens if t in glove.index]
            if rows:
                x[r] = glove.vectors[rows].mean(0)
        return x, np.array([y for _, y in part])

    (xtr, ytr), (xdv, ydv), (xte, yte) = (features(data[k]) for k in ("train", "dev", "test"))
    best = None
    for c in (0.01, 0.1, 1.0, 10.0, 100.0):
        clf = LogisticRegression(C=c, max_iter=2000).fit(xtr, ytr)
        acc = clf.score(xdv, ydv)
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    dev_acc, c, clf = best
    return {"accuracy": float(clf.score(xte, yte)), "dev_accuracy": float(dev_acc), "C": c}


def train(
    config: PolarityConfig,
    data: dict[str, list[Item]],
    checkpoint: str | Path,
    *,
    resume: bool = False,
    progress: bool = False,
    on_epoch: Callable[[dict, bool], None] | None = None,
) -> dict[str, Any]:
    """Train the model ``config`` asks for, save it to ``checkpoint`` with ``metrics.json`` and
    ``attention.png``; returns the test metrics and run summary."""
    checkpoint = Path(checkpoint)
    set_seed(config.seed)
    t0 = common.timer()
    runner = pretrained.train if config.pretrained else scratch.train
    model, meta, history, test_batches = runner(
        config, data, checkpoint, resume=resume, progress=progress, on_epoch=on_epoch
    )
    seconds = common.timer() - t0
    metrics = _metrics(model, test_batches, data, meta, config.glove_path)
    metrics.update(common.run_summary(model, history, seconds))
    if "members" in history:
        metrics["ensemble"] = len(history["members"])
        metrics["members"] = history["members"]
    if is_main_process():  # under torchrun every rank gets here; rank 0 writes
        write_metrics(checkpoint / "metrics.json", metrics)
        _picture(model, meta, checkpoint / "attention.png")
    return {k: v for k, v in metrics.items() if k != "history"}


def evaluate(
    checkpoint: str | Path, data: dict[str, list[Item]], glove_path: Path | None = None
) -> dict[str, Any]:
    """Test metrics of the model saved in ``checkpoint`` (and the GloVe baseline's)."""
    model, meta, to_batches = _load(checkpoint)
    return _metrics(model, to_batches(data["test"]), data, meta, glove_path)


@torch.no_grad()
def predict(checkpoint: str | Path, texts: Sequence[str]) -> list[Prediction]:
    """The more probable label of each text and its probability."""
    model, _, to_batches = _load(checkpoint)
    part = [(corpus.tokenize(text.lower()) or ["."], 0) for text in texts]
    probs = torch.cat([torch.softmax(model(**inp), -1) for inp, _ in to_batches(part)])
    return [Prediction(LABELS[int(p.argmax())], float(p.max())) for p in probs]


# ---------------------------------------------------------------------------------------------


def _metrics(
    model: nn.Module, test_batches: list, data: dict, meta: dict, glove_path: Path | None
) -> dict[str, Any]:
    return {
        "task": "polarity",
        "model": "MiniLM fine-tuned" if meta.get("pretrained") else "encoder trained here",
        "split": {k: len(v) for k, v in data.items()},
        "test_positive": sum(y for _, y in data["test"]),
        "test_accuracy": scratch.accuracy(model, test_batches),
        "baseline": "averaged GloVe + logistic regression",
        "baseline_accuracy": baseline(data, common.glove(glove_path))["accuracy"],
    }


def _load(checkpoint: str | Path) -> tuple[nn.Module, dict, Callable[[list[Item]], list]]:
    """The model, its config and a function items -> batches."""
    state, meta = load_checkpoint(checkpoint)
    if meta.get("task") != "polarity":
        raise ValueError(f"{checkpoint} holds a {meta.get('task')!r} model, not polarity")
    if meta.get("pretrained"):
        model, to_batches = pretrained.load(checkpoint, state)
        return model, meta, to_batches
    model, meta = common.load_model(checkpoint)
    encoder = meta["encoder"]
    return (
        model,
        meta,
        lambda part: common.batches(scratch.encode(encoder, part), 128, task="classify"),
    )


@torch.no_grad()
def _picture(model: nn.Module, meta: dict, path: Path) -> Path:
    from selfattention import viz

    model.eval()
    tokens = SAMPLE.split()
    if meta.get("pretrained"):
        bert = model.bert
        enc = bert.encode([SAMPLE])
        _, weights = model(enc["input_ids"], enc["attention_mask"], return_weights=True)
        labels = bert.tokens(enc["input_ids"])[0]
        fig = viz.grid(
            [w[0] for w in weights],
            labels,
            layers="-1",
            heads="0-5",
            title="polarity (MiniLM, last layer): " + SAMPLE,
        )
        return viz.save(fig, path)
    encoder = common.Encoder(Vocab.from_json(meta["vocab"]), None)
    return common.save_attention_picture(
        model, encoder(tokens), tokens, path, "polarity: " + SAMPLE
    )
