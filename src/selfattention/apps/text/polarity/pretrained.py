"""Polarity with the packaged all-MiniLM-L6-v2 encoder (``selfattention.pretrained.load_bert``),
fine-tuned with a mean-pooling linear head."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from selfattention.apps.text import common
from selfattention.apps.text.polarity.config import LABELS, PolarityConfig
from selfattention.apps.training import FitConfig, fit, load_state

__all__ = ["PretrainedClassifier", "bert_batches", "load", "train"]

Item = tuple[list[str], int]  # (tokens, label)


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


def bert_batches(bert: Any, part: list[Item], batch_size: int, seed: int | None) -> list:
    """Tokenised batches; with ``seed``, shuffled and then grouped by length (less padding)."""
    order = list(range(len(part)))
    if seed is not None:
        rng = random.Random(seed)
        order = common.length_pooled(order, lambda k: len(part[k][0]), batch_size * 20, rng)
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


def train(
    config: PolarityConfig,
    data: dict[str, list[Item]],
    checkpoint: Path,
    *,
    resume: bool,
    progress: bool,
    on_epoch: Callable[[dict, bool], None] | None,
) -> tuple[nn.Module, dict, dict, list]:
    """Fine-tune MiniLM; returns ``(model, meta, history, test batches)``."""
    from selfattention.pretrained import load_bert

    bert = load_bert()
    model = PretrainedClassifier(bert).train()
    # The embedding tables hold half of MiniLM's 22.7M weights; freezing them halves the optimiser's
    # work and keeps the vectors of word pieces that the 3,200 sentences never use intact.
    model.bert.embeddings.requires_grad_(False)
    meta = {"task": "polarity", "pretrained": True, "labels": list(LABELS)}
    tokenised = {k: bert_batches(bert, v, 64, None) for k, v in data.items()}
    fit_config = FitConfig(
        checkpoint,
        epochs=config.epochs,
        lr=config.lr,
        patience=config.patience,
        warmup_steps=20,
        decay=True,
        time_limit=config.time_limit,
        resume=resume,
        progress=progress,
    )
    history = fit(
        model,
        lambda epoch: bert_batches(
            bert, data["train"], config.batch_size, config.seed * 1000 + epoch
        ),
        tokenised["dev"],
        fit_config,
        loss_fn=common.cls_loss,
        metric_fn=common.cls_metric,
        meta=meta,
        param_groups=[
            {"params": [p for p in model.bert.parameters() if p.requires_grad], "lr": config.lr},
            {"params": list(model.head.parameters()), "lr": config.lr * 25},
        ],
        on_epoch=on_epoch,
    )
    return model, meta, history.to_dict(), tokenised["test"]


def load(
    checkpoint: str | Path, state: dict[str, Tensor]
) -> tuple[nn.Module, Callable[[list[Item]], list]]:
    """The fine-tuned classifier from its saved ``state``, and a function items -> batches."""
    from selfattention.pretrained import load_bert

    bert = load_bert()
    model = PretrainedClassifier(bert)
    load_state(model, state, f"the weights in {checkpoint} do not fit MiniLM")
    model.eval()
    return model, lambda part: bert_batches(bert, part, 64, None)
