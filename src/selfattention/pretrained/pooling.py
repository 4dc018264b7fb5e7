"""Sentence vectors from token vectors, and the pooling a sentence-transformers folder asks for."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from selfattention.pretrained.checkpoint import _fail

__all__ = ["Pooling", "max_pool", "mean_pool", "read_pooling"]


@dataclass(frozen=True)
class Pooling:
    """How ``PretrainedEncoder.embed`` turns token vectors into one sentence vector
    (sentence-transformers' ``1_Pooling/config.json``, ``modules.json`` and
    ``sentence_bert_config.json``)."""

    mode: str = "mean"  # "mean" | "cls" | "max"
    normalize: bool = False  # L2-normalise the pooled vector (a Normalize module)
    max_seq_length: int = 512  # longer sentences are truncated, as sentence-transformers does


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Mean over real tokens, sum_j m_j h_j / max(sum_j m_j, 1e-9): (b, n, d), (b, n) -> (b, d)."""
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (b, n, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def max_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Elementwise max over real tokens, max_{j: m_j} h_j: (b, n, d), (b, n) -> (b, d)."""
    filler = torch.finfo(hidden.dtype).min  # padding never wins (and a row of padding gives min)
    return hidden.masked_fill(~attention_mask.bool()[..., None], filler).amax(1)


def read_pooling(folder: Path, max_positions: int) -> Pooling:
    """Pooling from sentence-transformers' files if the folder has them; else mean, no norm."""
    max_len = max_positions
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return Pooling(max_seq_length=max_len)
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        st_file = folder / "sentence_bert_config.json"
        if st_file.is_file():
            max_len = min(max_len, int(json.loads(st_file.read_text())["max_seq_length"]))
        mode, normalize = "mean", False
        for m in modules:
            kind = m["type"].rsplit(".", 1)[-1]
            if kind == "Normalize":
                normalize = True
            elif kind == "Pooling":
                cfg = json.loads((folder / m["path"] / "config.json").read_text())
                keys = {
                    "mean": "pooling_mode_mean_tokens",
                    "cls": "pooling_mode_cls_token",
                    "max": "pooling_mode_max_tokens",
                }
                modes = [k for k, key in keys.items() if cfg.get(key)]
                if len(modes) != 1 or cfg.get("pooling_mode_mean_sqrt_len_tokens"):
                    raise ValueError(f"exactly one of mean/cls/max pooling is supported: {cfg}")
                mode = modes[0]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise _fail(modules_file, f"cannot read the sentence-transformers pooling ({e})") from e
    return Pooling(mode=mode, normalize=normalize, max_seq_length=max_len)
