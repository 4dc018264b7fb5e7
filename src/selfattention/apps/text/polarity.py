"""Sentence polarity: one label per sentence (positive or negative), by self-attention.

Data: Pang & Lee's sentence polarity sample (``selfattention data fetch pang-lee-polarity``:
4,000 lower-cased movie-review sentences, 2,000 positive, 2,000 negative), split 80/10/10 by
position (:func:`selfattention.apps.text.corpus.split_indices`; each part is balanced).

Two models:
* default: small encoders trained here (frozen GloVe 50-d plus trained word vectors, one
  self-attention layer, attention pooling); ``--ensemble N`` trains N of them with seeds SEED,
  SEED+1, ... and averages their probabilities (one checkpoint; each member's own run is kept
  under ``CHECKPOINT/members/<k>``, which ``--resume`` continues);
* ``--pretrained``: the packaged all-MiniLM-L6-v2 encoder (``selfattention.pretrained.load_bert``),
  fine-tuned with a mean-pooling linear head.
Baseline: the average of the sentence's GloVe vectors fed to logistic regression (C picked on dev).

    selfattention train polarity [--pretrained]
    selfattention evaluate polarity
    selfattention predict polarity "a gorgeous , witty film" "tedious and overlong"
"""

from __future__ import annotations

import argparse
import functools
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from selfattention.apps.text import common, corpus
from selfattention.apps.text.model import POOLINGS, Ensemble, TextModel, TextModelConfig
from selfattention.apps.text.vocab import Vocab
from selfattention.apps.training import (
    FitConfig,
    fit,
    load_checkpoint,
    save_checkpoint,
    set_seed,
    write_metrics,
)

LABELS = ("negative", "positive")
ENSEMBLE = 10  # default ensemble size of the encoder trained here
SAMPLE = "not a bad film , but the ending is far too long and rather dull ."


def add_arguments(parser: argparse.ArgumentParser, mode: str = "train") -> None:
    """Options for ``mode`` ("train", "evaluate" or "predict"): only training takes model sizes."""
    g = parser.add_argument_group("polarity")
    # Measured under load from other processes: a second intra-op thread made MiniLM's step
    # 2.8x slower (6.4 s vs 2.3 s: the threads wait for each other), and the small encoder gains
    # nothing from it; one thread is the default (in every mode).
    parser.set_defaults(threads=1)
    if mode == "predict":
        return
    g.add_argument("--data", type=Path, help="label,text CSV (default: fetch pang-lee-polarity)")
    g.add_argument("--limit", type=int, help="use only N sentences (spread over the file)")
    g.add_argument("--glove-path", type=Path, help="GloVe folder or text file (default: packaged)")
    if mode != "train":
        return
    g.add_argument("--pretrained", action="store_true", help="fine-tune the packaged MiniLM")
    g.add_argument("--epochs", type=int, help="default 30, or 3 with --pretrained")
    g.add_argument("--patience", type=int, help="default 6, or 2 with --pretrained")
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--lr", type=float, help="default 1e-3, or 4e-5 with --pretrained")
    g.add_argument("--word-dim", type=int, default=50, help="trained word vectors (0 = none)")
    g.add_argument("--dim", type=int, default=64)
    g.add_argument("--layers", type=int, default=1)
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--dropout", type=float, default=0.5)
    g.add_argument("--word-dropout", type=float, default=0.3, help="words replaced by <unk>")
    g.add_argument("--label-smoothing", type=float, default=0.0)
    g.add_argument("--pooling", choices=POOLINGS, default="attention")
    g.add_argument(
        "--ensemble",
        type=int,
        help=f"train N models (seeds SEED, SEED+1, ...) that average their probabilities "
        f"(default {ENSEMBLE}; not with --pretrained)",
    )
    g.add_argument("--positions", choices=("learned", "sinusoidal", "rotary"), default="rotary")
    g.add_argument("--no-glove", dest="glove", action="store_false", help="no GloVe vectors")
    g.add_argument("--glove-words", type=int, default=50000, help="extra GloVe words kept")
    g.add_argument("--time-limit", type=float, default=480.0, help="stop after S seconds (480)")


def _load(args: argparse.Namespace) -> dict[str, list[tuple[list[str], int]]]:
    from selfattention.apps import datasets

    path = args.data if args.data is not None else datasets.fetch("pang-lee-polarity")
    texts, labels = corpus.read_polarity(path)
    items = [(t.split(), y) for t, y in zip(texts, labels, strict=True)]
    if args.limit:
        step = max(1, len(items) // args.limit)  # the file is sorted by label: sample across it
        items = items[::step][: args.limit]
    parts = corpus.split(items)
    for name, part in parts.items():
        if not part:
            raise ValueError(f"{path}: {len(items)} sentences leave the {name} split empty")
    return parts


@functools.lru_cache(maxsize=2)
def _glove(path: Path | None) -> Any:
    from selfattention.pretrained import load_glove

    return load_glove(path)


def baseline(parts: dict, glove: Any) -> dict[str, float]:
    """Averaged GloVe vectors + logistic regression; C chosen on dev from 0.01 ... 100."""
    from sklearn.linear_model import LogisticRegression

    def features(part: list) -> tuple[np.ndarray, np.ndarray]:
        x = np.zeros((len(part), glove.dim), dtype=np.float64)
        for r, (tokens, _) in enumerate(part):
            rows = [glove.index[t] for t in tokens if t in glove.index]
            if rows:
                x[r] = glove.vectors[rows].mean(0)
        return x, np.array([y for _, y in part])

    (xtr, ytr), (xdv, ydv), (xte, yte) = (features(parts[k]) for k in ("train", "dev", "test"))
    best = None
    for c in (0.01, 0.1, 1.0, 10.0, 100.0):
        clf = LogisticRegression(C=c, max_iter=2000).fit(xtr, ytr)
        acc = clf.score(xdv, ydv)
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    dev_acc, c, clf = best
    return {"accuracy": float(clf.score(xte, yte)), "dev_accuracy": float(dev_acc), "C": c}


# ---------------------------------------------------------------------------------------------
# the fine-tuned pretrained encoder


class PretrainedClassifier(nn.Module):
    """MiniLM (or any ``load_bert`` folder) + mean pooling over real tokens + dropout + Linear."""

    def __init__(self, bert: nn.Module, num_labels: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.bert = bert
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(bert.config.hidden_size, num_labels)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, *, return_weights: bool = False
    ) -> Tensor | tuple[Tensor, tuple[Tensor, ...]]:
        out = self.bert(input_ids, attention_mask, return_weights=return_weights)
        m = attention_mask.to(out.last_hidden_state.dtype)[..., None]  # (b, n, 1)
        pooled = (out.last_hidden_state * m).sum(1) / m.sum(1).clamp_min(1)  # (b, d)
        logits = self.head(self.dropout(pooled))
        return (logits, out.weights) if return_weights else logits


def _bert_batches(bert: Any, part: list, batch_size: int, seed: int | None) -> list:
    """Tokenised batches; with ``seed``, shuffled and then grouped by length (less padding)."""
    order = list(range(len(part)))
    if seed is not None:
        import random

        rng = random.Random(seed)
        rng.shuffle(order)
        pool = batch_size * 20
        order = [
            i
            for s in range(0, len(order), pool)
            for i in sorted(order[s : s + pool], key=lambda k: len(part[k][0]))
        ]
        groups = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
        rng.shuffle(groups)
        order = [i for g in groups for i in g]
    out = []
    for s in range(0, len(order), batch_size):
        items = [part[i] for i in order[s : s + batch_size]]
        enc = bert.encode([" ".join(t) for t, _ in items], max_length=128, truncation=True)
        inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        out.append((inputs, torch.tensor([y for _, y in items])))
    return out


def _train_pretrained(args: argparse.Namespace, parts: dict) -> tuple[nn.Module, dict, dict, Any]:
    from selfattention.pretrained import load_bert

    if args.ensemble not in (None, 1):
        raise ValueError(f"--ensemble {args.ensemble}: ensembles are for the encoder trained here")
    bert = load_bert()
    model = PretrainedClassifier(bert).train()
    # The embedding tables hold half of MiniLM's 22.7M weights; freezing them halves the optimiser's
    # work and keeps the vectors of word pieces that the 3,200 sentences never use intact.
    model.bert.embeddings.requires_grad_(False)
    config = {"task": "polarity", "pretrained": True, "labels": list(LABELS)}
    lr = args.lr or 4e-5
    tokenised = {k: _bert_batches(bert, v, 64, None) for k, v in parts.items()}
    fit_config = FitConfig(
        args.checkpoint,
        epochs=args.epochs or 3,
        lr=lr,
        patience=args.patience or 2,
        warmup_steps=20,
        decay=True,
        time_limit=args.time_limit,
        resume=args.resume,
        progress=args.progress,
    )
    history = fit(
        model,
        lambda epoch: _bert_batches(
            bert, parts["train"], args.batch_size, args.seed * 1000 + epoch
        ),
        tokenised["dev"],
        fit_config,
        loss_fn=common.cls_loss,
        metric_fn=common.cls_metric,
        meta=config,
        param_groups=[
            {"params": [p for p in model.bert.parameters() if p.requires_grad], "lr": lr},
            {"params": list(model.head.parameters()), "lr": lr * 25},
        ],
    ).to_dict()
    return model, config, history, tokenised["test"]


# ---------------------------------------------------------------------------------------------
# the encoder trained here


def _build(args: argparse.Namespace, train: list) -> tuple[TextModel, dict, int]:
    counts = Counter(t for tokens, _ in train for t in tokens)
    trainable = [w for w, c in counts.items() if c >= 2]
    rest = sorted(w for w, c in counts.items() if c < 2)
    glove = None
    extra: list[str] = []
    if args.glove:
        glove = _glove(args.glove_path)
        extra = glove.words[: args.glove_words]
    words = Vocab.build(Counter({w: counts[w] for w in trainable}), extra=[*rest, *extra])
    cfg = TextModelConfig(
        task="classify",
        num_labels=2,
        vocab_size=len(words),
        trainable_words=2 + len(trainable),
        word_dim=args.word_dim,
        glove_dim=glove.dim if glove is not None else 0,
        dim=args.dim,
        heads=args.heads,
        layers=args.layers,
        ff_dim=2 * args.dim,
        dropout=args.dropout,
        word_dropout=args.word_dropout,
        positions=args.positions,
        pooling=args.pooling,
    )
    model = TextModel(cfg)
    found = 0
    if glove is not None:
        table, found = common.glove_table(words, glove)
        model.set_glove(table)
        if model.words is not None and cfg.word_dim == glove.dim:
            # Trained vectors start from GloVe too: fine-tuned copies beside the frozen originals.
            with torch.no_grad():
                model.words.weight[2:] = table[2 : cfg.trainable_words]
    config = {
        "task": "polarity",
        "pretrained": False,
        "model": cfg.to_json(),
        "vocab": words.to_json(),
        "chars": None,
        "labels": list(LABELS),
    }
    return model, config, found


def _encode(encoder: common.Encoder, part: list) -> list[common.Encoded]:
    return [encoder(tokens, y) for tokens, y in part]


def member_seed(seed: int, k: int) -> int:
    """Seed of ensemble member ``k``: member 0 is the single model of ``--seed``."""
    return seed + k


def _train_scratch(args: argparse.Namespace, parts: dict) -> tuple[nn.Module, dict, dict, Any]:
    n = ENSEMBLE if args.ensemble is None else args.ensemble
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"--ensemble must be a positive int, got {n!r}")
    smoothing = args.label_smoothing
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"--label-smoothing must be in [0, 1), got {smoothing!r}")

    def loss(logits: Tensor, targets: Tensor) -> Tensor:
        return nn.functional.cross_entropy(logits, targets, label_smoothing=smoothing)

    t0 = common.timer()
    models: list[TextModel] = []
    runs: list[dict] = []
    data: dict | None = None
    dev_batches: list | None = None
    for k in range(n):
        # The time limit covers the whole run: each member gets an equal share of what is left.
        share = (args.time_limit - (common.timer() - t0)) / (n - k)
        if k > 0 and share <= 0:
            break
        seed = member_seed(args.seed, k)
        set_seed(seed)
        model, config, found = _build(args, parts["train"])
        config["glove_words_found"] = found
        if data is None:  # the vocabulary depends on the training split only: encode once
            encoder = common.Encoder(Vocab.from_json(config["vocab"]), None)
            data = {key: _encode(encoder, v) for key, v in parts.items()}
            dev_batches = common.batches(data["dev"], 128, task="classify")
        out = Path(args.checkpoint) if n == 1 else Path(args.checkpoint) / "members" / str(k)
        fit_config = FitConfig(
            out,
            epochs=args.epochs or 30,
            lr=args.lr or 1e-3,
            patience=args.patience or 6,
            weight_decay=0.05,
            time_limit=max(share, 1e-3),
            resume=args.resume and (n == 1 or (out / "last").is_dir()),
            progress=args.progress,
        )
        history = fit(
            model,
            lambda epoch, seed=seed, train=data["train"]: common.batches(
                train, args.batch_size, seed=seed * 1000 + epoch, task="classify"
            ),
            dev_batches,
            fit_config,
            loss_fn=loss,
            metric_fn=common.cls_metric,
            meta={**config, "seed": seed},
        ).to_dict()
        models.append(model)
        runs.append({"seed": seed, **history})
    test_batches = common.batches(data["test"], 128, task="classify")
    if n == 1:
        return models[0], config, runs[0], test_batches

    ensemble = Ensemble.from_models(models)
    config = {**config, "ensemble": len(models)}
    save_checkpoint(args.checkpoint, ensemble, config)
    summary = {
        "history": runs[0]["history"],
        "best_dev_accuracy": _accuracy(ensemble, dev_batches),
        "epochs_run": sum(r["epochs_run"] for r in runs),
        "best_epoch": [r["best_epoch"] for r in runs],
        "stopped": [r["stopped"] for r in runs],
        "members": [
            {
                "seed": r["seed"],
                "dev_accuracy": r["best_dev_accuracy"],
                "test_accuracy": _accuracy(m, test_batches),
                "best_epoch": r["best_epoch"],
                "epochs_run": r["epochs_run"],
                "stopped": r["stopped"],
                "seconds": r["seconds"],
            }
            for r, m in zip(runs, models, strict=True)
        ],
    }
    return ensemble, config, summary, test_batches


# ---------------------------------------------------------------------------------------------
# commands


@torch.no_grad()
def _accuracy(model: nn.Module, batches: list) -> float:
    model.eval()
    hit = total = 0
    for inputs, targets in batches:
        c, t = common.cls_metric(model(**inputs), targets)
        hit, total = hit + c, total + t
    return hit / total


def train(args: argparse.Namespace) -> dict[str, Any]:
    set_seed(args.seed)
    parts = _load(args)
    t0 = common.timer()
    runner = _train_pretrained if args.pretrained else _train_scratch
    model, config, history, test_batches = runner(args, parts)
    seconds = common.timer() - t0
    metrics = _metrics(model, test_batches, parts, config, args.glove_path)
    metrics.update(common.run_summary(model, history, seconds))
    if "members" in history:
        metrics["ensemble"] = len(history["members"])
        metrics["members"] = history["members"]
    write_metrics(Path(args.checkpoint) / "metrics.json", metrics)
    _picture(model, config, Path(args.checkpoint) / "attention.png")
    return {k: v for k, v in metrics.items() if k != "history"}


def _metrics(
    model: nn.Module, test_batches: list, parts: dict, config: dict, glove_path: Path | None
) -> dict[str, Any]:
    return {
        "task": "polarity",
        "model": "MiniLM fine-tuned" if config.get("pretrained") else "encoder trained here",
        "split": {k: len(v) for k, v in parts.items()},
        "test_positive": sum(y for _, y in parts["test"]),
        "test_accuracy": _accuracy(model, test_batches),
        "baseline": "averaged GloVe + logistic regression",
        "baseline_accuracy": baseline(parts, _glove(glove_path))["accuracy"],
    }


def _load_model(args: argparse.Namespace) -> tuple[nn.Module, dict, Any]:
    """The model, its config and a function tokens-list -> batch inputs."""
    checkpoint = args.checkpoint
    state, config = load_checkpoint(checkpoint)
    if config.get("task") != "polarity":
        raise ValueError(f"{checkpoint} holds a {config.get('task')!r} model, not polarity")
    if config.get("pretrained"):
        from selfattention.pretrained import load_bert

        bert = load_bert()
        model = PretrainedClassifier(bert)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"{checkpoint}/model.safetensors does not fit MiniLM: {e}") from e
        model.eval()
        return model, config, lambda part: _bert_batches(bert, part, 64, None)
    model, config = common.load_model(checkpoint)
    encoder = config["encoder"]
    return (
        model,
        config,
        lambda part: common.batches(_encode(encoder, part), 128, task="classify"),
    )


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    model, config, to_batches = _load_model(args)
    parts = _load(args)
    metrics = _metrics(model, to_batches(parts["test"]), parts, config, args.glove_path)
    write_metrics(Path(args.checkpoint) / "test_metrics.json", metrics)
    return metrics


@torch.no_grad()
def predict(args: argparse.Namespace) -> int:
    model, _, to_batches = _load_model(args)
    lines = common.read_inputs(args)
    part = [(corpus.tokenize(line.lower()), 0) for line in lines]
    part = [(t or ["."], y) for t, y in part]
    probs = torch.cat([torch.softmax(model(**inp), -1) for inp, _ in to_batches(part)])
    for line, p in zip(lines, probs, strict=True):
        k = int(p.argmax())
        print(f"{LABELS[k]}\t{float(p[k]):.3f}\t{line}")
    return 0


@torch.no_grad()
def _picture(model: nn.Module, config: dict, path: Path) -> Path:
    from selfattention import viz

    model.eval()
    tokens = SAMPLE.split()
    if config.get("pretrained"):
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
    encoder = common.Encoder(Vocab.from_json(config["vocab"]), None)
    return common.save_attention_picture(
        model, encoder(tokens), tokens, path, "polarity: " + SAMPLE
    )
