"""The textbook ladder, rung by rung, on a few words to check by hand.

Each rung is ``{title, formula, tables: {name: array}}``; every number comes from
:mod:`selfattention.reference` (NumPy float64), so the numbers are the oracle's own.

    config = LadderConfig(words=("river", "money", "bank"), vectors=parse_vectors("1,0 0,1 1,1"))
    for number, rung in climb(config): ...
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from selfattention import reference as R

__all__ = ["DEFAULT_VECTORS", "DEFAULT_WORDS", "RUNGS", "LadderConfig", "climb", "parse_vectors",
           "rungs"]  # fmt: skip

DEFAULT_WORDS = ("river", "money", "bank")
DEFAULT_VECTORS = "1,0 0,1 1,1"  # "bank" shares a direction with both neighbours
RUNGS = 7


def parse_vectors(text: str) -> tuple[tuple[float, ...], ...]:
    """``"1,0 0,1 1,1"`` -> ((1.0, 0.0), (0.0, 1.0), (1.0, 1.0)): one comma-separated vector per
    word, space-separated. Raises ValueError (naming ``--vectors``) on anything else."""
    try:
        rows = tuple(tuple(float(v) for v in word.split(",")) for word in text.split())
    except ValueError as err:
        raise ValueError(f"--vectors must look like '1,0 0,1 1,1', got {text!r}") from err
    return rows


@dataclass(frozen=True)
class LadderConfig:
    """The words, their vectors X (one per word, all of one size d), the seed of the random
    projections (rungs 4-5) and which rungs to climb (1-7; None = all).

    Raises:
        ValueError: naming the option (--words, --vectors, --rung), what it got and what is
            allowed.
    """

    words: tuple[str, ...] = DEFAULT_WORDS
    vectors: tuple[tuple[float, ...], ...] = parse_vectors(DEFAULT_VECTORS)
    seed: int = 0
    rungs: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.words:
            raise ValueError("--words needs at least one word")
        shown = " ".join(",".join(f"{v:g}" for v in row) for row in self.vectors)
        if len(self.vectors) != len(self.words) or len({len(r) for r in self.vectors}) != 1:
            raise ValueError(
                f"--vectors needs {len(self.words)} vectors of one size (one per word), "
                f"got {shown!r}"
            )
        if not all(math.isfinite(v) for row in self.vectors for v in row):
            raise ValueError(f"--vectors must be finite numbers, got {shown!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"--seed must be an integer >= 0, got {self.seed!r}")
        if self.rungs is not None:
            bad = [r for r in self.rungs if not 1 <= r <= RUNGS]
            if bad or not self.rungs:
                raise ValueError(f"--rung must be in 1..{RUNGS}, got {list(self.rungs)}")

    @property
    def x(self) -> np.ndarray:
        """X (n, d) float64."""
        return np.array(self.vectors, dtype=np.float64)


def climb(config: LadderConfig) -> list[tuple[int, dict[str, Any]]]:
    """The chosen rungs of ``rungs(config.x, config.seed)`` as (number 1-7, rung)."""
    ladder = rungs(config.x, config.seed)
    chosen = config.rungs or tuple(range(1, len(ladder) + 1))
    return [(number, ladder[number - 1]) for number in chosen]


def rungs(x: np.ndarray, seed: int = 0) -> list[dict[str, Any]]:
    """The ladder on word vectors x (n, d): a list of {title, formula, tables: {name: array}}."""
    n, d = x.shape
    rng = np.random.default_rng(seed)
    out = []

    uniform = np.full((n, n), 1.0 / n)
    out.append(
        dict(
            title="Re-weighting",
            formula="Y = W X, W chosen by hand (here: the plain average of all words)",
            tables={"weights W": uniform, "outputs Y": R.reweight(x, uniform)},
        )
    )
    s = R.scores(x, x)
    rung = dict(
        title="Relevance by dot product",
        formula="S = X Xᵀ;  W = S / rowsum(S)  (relevances /= sum(relevances));  Y = W X",
        tables={"scores S": s},
    )
    try:
        w = R.normalize(s, "sum")
        rung["tables"].update({"weights W": w, "outputs Y": R.reweight(x, w)})
    except ValueError:
        rung["formula"] += "\n  a row of S sums to <= 0 here, so it cannot be normalised by its sum"
    out.append(rung)
    y, w = R.self_attention(x, return_weights=True)
    out.append(
        dict(
            title="Self-attention, no parameters",
            formula="Y = softmax(X Xᵀ) X",
            tables={"scores S": s, "weights W": w, "outputs Y": y},
        )
    )
    wq, wk, wv = (rng.standard_normal((d, d)) / np.sqrt(d) for _ in range(3))
    y, w = R.projected_self_attention(x, wq, wk, wv)
    q, k = x @ wq, x @ wk
    out.append(
        dict(
            title="Queries, keys, values (learnable Wq, Wk, Wv; here random, seeded)",
            formula="Q = X Wq, K = X Wk, V = X Wv;  Y = softmax(Q Kᵀ / √d) V",
            tables={
                "scores Q Kᵀ/√d": R.scores(q, k, 1 / np.sqrt(d)),
                "weights W": w,
                "outputs Y": y,
            },
        )
    )
    heads = 2
    wqh, wkh, wvh = (rng.standard_normal((heads, d, d)) / np.sqrt(d) for _ in range(3))
    wo = rng.standard_normal((heads * d, d)) / np.sqrt(heads * d)
    y, ws = R.multi_head_self_attention(x, wqh, wkh, wvh, wo)
    tables = {f"weights, head {h + 1}": wh for h, wh in enumerate(ws)}
    out.append(
        dict(
            title=f"Multi-head ({heads} heads)",
            formula="head_h = softmax(X Wq_h (X Wk_h)ᵀ / √d) X Wv_h;  Y = [head_1 … head_H] Wo",
            tables={**tables, "outputs Y": y},
        )
    )
    xp = x + R.sinusoidal_positions(n, d)
    y, w = R.self_attention(xp, return_weights=True)
    out.append(
        dict(
            title="Positions (sinusoidal, added to the words)",
            formula="X' = X + PE,  PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(…);"
            "  Y = softmax(X' X'ᵀ) X'",
            tables={"X + PE": xp, "weights W": w, "outputs Y": y},
        )
    )
    y, w = R.attention(x, x, x, scale=1.0, window=(1, 0))
    out.append(
        dict(
            title="Window (left 1, right 0): each word sees itself and the word before",
            formula="S_ij = x_i · x_j if i - 1 <= j <= i, else masked;  Y = softmax(S) X",
            tables={"weights W": w, "outputs Y": y},
        )
    )
    return out
