"""Polarity with small encoders trained here: frozen GloVe 50-d plus trained word vectors, one
self-attention layer, attention pooling. ``ensemble=N`` trains N of them with seeds SEED,
SEED+1, ... and averages their probabilities (one checkpoint; each member's own run is kept
under ``CHECKPOINT/members/<k>``, which ``resume`` continues)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from selfattention.apps.text import common
from selfattention.apps.text.model import Ensemble, TextModel, TextModelConfig
from selfattention.apps.text.polarity.config import LABELS, PolarityConfig
from selfattention.apps.text.vocab import Vocab
from selfattention.apps.training import FitConfig, ddp, fit, save_checkpoint, set_seed

__all__ = ["accuracy", "build", "encode", "member_seed", "train"]

Item = tuple[list[str], int]  # (tokens, label)


def member_seed(seed: int, k: int) -> int:
    """Seed of ensemble member ``k``: member 0 is the single model of ``seed``."""
    return seed + k


def build(config: PolarityConfig, train: list[Item]) -> tuple[TextModel, dict, int]:
    """A fresh model, its checkpoint config (vocabulary from ``train``), GloVe words found."""
    counts = Counter(t for tokens, _ in train for t in tokens)
    trainable = [w for w, c in counts.items() if c >= 2]
    rest = sorted(w for w, c in counts.items() if c < 2)
    glove = common.glove(config.glove_path) if config.glove else None
    extra = glove.words[: config.glove_words] if glove is not None else []
    words = Vocab.build(Counter({w: counts[w] for w in trainable}), extra=[*rest, *extra])
    cfg = TextModelConfig(
        task="classify",
        num_labels=2,
        vocab_size=len(words),
        trainable_words=2 + len(trainable),
        word_dim=config.word_dim,
        glove_dim=glove.dim if glove is not None else 0,
        dim=config.dim,
        heads=config.heads,
        layers=config.layers,
        ff_dim=2 * config.dim,
        dropout=config.dropout,
        word_dropout=config.word_dropout,
        positions=config.positions,
        pooling=config.pooling,
    )
    model = TextModel(cfg)
    table, found = common.set_glove(model, words, glove)
    if table is not None and model.words is not None and cfg.word_dim == glove.dim:
        # Trained vectors start from GloVe too: fine-tuned copies beside the frozen originals.
        with torch.no_grad():
            model.words.weight[2:] = table[2 : cfg.trainable_words]
    meta = {
        "task": "polarity",
        "pretrained": False,
        "model": cfg.to_json(),
        "vocab": words.to_json(),
        "chars": None,
        "labels": list(LABELS),
    }
    return model, meta, found


def encode(encoder: common.Encoder, part: list[Item]) -> list[common.Encoded]:
    return [encoder(tokens, y) for tokens, y in part]


@torch.no_grad()
def accuracy(model: nn.Module, batches: list) -> float:
    model.eval()
    hit = total = 0
    for inputs, targets in batches:
        c, t = common.cls_metric(model(**inputs), targets)
        hit, total = hit + c, total + t
    return hit / total


def train(
    config: PolarityConfig,
    data: dict[str, list[Item]],
    checkpoint: Path,
    *,
    resume: bool,
    progress: bool,
    on_epoch: Callable[[dict, bool], None] | None,
) -> tuple[nn.Module, dict, dict, list]:
    """Train ``config.ensemble`` members; returns ``(model, meta, history, test batches)``."""
    n = config.ensemble

    def loss(logits: Tensor, targets: Tensor) -> Tensor:
        return nn.functional.cross_entropy(logits, targets, label_smoothing=config.label_smoothing)

    t0 = common.timer()
    models: list[TextModel] = []
    runs: list[dict[str, Any]] = []
    encoded: dict | None = None
    dev_batches: list = []
    for k in range(n):
        # The time limit covers the whole run: each member gets an equal share of what is left.
        limit = config.time_limit
        share = None if limit is None else (limit - (common.timer() - t0)) / (n - k)
        share = ddp.current().decide(share)  # under torchrun rank 0's clock decides for all
        if k > 0 and share is not None and share <= 0:
            break
        seed = member_seed(config.seed, k)
        set_seed(seed)
        model, meta, found = build(config, data["train"])
        meta["glove_words_found"] = found
        if encoded is None:  # the vocabulary depends on the training split only: encode once
            encoder = common.Encoder(Vocab.from_json(meta["vocab"]), None)
            encoded = {key: encode(encoder, v) for key, v in data.items()}
            dev_batches = common.batches(encoded["dev"], 128, task="classify")
        out = checkpoint if n == 1 else checkpoint / "members" / str(k)
        fit_config = FitConfig(
            out,
            epochs=config.epochs,
            lr=config.lr,
            patience=config.patience,
            weight_decay=0.05,
            time_limit=None if share is None else max(share, 1e-3),
            resume=resume and (n == 1 or ddp.current().decide((out / "last").is_dir())),
            progress=progress,
        )
        history = fit(
            model,
            lambda epoch, seed=seed, train=encoded["train"]: common.batches(
                train, config.batch_size, seed=seed * 1000 + epoch, task="classify"
            ),
            dev_batches,
            fit_config,
            loss_fn=loss,
            metric_fn=common.cls_metric,
            meta={**meta, "seed": seed},
            on_epoch=on_epoch,
        )
        models.append(model)
        runs.append({"seed": seed, **history.to_dict()})
    test_batches = common.batches(encoded["test"], 128, task="classify")
    if n == 1:
        return models[0], meta, runs[0], test_batches

    ensemble = Ensemble.from_models(models)
    meta = {**meta, "ensemble": len(models)}
    if ddp.is_main_process():  # under torchrun every rank gets here; rank 0 writes
        save_checkpoint(checkpoint, ensemble, meta)
    summary = {
        "history": runs[0]["history"],
        "best_dev_accuracy": accuracy(ensemble, dev_batches),
        "epochs_run": sum(r["epochs_run"] for r in runs),
        "best_epoch": [r["best_epoch"] for r in runs],
        "stopped": [r["stopped"] for r in runs],
        "members": [
            {
                "seed": r["seed"],
                "dev_accuracy": r["best_dev_accuracy"],
                "test_accuracy": accuracy(m, test_batches),
                "best_epoch": r["best_epoch"],
                "epochs_run": r["epochs_run"],
                "stopped": r["stopped"],
                "seconds": r["seconds"],
            }
            for r, m in zip(runs, models, strict=True)
        ],
    }
    return ensemble, meta, summary, test_batches
