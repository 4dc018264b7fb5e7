"""Part-of-speech tagging: a label for every word, by a small self-attention encoder.

Data: the OANC sample with Penn tags (``selfattention data fetch oanc-pos``, 20,000 sentences),
split 80/10/10 by position (:func:`selfattention.apps.text.corpus.split_indices`).
Baseline: each word's most frequent tag in training; words never seen take the most frequent
tag overall (NN). Accuracy is per token; "unseen" counts the test tokens whose exact form never
occurs in training.

    data = load_data()                          # or load_data("tagged.txt", limit=200)
    metrics = train(PosConfig(epochs=5), data, "results/pos")   # checkpoint + metrics.json
    evaluate("results/pos", data)               # test metrics of the saved model
    predict("results/pos", ["The bank raised its rates ."])  # [[("The", "DT"), ...]]
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from selfattention.apps.text import common, corpus
from selfattention.apps.text.model import TextModel, TextModelConfig
from selfattention.apps.text.vocab import Vocab
from selfattention.apps.training import FitConfig, fit, is_main_process, set_seed, write_metrics

__all__ = ["PosConfig", "baseline", "evaluate", "load_data", "predict", "train"]

SAMPLE = "The old man the boats , and the young man sails them ."
Sentence = list[tuple[str, str]]  # (word, tag) pairs


@dataclass(frozen=True)
class PosConfig:
    """The tagger's model and training options (the defaults are the documented run)."""

    dim: int = 128
    layers: int = 2
    heads: int = 4
    dropout: float = 0.2
    positions: str = "rotary"  # "learned" | "sinusoidal" | "rotary"
    glove: bool = True  # frozen GloVe vectors beside the trained ones
    glove_words: int = 50000  # GloVe words kept beyond the training vocabulary
    glove_path: Path | None = None  # GloVe folder or text file (None: the packaged one)
    chars: bool = True  # a character CNN
    epochs: int = 20
    patience: int = 3  # epochs without a better dev accuracy before stopping
    batch_size: int = 64
    lr: float = 2e-3
    time_limit: float | None = 480.0  # seconds
    seed: int = 0

    def __post_init__(self) -> None:
        common.check_config(
            self,
            positive=("dim", "layers", "heads", "epochs", "patience", "batch_size", "glove_words"),
            fraction=("dropout",),
        )


def load_data(
    path: str | Path | None = None, limit: int | None = None
) -> dict[str, list[Sentence]]:
    """Train/dev/test sentences of a tagged corpus (default: the installed ``oanc-pos``; raises
    ``DataUnavailable`` naming ``selfattention data fetch oanc-pos`` when it is missing)."""
    from selfattention.apps import datasets

    common.check_limit(limit)
    path = Path(path) if path is not None else datasets.require("oanc-pos")
    sents = corpus.read_tagged(path)
    return common.split_nonempty(sents[:limit] if limit else sents, path)


def baseline(train: list[Sentence], test: list[Sentence]) -> dict[str, Any]:
    """Most frequent tag per word (exact form); unseen words get the most frequent tag."""
    per_word: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for sent in train:
        for w, t in sent:
            per_word[w][t] += 1
            overall[t] += 1
    default = overall.most_common(1)[0][0]
    best = {w: c.most_common(1)[0][0] for w, c in per_word.items()}
    hit = seen_hit = unseen_hit = unseen = total = 0
    for sent in test:
        for w, t in sent:
            ok = best.get(w, default) == t
            total += 1
            hit += ok
            if w in best:
                seen_hit += ok
            else:
                unseen += 1
                unseen_hit += ok
    return {
        "accuracy": hit / total,
        "unseen_accuracy": unseen_hit / unseen if unseen else None,
        "seen_accuracy": seen_hit / (total - unseen) if total > unseen else None,
        "default_tag": default,
    }


def train(
    config: PosConfig,
    data: dict[str, list[Sentence]],
    checkpoint: str | Path,
    *,
    resume: bool = False,
    progress: bool = False,
    on_epoch: Callable[[dict, bool], None] | None = None,
) -> dict[str, Any]:
    """Train the tagger on ``data["train"]`` (early stopping on dev), save it to ``checkpoint``
    with ``metrics.json`` and ``attention.png``; returns the test metrics and run summary."""
    set_seed(config.seed)
    t0 = common.timer()
    model, meta, found = _build(config, data["train"])
    encoder, tags = _encoder(meta), Vocab.from_json(meta["labels"])
    encoded = {k: _encode(encoder, tags, data[k], ignore_unseen=True) for k in ("train", "dev")}
    fit_config = FitConfig(
        checkpoint,
        epochs=config.epochs,
        lr=config.lr,
        patience=config.patience,
        warmup_steps=200,
        time_limit=config.time_limit,
        resume=resume,
        progress=progress,
    )
    history = fit(
        model,
        lambda epoch: common.batches(
            encoded["train"], config.batch_size, seed=config.seed * 1000 + epoch
        ),
        common.batches(encoded["dev"], 128, task="tag"),
        fit_config,
        loss_fn=common.tag_loss,
        metric_fn=common.tag_metric,
        meta=meta,
        on_epoch=on_epoch,
    )
    seconds = common.timer() - t0
    metrics = _test_metrics(model, meta, data)
    metrics.update(common.run_summary(model, history.to_dict(), seconds))
    metrics["glove_words_found"] = found
    if is_main_process():  # under torchrun every rank gets here; rank 0 writes
        write_metrics(Path(checkpoint) / "metrics.json", metrics)
        tokens = corpus.tokenize(SAMPLE)
        common.save_attention_picture(
            model, encoder(tokens), tokens, Path(checkpoint) / "attention.png", "pos: " + SAMPLE
        )
    return {k: v for k, v in metrics.items() if k != "history"}


def evaluate(checkpoint: str | Path, data: dict[str, list[Sentence]]) -> dict[str, Any]:
    """Test metrics of the tagger saved in ``checkpoint`` (and the baseline's, for comparison)."""
    model, meta = _load(checkpoint)
    return _test_metrics(model, meta, data)


@torch.no_grad()
def predict(checkpoint: str | Path, texts: Sequence[str]) -> list[Sentence]:
    """``(token, tag)`` pairs for each text (tokenised Penn-style; an empty text gives [])."""
    model, meta = _load(checkpoint)
    tags = Vocab.from_json(meta["labels"])
    out: list[Sentence] = []
    for text in texts:
        tokens = corpus.tokenize(text)
        if not tokens:
            out.append([])
            continue
        inputs, _ = common.batches([meta["encoder"](tokens)], 1, task="tag")[0]
        pred = model(**inputs).argmax(-1)[0]
        out.append([(w, tags.itos[int(p)]) for w, p in zip(tokens, pred, strict=True)])
    return out


# ---------------------------------------------------------------------------------------------


def _build(config: PosConfig, train: list[Sentence]) -> tuple[TextModel, dict[str, Any], int]:
    """The model and the checkpoint config (vocabularies from ``train``); GloVe words found."""
    counts = Counter(w.lower() for s in train for w, _ in s)
    trainable = [w for w, c in counts.items() if c >= 2]
    rest = [w for w, c in counts.items() if c < 2]
    glove = common.glove(config.glove_path) if config.glove else None
    extra = glove.words[: config.glove_words] if glove is not None and glove.words else []
    words = Vocab.build(Counter({w: counts[w] for w in trainable}), extra=[*sorted(rest), *extra])
    chars = (
        Vocab.build(Counter(ch for s in train for w, _ in s for ch in w)) if config.chars else None
    )
    tags = Vocab.build(Counter(t for s in train for _, t in s), specials=(), unk=None)
    cfg = TextModelConfig(
        task="tag",
        num_labels=len(tags),
        vocab_size=len(words),
        trainable_words=2 + len(trainable),
        word_dim=64,
        glove_dim=glove.dim if glove is not None else 0,
        num_chars=len(chars) if chars is not None else 0,
        case_dim=8,
        dim=config.dim,
        heads=config.heads,
        layers=config.layers,
        ff_dim=2 * config.dim,
        dropout=config.dropout,
        word_dropout=0.05,
        positions=config.positions,
    )
    model = TextModel(cfg)
    _, found = common.set_glove(model, words, glove)
    meta = {
        "task": "pos",
        "model": cfg.to_json(),
        "vocab": words.to_json(),
        "chars": chars.to_json() if chars is not None else None,
        "labels": tags.to_json(),
        "max_chars": 16,
    }
    return model, meta, found


def _encoder(meta: dict) -> common.Encoder:
    chars = Vocab.from_json(meta["chars"]) if meta.get("chars") else None
    return common.Encoder(Vocab.from_json(meta["vocab"]), chars, meta.get("max_chars", 16))


def _encode(
    encoder: common.Encoder, tags: Vocab, sents: list[Sentence], *, ignore_unseen: bool
) -> list[common.Encoded]:
    # A tag never seen in training (rare: "NN|CD") cannot be predicted: on train/dev the loss
    # ignores it; on test it stays, as a sure miss.
    unseen = common.IGNORE if ignore_unseen else common.IGNORE - 1
    return [encoder([w for w, _ in s], [tags.stoi.get(t, unseen) for _, t in s]) for s in sents]


def _load(checkpoint: str | Path) -> tuple[TextModel, dict[str, Any]]:
    model, meta = common.load_model(checkpoint)
    if meta.get("task") != "pos":
        raise ValueError(f"{checkpoint} holds a {meta.get('task')!r} model, not pos")
    return model, meta


@torch.no_grad()
def _score(model: TextModel, data: list, sents: list, train_words: set) -> dict:
    """Token accuracy, overall and on words whose exact form never occurs in training."""
    hit = total = unseen = unseen_hit = 0
    idx = 0  # batches() without a seed keeps the order, so sentence idx is known
    for inputs, targets in common.batches(data, 128, task="tag"):
        pred = model(**inputs).argmax(-1)
        for r in range(pred.shape[0]):
            for k, (w, _) in enumerate(sents[idx]):
                ok = bool(pred[r, k] == targets[r, k])
                total += 1
                hit += ok
                if w not in train_words:
                    unseen += 1
                    unseen_hit += ok
            idx += 1
    return {
        "accuracy": hit / total,
        "unseen_accuracy": unseen_hit / unseen if unseen else None,
        "tokens": total,
        "unseen_tokens": unseen,
    }


def _test_metrics(model: TextModel, meta: dict, data: dict) -> dict[str, Any]:
    test = _encode(
        _encoder(meta), Vocab.from_json(meta["labels"]), data["test"], ignore_unseen=False
    )
    train_words = {w for s in data["train"] for w, _ in s}
    model.eval()
    ours = _score(model, test, data["test"], train_words)
    base = baseline(data["train"], data["test"])
    return {
        "task": "pos",
        "split": {k: len(v) for k, v in data.items()},
        "test_accuracy": ours["accuracy"],
        "test_unseen_accuracy": ours["unseen_accuracy"],
        "test_tokens": ours["tokens"],
        "test_unseen_tokens": ours["unseen_tokens"],
        "baseline_accuracy": base["accuracy"],
        "baseline_unseen_accuracy": base["unseen_accuracy"],
    }
