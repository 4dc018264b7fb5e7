"""A pretrained BERT-family encoder built from this library's modules.

    h_0 = project?(LayerNorm(E_word[ids] + E_pos[pos] + E_type[type_ids]))     (b, n, dim)
    h_l = TransformerEncoderLayer_l(h_l-1, mask)     post-norm, l = 1..L
    embed(s) = normalize?(mean over real tokens of h_L)                        (b, dim)

What the families change (read from ``config.json`` by ``families.read_config``):
- pos = 0..n-1, or RoBERTa's pad + 1 + (real tokens up to j) with padding at pad;
- E_type absent (DistilBERT: ``type_vocab_size`` 0);
- tables of width E mapped to dim by ``project`` (ALBERT always, ELECTRA when E != dim);
- layers that share weights (ALBERT: one weight set runs L times), see
  ``EncoderConfig.layer_plan``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from selfattention.nn import EncoderOutput, TransformerEncoder
from selfattention.pretrained import tokenize
from selfattention.pretrained.checkpoint import CONFIG_FILE
from selfattention.pretrained.config import HIDDEN_ACTS, EncoderConfig
from selfattention.pretrained.pooling import Pooling, max_pool, mean_pool

__all__ = ["Embeddings", "PretrainedEncoder"]


class Embeddings(nn.Module):
    """Token + position (+ segment) embeddings of width E, LayerNorm, dropout, then (ALBERT,
    ELECTRA) a Linear E -> dim. Submodules: ``word``, ``position``, ``token_type`` (or None),
    ``norm``, ``project`` (or None)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        e = config.embedding_dim
        self.pad_token_id = config.pad_token_id
        self.positions_after_padding = config.positions_after_padding
        self.word = nn.Embedding(config.vocab_size, e, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, e)
        self.token_type = (
            nn.Embedding(config.type_vocab_size, e) if config.type_vocab_size else None
        )
        self.norm = nn.LayerNorm(e, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.project = nn.Linear(e, config.hidden_size) if config.project_embeddings else None

    def position_ids(self, input_ids: Tensor) -> Tensor:
        """(b, n) -> (b, n) or (n,): 0..n-1, or RoBERTa's pad + cumsum(real)·real."""
        if not self.positions_after_padding:
            return torch.arange(input_ids.shape[1], device=input_ids.device)  # (n,)
        # fairseq counts positions from pad + 1 and gives padding the (zero) row `pad`; a pad id
        # inside a sentence is treated as padding, exactly as transformers does.
        real = input_ids.ne(self.pad_token_id).long()  # (b, n)
        return real.cumsum(1) * real + self.pad_token_id

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """input_ids, token_type_ids (b, n) -> (b, n, dim)."""
        x = self.word(input_ids) + self.position(self.position_ids(input_ids))
        if self.token_type is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.token_type(token_type_ids)
        x = self.dropout(self.norm(x))
        return x if self.project is None else self.project(x)


def _encoder(config: EncoderConfig) -> TransformerEncoder:
    """The post-norm layer stack; layers that share weights are one module listed again."""
    plan = config.layer_plan()
    unique = list(dict.fromkeys(plan))  # weight sets, in the order they first run
    encoder = TransformerEncoder(
        len(unique),
        config.hidden_size,
        config.num_heads,
        final_norm=False,
        ff_dim=config.intermediate_size,
        dropout=config.hidden_dropout,
        activation=HIDDEN_ACTS[config.hidden_act],
        norm_first=False,
        layer_norm_eps=config.layer_norm_eps,
    )
    if len(unique) < len(plan):  # ALBERT: named_parameters names each set at its first run
        sets = dict(zip(unique, encoder.layers, strict=True))
        encoder.layers = nn.ModuleList(sets[key] for key in plan)
    return encoder


class PretrainedEncoder(nn.Module):
    """A BERT-family encoder: ``embeddings`` (Embeddings) and ``encoder`` (TransformerEncoder of
    post-norm ``TransformerEncoderLayer`` s), plus the checkpoint's ``tokenizer`` and pooling.

    Attributes:
        config: EncoderConfig (``config.model_type`` is the family). tokenizer:
        ``tokenizers.Tokenizer``. pooling: Pooling. pooler: Linear (CLS pooler, applied as
        tanh(pooler(h_L[:, 0]))) or None.
    """

    def __init__(self, config: EncoderConfig, tokenizer=None, pooling: Pooling | None = None):
        super().__init__()
        if config.hidden_act not in HIDDEN_ACTS:
            raise ValueError(
                f"hidden_act must be one of {sorted(HIDDEN_ACTS)}, got {config.hidden_act!r}"
            )
        self.config = config
        self.tokenizer = tokenizer
        self.pooling = pooling or Pooling(max_seq_length=config.max_positions)
        self.embeddings = Embeddings(config)
        self.encoder = _encoder(config)
        self.pooler: nn.Linear | None = None

    # -- tokens ---------------------------------------------------------------------------
    def encode(
        self,
        sentences: list[str] | list[list[str]],
        max_length: int | None = None,
        truncation: bool = False,
    ) -> dict[str, Tensor]:
        """Tokenise a batch: input_ids, attention_mask, token_type_ids (b, n), padded to the
        longest with pad_token_id; plus word_ids (b, n) (-1 = special/padding) for pre-split
        words.

        A sentence longer than ``max_length`` tokens (default and at most the model's
        ``config.max_positions``, 512 for BERT and RoBERTa) raises ValueError unless
        ``truncation=True``.
        """
        if self.tokenizer is None:
            raise ValueError("this encoder has no tokenizer; build it with load_encoder(folder)")
        limit = self.config.max_positions
        max_length = limit if max_length is None else max_length
        if isinstance(max_length, int) and max_length > limit:
            raise ValueError(
                f"max_length={max_length} exceeds the model's {limit} positions "
                f"(max_position_embeddings in {CONFIG_FILE})"
            )
        return tokenize.encode(
            self.tokenizer,
            sentences,
            max_length=max_length,
            truncation=truncation,
            pad_id=self.config.pad_token_id,
        )

    def tokens(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> list[list[str]]:
        """The token strings of each row, padding dropped."""
        if self.tokenizer is None:
            raise ValueError("this encoder has no tokenizer; build it with load_encoder(folder)")
        rows = []
        for r, ids in enumerate(input_ids.tolist()):
            n = len(ids) if attention_mask is None else int(attention_mask[r].sum())
            rows.append([self.tokenizer.id_to_token(i) for i in ids[:n]])
        return rows

    # -- model ----------------------------------------------------------------------------
    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        *,
        return_weights: bool = False,
        return_hidden_states: bool = False,
    ) -> EncoderOutput:
        """Encode token ids.

        Args:
            input_ids: (b, n) int token ids, n <= config.max_positions.
            attention_mask: (b, n), 1/True = real token, 0/False = padding (default: all real).
            token_type_ids: (b, n) segment ids (default: all 0; DistilBERT has none, so only 0).
            return_weights: also return each layer's weights (b, h, n, n), per head.
            return_hidden_states: also return (embeddings output, layer 1, ..., layer L), L + 1
                tensors (b, n, dim), as Hugging Face's ``output_hidden_states``.

        Returns:
            EncoderOutput(last_hidden_state (b, n, dim), hidden_states, weights).
        """
        cfg = self.config
        input_ids = self._check_ids("input_ids", input_ids, cfg.vocab_size)
        b, n = input_ids.shape
        if n > cfg.max_positions:
            raise ValueError(
                f"input_ids has {n} positions, more than the model's {cfg.max_positions} "
                "(max_position_embeddings); encode with truncation=True or split the text"
            )
        if token_type_ids is not None:
            if cfg.type_vocab_size == 0 and isinstance(token_type_ids, Tensor):
                if token_type_ids.shape == input_ids.shape and not token_type_ids.any():
                    token_type_ids = None  # all 0: what a tokenizer gives one sentence
                else:
                    raise ValueError(
                        f"{cfg.model_type} has no token types; token_type_ids must be None or all 0"
                    )
            else:
                token_type_ids = self._check_ids(
                    "token_type_ids", token_type_ids, cfg.type_vocab_size, (b, n)
                )
        mask = None
        if attention_mask is not None:
            if tuple(attention_mask.shape) != (b, n):
                raise ValueError(
                    f"attention_mask must have the shape of input_ids {(b, n)}, "
                    f"got {tuple(attention_mask.shape)}"
                )
            mask = attention_mask.to(input_ids.device).bool()[:, None, None, :]  # (b, 1, 1, j)
        x = self.embeddings(input_ids, token_type_ids)
        return self.encoder(
            x, mask=mask, return_weights=return_weights, return_hidden_states=return_hidden_states
        )

    @staticmethod
    def _check_ids(name: str, ids, upper: int, shape: tuple | None = None) -> Tensor:
        if not isinstance(ids, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor (b, n), got {type(ids).__name__}")
        if ids.ndim != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise ValueError(
                f"{name} must be an integer tensor (b, n), got {ids.dtype} {ids.shape}"
            )
        if shape is not None and tuple(ids.shape) != shape:
            raise ValueError(f"{name} must have the shape of input_ids {shape}, got {ids.shape}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= upper):
            raise ValueError(
                f"{name} must lie in [0, {upper}), got values in "
                f"[{int(ids.min())}, {int(ids.max())}]"
            )
        return ids.long()

    @torch.no_grad()
    def embed(self, sentences: list[str], batch_size: int = 32) -> Tensor:
        """Sentence embeddings (b, dim) as sentence-transformers computes them for this folder:
        pool the last layer (mean over real tokens by default), L2-normalise if the folder's
        modules.json has a Normalize step. Sentences longer than ``pooling.max_seq_length``
        tokens are truncated, as sentence-transformers does. Runs without gradients.
        """
        tokenize._check_sentences(sentences)
        out = []
        for start in range(0, len(sentences), batch_size):
            batch = self.encode(
                list(sentences[start : start + batch_size]),
                max_length=self.pooling.max_seq_length,
                truncation=True,
            )
            device = self.embeddings.word.weight.device
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            h = self(ids, mask, batch["token_type_ids"].to(device)).last_hidden_state
            out.append(self.pool(h, mask))
        return torch.cat(out)

    def pool(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        """Pool (b, n, dim) token vectors into (b, dim) with this model's ``pooling``."""
        if self.pooling.mode == "mean":
            v = mean_pool(hidden, attention_mask)
        elif self.pooling.mode == "cls":
            v = hidden[:, 0]
        else:  # max over real tokens
            v = max_pool(hidden, attention_mask)
        return nn.functional.normalize(v, dim=-1) if self.pooling.normalize else v
