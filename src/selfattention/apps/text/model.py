"""A small Transformer encoder for sentences, built from ``selfattention.nn``.

    word ids ──► [GloVe (frozen)] ⊕ [trained word vector] ⊕ [char-CNN] ⊕ [case] ──► Linear ──►
    + positions ──► TransformerEncoder (multi-head self-attention, padding masked) ──►
    tagger: Linear per token  |  classifier: mean, max, mean+max or attention pooling ──► Linear

Shapes: b sentences, n tokens, c characters per token, d model width, L labels.

Word ids index one vocabulary ordered ``specials, trainable words, other words``: every id has a
GloVe row (zeros where GloVe lacks the word), only the first ``trainable_words`` ids have a trained
vector (the rest share the ``<unk>`` one). Keeping GloVe frozen means words never seen in training
keep a meaningful vector; word dropout (ids replaced by ``<unk>`` while training) teaches the
model to rely on the other features when a word is unknown.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from selfattention.nn import (
    LearnedPositions,
    RotaryPositions,
    SinusoidalPositions,
    TransformerEncoder,
)
from selfattention.pretrained.bert import max_pool, mean_pool

__all__ = ["CASE_CLASSES", "Ensemble", "TextModel", "TextModelConfig", "case_class"]

POOLINGS = ("mean", "max", "mean+max", "attention")

CASE_CLASSES = 6  # 0 pad, 1 lower, 2 Capitalised, 3 UPPER, 4 has a digit, 5 other
UNK_ID = 1


def case_class(word: str) -> int:
    """Shape of a word: 1 lower, 2 Capitalised, 3 UPPER, 4 contains a digit, 5 anything else."""
    if any(ch.isdigit() for ch in word):
        return 4
    if word.islower():
        return 1
    if word.isupper() and len(word) > 1:
        return 3
    if word[:1].isupper():
        return 2
    return 5


@dataclass(frozen=True)
class TextModelConfig:
    """Everything needed to rebuild a :class:`TextModel` (saved in the checkpoint's config.json).

    task: "tag" (a label per token) or "classify" (a label per sentence).
    vocab_size: word ids; trainable_words: how many of them have a trained vector (<= vocab_size);
    word_dim: trained word vector width (0 = none); glove_dim: 0 = no GloVe table.
    num_chars: 0 = no character CNN; char_dim, char_filters, char_width: its sizes.
    case_dim: 0 = no case feature. positions: "learned" | "sinusoidal" | "rotary".
    pooling (classify): "mean" | "max" | "mean+max" (both, concatenated) | "attention".
    packed: run the encoder on the real tokens only, sentences end to end (``cu_seqlens``):
        no attention score is computed on padding (the padded path serves ``return_weights``).
    """

    task: str
    num_labels: int
    vocab_size: int
    trainable_words: int
    word_dim: int = 64
    glove_dim: int = 0
    num_chars: int = 0
    char_dim: int = 24
    char_filters: int = 48
    char_width: int = 3
    case_dim: int = 0
    dim: int = 128
    heads: int = 4
    layers: int = 2
    ff_dim: int = 256
    dropout: float = 0.1
    word_dropout: float = 0.0
    max_len: int = 512
    positions: str = "learned"
    pooling: str = "mean"
    packed: bool = True

    def __post_init__(self) -> None:
        if self.task not in ("tag", "classify"):
            raise ValueError(f"task must be 'tag' or 'classify', got {self.task!r}")
        if self.positions not in ("learned", "sinusoidal", "rotary"):
            raise ValueError(f"positions must be learned|sinusoidal|rotary, got {self.positions!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {'|'.join(POOLINGS)}, got {self.pooling!r}")
        if not 0 < self.trainable_words <= self.vocab_size:
            raise ValueError(
                f"trainable_words must be in 1..vocab_size={self.vocab_size}, "
                f"got {self.trainable_words}"
            )
        if self.word_dim + self.glove_dim + self.num_chars + self.case_dim == 0:
            raise ValueError("the model needs an input: word_dim, glove_dim, num_chars or case_dim")
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} must be divisible by heads={self.heads}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TextModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"TextModelConfig: unknown fields {sorted(unknown)}")
        return cls(**data)


class TextModel(nn.Module):
    """Tagger or sentence classifier; see the module docstring.

    forward(words (b, n), chars (b, n, c) | None, case (b, n) | None, *, return_weights=False)
    -> logits (b, n, L) for "tag", (b, L) for "classify"; with return_weights also the per-layer
    attention weights, a tuple of (b, h, n, n). Word id 0 is padding.
    """

    def __init__(self, config: TextModelConfig) -> None:
        super().__init__()
        c = self.config = config
        self.words: nn.Embedding | None = None
        if c.word_dim:
            self.words = nn.Embedding(c.trainable_words, c.word_dim, padding_idx=0)
            nn.init.normal_(self.words.weight, std=0.1)
            with torch.no_grad():
                self.words.weight[0].zero_()
        # Frozen GloVe rows for every id: a buffer, so neither optimiser nor weight decay touch it.
        self.register_buffer("glove", torch.zeros(c.vocab_size, c.glove_dim), persistent=True)
        width = c.word_dim + c.glove_dim
        if c.num_chars:
            self.chars = nn.Embedding(c.num_chars, c.char_dim, padding_idx=0)
            self.char_conv = nn.Conv1d(c.char_dim, c.char_filters, c.char_width, padding="same")
            width += c.char_filters
        if c.case_dim:
            self.case = nn.Embedding(CASE_CLASSES, c.case_dim, padding_idx=0)
            width += c.case_dim
        self.input_proj = nn.Linear(width, c.dim)
        self.input_dropout = nn.Dropout(c.dropout)
        attention_kwargs: dict[str, Any] = {}
        self.positions: nn.Module | None = None
        if c.positions == "learned":
            self.positions = LearnedPositions(c.max_len, c.dim)
        elif c.positions == "sinusoidal":
            self.positions = SinusoidalPositions(c.dim, c.max_len)
        else:
            attention_kwargs["positions"] = RotaryPositions(c.dim // c.heads)
        self.encoder = TransformerEncoder(
            c.layers,
            c.dim,
            c.heads,
            ff_dim=c.ff_dim,
            dropout=c.dropout,
            **attention_kwargs,
        )
        if c.task == "classify" and c.pooling == "attention":
            self.pool_score = nn.Linear(c.dim, 1)
        pooled = 2 * c.dim if c.task == "classify" and c.pooling == "mean+max" else c.dim
        self.head = nn.Linear(pooled, c.num_labels)

    def set_glove(self, table: Tensor) -> None:
        """Copy a (vocab_size, glove_dim) table of GloVe rows into the frozen buffer."""
        if tuple(table.shape) != tuple(self.glove.shape):
            raise ValueError(
                f"glove table must be {tuple(self.glove.shape)}, got {tuple(table.shape)}"
            )
        self.glove.copy_(table)

    def _token_vectors(self, words: Tensor, chars: Tensor | None, case: Tensor | None) -> Tensor:
        c = self.config
        ids = words.clamp(max=c.trainable_words - 1)
        ids = torch.where(words >= c.trainable_words, torch.full_like(words, UNK_ID), ids)
        if self.training and c.word_dropout > 0:
            drop = (torch.rand(words.shape, device=words.device) < c.word_dropout) & (words > 1)
            ids = ids.masked_fill(drop, UNK_ID)
        parts = [] if self.words is None else [self.words(ids)]  # (b, n, word_dim)
        if c.glove_dim:
            parts.append(self.glove[words])  # (b, n, glove_dim)
        if c.num_chars:
            if chars is None:
                raise ValueError("this model reads characters: pass chars (b, n, c)")
            b, n, k = chars.shape
            e = self.chars(chars.reshape(b * n, k)).transpose(1, 2)  # (b·n, char_dim, c)
            h = self.char_conv(e)  # (b·n, filters, c)
            h = h.masked_fill((chars.reshape(b * n, 1, k) == 0), torch.finfo(h.dtype).min)
            h = h.amax(-1).clamp_min(-1e4).reshape(b, n, -1)  # empty (padding) tokens -> finite
            parts.append(torch.relu(h))
        if c.case_dim:
            if case is None:
                raise ValueError("this model reads word case: pass case (b, n)")
            parts.append(self.case(case))
        return torch.cat(parts, dim=-1)

    def forward(
        self,
        words: Tensor,
        chars: Tensor | None = None,
        case: Tensor | None = None,
        *,
        return_weights: bool = False,
    ) -> Tensor | tuple[Tensor, tuple[Tensor, ...]]:
        if words.ndim != 2:
            raise ValueError(f"words must be (b, n) ids, got shape {tuple(words.shape)}")
        real = words != 0  # (b, n)
        x = self.input_dropout(self.input_proj(self._token_vectors(words, chars, case)))
        if self.positions is not None:
            x = self.positions(x)
        if self.config.packed and not return_weights:
            h, weights = self._encode_packed(x, real), None
        else:
            mask = real[:, None, None, :]  # (b, 1, 1, j): keys that are real tokens
            out = self.encoder(x, mask=mask, return_weights=return_weights)
            h, weights = out.last_hidden_state, out.weights  # (b, n, d)
        logits = self.head(h if self.config.task == "tag" else self._pool(h, real))
        return (logits, weights) if return_weights else logits  # (b, n, L) | (b, L)

    def _encode_packed(self, x: Tensor, real: Tensor) -> Tensor:
        """(b, n, d) with padding -> (b, n, d): the real tokens of each sentence, end to end
        (1, T, d), through the encoder with ``cu_seqlens``; zeros at padding positions."""
        lengths = real.sum(1).tolist()
        b, n, d = x.shape
        idx = real.reshape(-1).nonzero().squeeze(1)  # (T,), sentence by sentence in order
        if idx.numel() == 0:
            return torch.zeros_like(x)
        packed = x.reshape(b * n, d).index_select(0, idx)[None]  # (1, T, d)
        cu = [0]
        for length in lengths:
            cu.append(cu[-1] + length)
        h = self.encoder(packed, cu_seqlens=cu).last_hidden_state[0]  # (T, d)
        return x.new_zeros(b * n, d).index_copy(0, idx, h).view(b, n, d)

    def _pool(self, h: Tensor, real: Tensor) -> Tensor:
        """(b, n, d) token vectors -> (b, d) ((b, 2d) for mean+max), padding left out."""
        pooling = self.config.pooling
        if pooling == "attention":
            s = self.pool_score(h).squeeze(-1).masked_fill(~real, torch.finfo(h.dtype).min)
            return torch.einsum("bn,bnd->bd", torch.softmax(s, dim=-1), h)
        if pooling == "mean":
            return mean_pool(h, real)
        if pooling == "max":
            return max_pool(h, real)
        return torch.cat([mean_pool(h, real), max_pool(h, real)], -1)  # mean+max


class Ensemble(nn.Module):
    """``size`` sentence classifiers of one config, trained apart (different seeds), that vote by
    averaging their probabilities:  p(y | x) = (1/N) Σ_k softmax(f_k(x))_y.

    forward(words, chars, case, *, return_weights=False) -> log p, (b, L): log-probabilities,
    so that ``argmax`` and ``softmax`` treat them like logits (softmax(log p) = p). With
    ``return_weights`` also the first member's attention weights (a picture shows one model).

    The frozen GloVe table is one buffer shared by every member and saved once: the state dict
    holds ``glove`` and ``members.<k>.<weights>``.
    """

    def __init__(self, config: TextModelConfig, size: int) -> None:
        super().__init__()
        if config.task != "classify":
            raise ValueError(f"an Ensemble averages sentence classifiers, got task={config.task!r}")
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"ensemble size must be a positive int, got {size!r}")
        self.config = config
        self.members = nn.ModuleList(TextModel(config) for _ in range(size))
        self.register_buffer("glove", self.members[0].glove, persistent=True)
        for m in self.members:
            del m._buffers["glove"]
            m.register_buffer("glove", self.glove, persistent=False)

    @classmethod
    def from_models(cls, models: list[TextModel]) -> Ensemble:
        """An ensemble holding copies of the weights of trained ``models`` (one config, one
        GloVe table: the first model's)."""
        if not models:
            raise ValueError("Ensemble.from_models needs at least one model, got none")
        config = models[0].config
        for m in models[1:]:
            if m.config != config:
                raise ValueError("Ensemble.from_models: the models' configs differ")
        ens = cls(config, len(models))
        ens.set_glove(models[0].glove)
        for member, model in zip(ens.members, models, strict=True):
            member.load_state_dict({k: v for k, v in model.state_dict().items() if k != "glove"})
        return ens

    def set_glove(self, table: Tensor) -> None:
        """Copy a (vocab_size, glove_dim) table of GloVe rows into the shared frozen buffer."""
        self.members[0].set_glove(table)

    def _apply(self, fn: Any, recurse: bool = True) -> Ensemble:
        # .to()/.float() replace each buffer on its own: point the members at the new table again.
        super()._apply(fn, recurse)
        for m in self.members:
            m._buffers["glove"] = self.glove
        return self

    def forward(
        self,
        words: Tensor,
        chars: Tensor | None = None,
        case: Tensor | None = None,
        *,
        return_weights: bool = False,
    ) -> Tensor | tuple[Tensor, tuple[Tensor, ...]]:
        weights: tuple[Tensor, ...] = ()
        probs = []
        for k, m in enumerate(self.members):
            if return_weights and k == 0:
                logits, weights = m(words, chars, case, return_weights=True)
            else:
                logits = m(words, chars, case)
            probs.append(torch.softmax(logits, -1))
        log_p = torch.stack(probs).mean(0).clamp_min(torch.finfo(probs[0].dtype).tiny).log()
        return (log_p, weights) if return_weights else log_p
