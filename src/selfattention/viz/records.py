"""One attended sequence (its labels and per-layer, per-head weights), and the ``attention.json``
file format that ``selfattention explain`` writes and ``selfattention viz json`` reads.

attention.json::

    {"format": "selfattention.attention/1",
     "sequences": [{"name": "bank (river)",
                    "tokens": ["the", "bank", ...],           # j key labels
                    "query_tokens": [...],                    # optional, i labels if i != j
                    "weights": [[[[w_00, w_01, ...], ...]]]}], # [layer][head][query][key]
     "meta": {...}}                                           # optional, free-form
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from selfattention.viz._files import write_text_atomically
from selfattention.viz._inputs import as_array, as_labels, stack_layers
from selfattention.viz.images import patches as cut_patches

__all__ = ["FORMAT", "AttentionRecord", "as_record", "as_records", "dump_json", "load_json"]

FORMAT = "selfattention.attention/1"


@dataclasses.dataclass
class AttentionRecord:
    """A sequence and its attention weights, as the report and the JSON file hold it.

    Attributes:
        name: shown in the report's sequence selector.
        weights: anything ``stack_layers`` accepts; stored as (L, H, i, j) float64.
        tokens: j key labels (for text); default "0".."j-1", or "[CLS]", "patch 0", ... for images.
        query_tokens: i query labels when they differ from ``tokens`` (cross-attention).
        patches: for images, gh·gw small arrays (ph, pw) or (ph, pw, C) drawn where tokens would be.
        image: the full image (H, W) or (H, W, C); with ``grid`` it gives ``patches`` if absent.
        grid: (gh, gw), the patch grid (inferred from ``image`` and the patch size if omitted).
        cls_token: position 0 is a class token, the patches follow.
        layers, heads: which layers/heads the report shows for this sequence (None = all; as
            ``report``'s arguments, which take precedence when given).
        queries, keys: (L, H, i, d) and (L, H, j, d) projected queries and keys, for the report's
            neuron view (the per-dimension terms scale · q_i[d] k_j[d] of a score).
        scale: the score scale of those queries and keys (default 1/√d).
        value_norms: (L, H, j) ‖v_j W_o^h‖ for the value-weighted view (``viz.value_norms``).
        flow: (i, j) attention flow to show (default: computed by the report for short inputs).
    """

    name: str
    weights: Any
    tokens: list[str] | None = None
    query_tokens: list[str] | None = None
    patches: list[Any] | None = None
    image: Any = None
    grid: tuple[int, int] | None = None
    cls_token: bool = False
    layers: Any = None
    heads: Any = None
    queries: Any = None
    keys: Any = None
    scale: float | None = None
    value_norms: Any = None
    flow: Any = None

    def __post_init__(self) -> None:
        self.name = str(self.name)
        self.weights = stack_layers(self.weights, f"weights of {self.name!r}")
        n_l, n_h, n_i, n_j = self.weights.shape
        self._check_views(n_l, n_h, n_i, n_j)
        cls = int(bool(self.cls_token))
        if self.image is not None:
            self.image = as_array(self.image, f"image of {self.name!r}", ndim=(2, 3))
        if self.patches is None and self.image is not None and self.grid is not None:
            self.patches = cut_patches(self.image, self.grid)
        if self.patches is not None:
            self.patches = [
                as_array(p, f"patches[{k}]", ndim=(2, 3)) for k, p in enumerate(self.patches)
            ]
            if len(self.patches) + cls != n_j:
                raise ValueError(
                    f"{self.name!r}: {len(self.patches)} patches{' + class token' if cls else ''} "
                    f"but the weights have {n_j} key positions"
                )
            if len({p.shape for p in self.patches}) != 1:
                raise ValueError(f"{self.name!r}: patches must all have the same shape")
            if self.grid is None and self.image is not None:
                ph, pw = self.patches[0].shape[:2]
                self.grid = (self.image.shape[0] // ph, self.image.shape[1] // pw)
            if self.grid is not None:
                self.grid = (int(self.grid[0]), int(self.grid[1]))
                if self.grid[0] * self.grid[1] != len(self.patches):
                    raise ValueError(
                        f"{self.name!r}: grid {self.grid} does not hold {len(self.patches)} patches"
                    )
            if self.tokens is None:
                self.tokens = ["[CLS]"] * cls + [f"patch {k}" for k in range(len(self.patches))]
        self.tokens = as_labels(self.tokens, n_j, f"tokens of {self.name!r}")
        if self.query_tokens is not None or n_i != n_j:
            self.query_tokens = as_labels(self.query_tokens, n_i, f"query_tokens of {self.name!r}")
        else:
            self.query_tokens = list(self.tokens)

    @property
    def is_image(self) -> bool:
        return self.patches is not None

    def _check_views(self, n_l: int, n_h: int, n_i: int, n_j: int) -> None:
        """Shapes of the optional view inputs against the weights (L, H, i, j)."""
        who = f"of {self.name!r}"
        if (self.queries is None) != (self.keys is None):
            raise ValueError(f"queries and keys {who} come together (the neuron view needs both)")
        if self.queries is not None:
            self.queries = as_array(self.queries, f"queries {who}", ndim=4)
            self.keys = as_array(self.keys, f"keys {who}", ndim=4)
            d = self.queries.shape[-1]
            for name, a, n in (("queries", self.queries, n_i), ("keys", self.keys, n_j)):
                if a.shape != (n_l, n_h, n, d):
                    raise ValueError(
                        f"{name} {who} must be (L, H, n, d) = {(n_l, n_h, n, d)} to match the "
                        f"weights {(n_l, n_h, n_i, n_j)}, got {a.shape}"
                    )
            if self.scale is not None:
                self.scale = float(self.scale)
        if self.value_norms is not None:
            self.value_norms = as_array(self.value_norms, f"value_norms {who}", ndim=3)
            if self.value_norms.shape != (n_l, n_h, n_j):
                raise ValueError(
                    f"value_norms {who} must be (L, H, j) = {(n_l, n_h, n_j)}, "
                    f"got {self.value_norms.shape}"
                )
        if self.flow is not None:
            self.flow = as_array(self.flow, f"flow {who}", ndim=2)
            if self.flow.shape != (n_i, n_j):
                raise ValueError(f"flow {who} must be (i, j) = {(n_i, n_j)}, got {self.flow.shape}")


def as_record(obj: Any, index: int = 0) -> AttentionRecord:
    """An ``AttentionRecord`` from a record, or a dict with its field names."""
    if isinstance(obj, AttentionRecord):
        return obj
    if isinstance(obj, Mapping):
        fields = {f.name for f in dataclasses.fields(AttentionRecord)}
        unknown = set(obj) - fields
        if unknown:
            raise TypeError(
                f"sequences[{index}] has unknown keys {sorted(unknown)}; known: {sorted(fields)}"
            )
        if "weights" not in obj:
            raise ValueError(f"sequences[{index}] has no 'weights'")
        return AttentionRecord(**{"name": f"sequence {index}", **obj})
    raise TypeError(
        f"sequences[{index}] must be a dict or AttentionRecord, got {type(obj).__name__}"
    )


def as_records(sequences: Any) -> list[AttentionRecord]:
    """A list of records from one record/dict or an iterable of them."""
    if isinstance(sequences, AttentionRecord | Mapping):
        sequences = [sequences]
    if not isinstance(sequences, Iterable):
        raise TypeError(
            f"sequences must be a list of dicts or records, got {type(sequences).__name__}"
        )
    out = [as_record(s, k) for k, s in enumerate(sequences)]
    if not out:
        raise ValueError("sequences is empty; give at least one")
    return out


def dump_json(
    path: str | Path, sequences: Any, *, digits: int = 6, meta: Mapping[str, Any] | None = None
) -> Path:
    """Write ``sequences`` (records or dicts) to ``path`` in the attention.json format.

    Weights are rounded to ``digits`` decimals (6 keeps the file small and every plotted value
    exact to the eye). Image fields are not stored; the format holds token sequences. The file is
    replaced atomically (never left half-written).
    """
    records = as_records(sequences)
    doc: dict[str, Any] = {"format": FORMAT, "sequences": []}
    for r in records:
        entry: dict[str, Any] = {"name": r.name, "tokens": r.tokens}
        if r.query_tokens != r.tokens:
            entry["query_tokens"] = r.query_tokens
        entry["weights"] = np.round(r.weights, digits).tolist()
        doc["sequences"].append(entry)
    if meta:
        doc["meta"] = dict(meta)
    return write_text_atomically(path, json.dumps(doc, ensure_ascii=False, separators=(",", ":")))


def load_json(path: str | Path) -> list[AttentionRecord]:
    """Read an attention.json file (see the module docstring) into records, checking its shape."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("sequences"), list):
        raise ValueError(f"{path}: expected an object with a 'sequences' list")
    fmt = doc.get("format", FORMAT)
    if fmt != FORMAT:
        raise ValueError(f"{path}: unknown format {fmt!r}; this version reads {FORMAT!r}")
    records = []
    for k, s in enumerate(doc["sequences"]):
        if not isinstance(s, dict) or "weights" not in s or "tokens" not in s:
            raise ValueError(f"{path}: sequences[{k}] needs 'tokens' and 'weights'")
        try:
            weights = np.asarray(s["weights"], dtype=np.float64)
        except ValueError:
            raise ValueError(
                f"{path}: sequences[{k}].weights is ragged; expected [layer][head][query][key]"
            ) from None
        if weights.ndim != 4:
            raise ValueError(
                f"{path}: sequences[{k}].weights has {weights.ndim} levels of nesting; "
                "expected 4: [layer][head][query][key]"
            )
        records.append(
            AttentionRecord(
                name=s.get("name", f"sequence {k}"),
                weights=weights,
                tokens=s["tokens"],
                query_tokens=s.get("query_tokens"),
            )
        )
    return records
