"""Part-of-speech tagging: a label for every word, by a small self-attention encoder.

Data: the OANC sample with Penn tags (``selfattention data fetch oanc-pos``, 20,000 sentences),
split 80/10/10 by position (:func:`selfattention.apps.text.corpus.split_indices`).
Baseline: each word's most frequent tag in training; words never seen take the most frequent
tag overall (NN). Accuracy is per token; "unseen" counts the test tokens whose exact form never
occurs in training.

    selfattention train pos                    # -> results/pos/{model.safetensors,config.json,...}
    selfattention evaluate pos
    selfattention predict pos "The bank raised its rates ."
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import torch

from selfattention.apps.text import common, corpus
from selfattention.apps.text.model import TextModel, TextModelConfig
from selfattention.apps.text.vocab import Vocab
from selfattention.apps.training import FitConfig, fit, set_seed, write_metrics

SAMPLE = "The old man the boats , and the young man sails them ."


def add_arguments(parser: argparse.ArgumentParser, mode: str = "train") -> None:
    """Options for ``mode`` ("train", "evaluate" or "predict"): only training takes model sizes."""
    g = parser.add_argument_group("pos")
    # One thread by default (set first, so that it holds in every mode): a 1M-parameter model on
    # batches of ~1,300 tokens leaves a second intra-op thread mostly waiting, and on a shared
    # machine it stalls the first.
    parser.set_defaults(threads=1)
    if mode == "predict":
        return
    g.add_argument("--data", type=Path, help="tagged corpus (default: fetch oanc-pos)")
    g.add_argument("--limit", type=int, help="use only the first N sentences")
    if mode != "train":
        return
    g.add_argument("--epochs", type=int, default=20)
    g.add_argument("--patience", type=int, default=3, help="epochs without dev gain (3)")
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--lr", type=float, default=2e-3)
    g.add_argument("--dim", type=int, default=128)
    g.add_argument("--layers", type=int, default=2)
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--dropout", type=float, default=0.2)
    g.add_argument("--positions", choices=("learned", "sinusoidal", "rotary"), default="rotary")
    g.add_argument("--no-glove", dest="glove", action="store_false", help="no GloVe vectors")
    g.add_argument("--glove-words", type=int, default=50000, help="extra GloVe words kept")
    g.add_argument("--glove-path", type=Path, help="GloVe folder or text file (default: packaged)")
    g.add_argument("--no-chars", dest="chars", action="store_false", help="no character CNN")
    g.add_argument("--time-limit", type=float, default=480.0, help="stop after S seconds (480)")


def _load(args: argparse.Namespace) -> dict[str, list]:
    from selfattention.apps import datasets

    path = args.data if args.data is not None else datasets.fetch("oanc-pos")
    sents = corpus.read_tagged(path)
    if args.limit:
        sents = sents[: args.limit]
    parts = corpus.split(sents)
    for name, part in parts.items():
        if not part:
            raise ValueError(f"{path}: {len(sents)} sentences leave the {name} split empty")
    return parts


def baseline(train: list, test: list) -> dict[str, float]:
    """Most frequent tag per word (exact form); unseen words get the most frequent tag."""
    per_word: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for sent in train:
        for w, t in sent:
            per_word[w][t] += 1
            overall[t] += 1
    default = overall.most_common(1)[0][0]
    best = {w: c.most_common(1)[0][0] for w, c in per_word.items()}
    hit = seen_hit = unseen_hit = unseen = 0
    total = 0
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


def _build(args: argparse.Namespace, train: list) -> tuple[TextModel, dict[str, Any], int]:
    counts = Counter(w.lower() for s in train for w, _ in s)
    trainable = [w for w, c in counts.items() if c >= 2]
    rest = [w for w, c in counts.items() if c < 2]
    glove = None
    extra: list[str] = []
    if args.glove:
        from selfattention.pretrained import load_glove

        glove = load_glove(args.glove_path)
        extra = glove.words[: args.glove_words] if glove.words else []
    words = Vocab.build(Counter({w: counts[w] for w in trainable}), extra=[*sorted(rest), *extra])
    chars = (
        Vocab.build(Counter(ch for s in train for w, _ in s for ch in w)) if args.chars else None
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
        dim=args.dim,
        heads=args.heads,
        layers=args.layers,
        ff_dim=2 * args.dim,
        dropout=args.dropout,
        word_dropout=0.05,
        positions=args.positions,
    )
    model = TextModel(cfg)
    found = 0
    if glove is not None:
        table, found = common.glove_table(words, glove)
        model.set_glove(table)
    config = {
        "task": "pos",
        "model": cfg.to_json(),
        "vocab": words.to_json(),
        "chars": chars.to_json() if chars is not None else None,
        "labels": tags.to_json(),
        "max_chars": 16,
    }
    return model, config, found


def _encode(encoder: common.Encoder, tags: Vocab, sents: list) -> list[common.Encoded]:
    out = []
    for s in sents:
        # Tags never seen in training (rare: "NN|CD") cannot be predicted; they count as errors.
        target = [tags.stoi.get(t, common.IGNORE - 1) for _, t in s]
        out.append(encoder([w for w, _ in s], target))
    return out


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


def _fix_targets(data: list[common.Encoded]) -> None:
    # A tag unseen in training is ignored by the loss on train/dev; on test it stays a sure miss.
    for e in data:
        e.target = [common.IGNORE if t == common.IGNORE - 1 else t for t in e.target]


def train(args: argparse.Namespace) -> dict[str, Any]:
    set_seed(args.seed)
    parts = _load(args)
    t0 = common.timer()
    model, config, found = _build(args, parts["train"])
    encoder = common.Encoder(
        Vocab.from_json(config["vocab"]),
        Vocab.from_json(config["chars"]) if config["chars"] else None,
    )
    tags = Vocab.from_json(config["labels"])
    data = {k: _encode(encoder, tags, v) for k, v in parts.items()}
    _fix_targets(data["train"])
    _fix_targets(data["dev"])
    dev_batches = common.batches(data["dev"], 128, task="tag")
    fit_config = FitConfig(
        args.checkpoint,
        epochs=args.epochs,
        lr=args.lr,
        patience=args.patience,
        warmup_steps=200,
        time_limit=args.time_limit,
        resume=args.resume,
        progress=args.progress,
    )
    history = fit(
        model,
        lambda epoch: common.batches(data["train"], args.batch_size, seed=args.seed * 1000 + epoch),
        dev_batches,
        fit_config,
        loss_fn=common.tag_loss,
        metric_fn=common.tag_metric,
        meta=config,
    ).to_dict()
    seconds = common.timer() - t0
    metrics = _test_metrics(model, config, parts)
    metrics.update(common.run_summary(model, history, seconds))
    metrics["glove_words_found"] = found
    write_metrics(Path(args.checkpoint) / "metrics.json", metrics)
    tokens = corpus.tokenize(SAMPLE)
    common.save_attention_picture(
        model, encoder(tokens), tokens, Path(args.checkpoint) / "attention.png", "pos: " + SAMPLE
    )
    return {k: v for k, v in metrics.items() if k != "history"}


def _test_metrics(model: TextModel, config: dict, parts: dict) -> dict[str, Any]:
    encoder = common.Encoder(
        Vocab.from_json(config["vocab"]),
        Vocab.from_json(config["chars"]) if config.get("chars") else None,
    )
    tags = Vocab.from_json(config["labels"])
    test = _encode(encoder, tags, parts["test"])
    train_words = {w for s in parts["train"] for w, _ in s}
    model.eval()
    ours = _score(model, test, parts["test"], train_words)
    base = baseline(parts["train"], parts["test"])
    return {
        "task": "pos",
        "split": {k: len(v) for k, v in parts.items()},
        "test_accuracy": ours["accuracy"],
        "test_unseen_accuracy": ours["unseen_accuracy"],
        "test_tokens": ours["tokens"],
        "test_unseen_tokens": ours["unseen_tokens"],
        "baseline_accuracy": base["accuracy"],
        "baseline_unseen_accuracy": base["unseen_accuracy"],
    }


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    model, config = common.load_model(args.checkpoint)
    if config.get("task") != "pos":
        raise ValueError(f"{args.checkpoint} holds a {config.get('task')!r} model, not pos")
    metrics = _test_metrics(model, config, _load(args))
    write_metrics(Path(args.checkpoint) / "test_metrics.json", metrics)
    return metrics


@torch.no_grad()
def predict(args: argparse.Namespace) -> int:
    model, config = common.load_model(args.checkpoint)
    if config.get("task") != "pos":
        raise ValueError(f"{args.checkpoint} holds a {config.get('task')!r} model, not pos")
    tags = Vocab.from_json(config["labels"])
    for line in common.read_inputs(args):
        tokens = corpus.tokenize(line)
        if not tokens:
            continue
        inputs, _ = common.batches([config["encoder"](tokens)], 1, task="tag")[0]
        pred = model(**inputs).argmax(-1)[0]
        print(" ".join(f"{w}/{tags.itos[int(p)]}" for w, p in zip(tokens, pred, strict=True)))
    return 0
