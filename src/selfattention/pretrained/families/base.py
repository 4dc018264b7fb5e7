"""What a family table holds, and the helpers the tables share.

A ``Family`` says how one ``model_type`` spells its ``config.json`` and its tensors: which
config key fills which ``EncoderConfig`` field, what the family fixes, the prefix its task
checkpoints put before the encoder (``roberta.`` in RobertaForMaskedLM) and the name table
ours -> theirs. Checkpoint names appear in the family modules only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from selfattention.pretrained.config import EncoderConfig

__all__ = ["Family", "both", "layer_names"]

# Our sub-module names inside one encoder layer (nn.TransformerEncoderLayer), post-norm:
# x = norm1(x + attn(x)); x = norm2(x + ff(x)).
LAYER_PARTS = ("attn.query_proj", "attn.key_proj", "attn.value_proj", "attn.out_proj")
LAYER_PARTS += ("norm1", "ff.fc1", "ff.fc2", "norm2")


@dataclass(frozen=True)
class Family:
    """One BERT-family layout.

    Attributes:
        model_type: ``config.json``'s ``model_type``.
        prefix: what task checkpoints (XxxForMaskedLM, ...) put before the encoder's names.
        keys: ``config.json`` key -> ``EncoderConfig`` field.
        required: ``config.json`` keys that must be present.
        defaults: ``EncoderConfig`` fields the family sets (a key in ``keys`` overrides them).
        names: config -> {our parameter name: checkpoint name (without prefix)}, no pooler.
        pooler: checkpoint name of the CLS pooler Linear (without .weight), None = no pooler.
        project: whether embeddings are mapped E -> hidden: "never", "always" (ALBERT) or
            "if_sizes_differ" (ELECTRA).
    """

    model_type: str
    prefix: str
    keys: Mapping[str, str]
    required: tuple[str, ...]
    names: Callable[[EncoderConfig], dict[str, str]]
    defaults: Mapping[str, object] = field(default_factory=dict)
    pooler: str | None = None
    project: str = "never"

    def name_map(self, config: EncoderConfig, *, pooler: bool = False) -> dict[str, str]:
        """THE mapping for this family: our parameter name -> the checkpoint's name.

        Both sides use torch's ``Linear.weight`` layout (out_features, in_features), so tensors
        are copied as they are; only the names change.
        """
        table = self.names(config)
        if pooler:
            if self.pooler is None:
                raise ValueError(f"{self.model_type} checkpoints have no pooler")
            table |= both("pooler", self.pooler)
        return table


def both(ours: str, theirs: str) -> dict[str, str]:
    """weight and bias of one Linear or LayerNorm."""
    return {f"{ours}.{p}": f"{theirs}.{p}" for p in ("weight", "bias")}


def layer_names(
    config: EncoderConfig, parts: Mapping[str, str], where: Callable[[int, int], str]
) -> dict[str, str]:
    """Names of every encoder layer's weights.

    ``parts``: our sub-module (one of LAYER_PARTS) -> the checkpoint's, inside a layer;
    ``where(group, inner)``: the checkpoint's name of that layer (see
    ``EncoderConfig.layer_plan``). A weight set shared by several layers (ALBERT) is named at
    the first layer that runs it, as ``named_parameters`` names it.
    """
    if set(parts) != set(LAYER_PARTS):
        raise AssertionError(f"a layer table must name exactly {LAYER_PARTS}, got {sorted(parts)}")
    table: dict[str, str] = {}
    seen = set()
    for position, key in enumerate(config.layer_plan()):
        if key in seen:
            continue
        seen.add(key)
        for ours, theirs in parts.items():
            table |= both(f"encoder.layers.{position}.{ours}", f"{where(*key)}.{theirs}")
    return table
